"""The crate's public API as sorted lines, from rustdoc's JSON (nightly).

Every nameable item (module, type, trait, function, constant, macro, enum variant) by
its canonical path, and every public inherent method by its type's path. Trait impls
are left out (a type implementing `Clone` or `Debug` is not surface to review).

Usage: python3 .ci/public_api.py target/doc/tower_api_key.json
"""
import json
import sys


def main(path):
    doc = json.load(open(path))
    index, paths = doc["index"], doc["paths"]
    ours = {k: v for k, v in paths.items() if v["crate_id"] == 0}
    lines = {f"{v['kind']} {'::'.join(v['path'])}" for v in ours.values()}
    for item in index.values():
        impl = item["inner"].get("impl")
        if not impl or impl.get("trait") is not None or impl.get("blanket_impl"):
            continue
        target = impl.get("for", {}).get("resolved_path")
        if not target or str(target["id"]) not in ours:
            continue
        owner = "::".join(ours[str(target["id"])]["path"])
        for method_id in impl["items"]:
            method = index.get(str(method_id))
            if method and method.get("visibility") == "public" and method.get("name"):
                kind = next(iter(method["inner"]))
                lines.add(f"{kind} {owner}::{method['name']}")
    for line in sorted(lines):
        print(line)


if __name__ == "__main__":
    main(sys.argv[1])
