//! The crate reads in one direction: every import points down the crate docs' module
//! table (`src/lib.rs`, "Modules"), never up and never across a row (so the three
//! middlewares, which share a row, never import one another), and no two files import
//! each other, directly or through others. The table is the specification: a new
//! module must be placed in it, and a new import that points up fails here.
//!
//! Read from the source's own paths (`use` trees and inline `crate::…`, `super::…`,
//! `self::…` paths), leaving out comments and the unit tests at the bottom of files.
//! A name reached through a re-export (`crate::ConfigError`, `crate::store::KeyRecord`)
//! counts as an import of the file that defines it: the reader follows the `pub use`
//! lines of `src/lib.rs` and of each module's `mod.rs`, so an import made through the
//! crate root is checked against the defining module's row. `src/lib.rs` defines
//! nothing, so a path that ends there is a re-export the reader could not follow, and
//! fails too.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// `src/…` files, by path relative to the crate root.
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("src"), &mut out);
    out.sort();
    out
}

/// The code of a file: comments, string literals' contents and unit tests removed.
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the code names, starting at `crate`, `super` or `self`, with `use` trees
/// expanded: `use super::{a::B, C}` gives `super::a::B` and `super::C`.
fn paths(code: &str) -> Vec<Vec<String>> {
    named_paths(code)
        .into_iter()
        .map(|(path, _)| path)
        .collect()
}

/// [`paths`], each with the name it binds: `use self::a::B as C` binds `C`, any other
/// path its last segment.
fn named_paths(code: &str) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if starts_word && chars[i].is_alphabetic() {
            let (word, end) = ident(&chars, i);
            if matches!(word.as_str(), "crate" | "super" | "self") && follows(&chars, end, "::") {
                let mut prefix = vec![word];
                let end = tree(&chars, end + 2, &mut prefix, &mut out);
                i = end;
                continue;
            }
            i = end;
            continue;
        }
        i += 1;
    }
    out
}

fn ident(chars: &[char], start: usize) -> (String, usize) {
    let mut end = start;
    while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
        end += 1;
    }
    (chars[start..end].iter().collect(), end)
}

fn follows(chars: &[char], at: usize, text: &str) -> bool {
    text.chars()
        .enumerate()
        .all(|(k, c)| chars.get(at + k) == Some(&c))
}

fn skip_space(chars: &[char], mut at: usize) -> usize {
    while at < chars.len() && chars[at].is_whitespace() {
        at += 1;
    }
    at
}

/// Reads a path (or use tree) after `prefix::`, pushing every complete path with the
/// name it binds.
fn tree(
    chars: &[char],
    at: usize,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, String)>,
) -> usize {
    let at = skip_space(chars, at);
    if chars.get(at) == Some(&'{') {
        let mut at = at + 1;
        loop {
            at = skip_space(chars, at);
            match chars.get(at) {
                Some('}') => return at + 1,
                Some(',') => at += 1,
                Some(_) => {
                    let depth = prefix.len();
                    at = tree(chars, at, prefix, out);
                    prefix.truncate(depth);
                }
                None => return at,
            }
        }
    }
    if !chars
        .get(at)
        .is_some_and(|c| c.is_alphabetic() || *c == '_' || *c == '*')
    {
        out.push((prefix.clone(), prefix.last().cloned().unwrap_or_default()));
        return at;
    }
    if chars[at] == '*' {
        out.push((prefix.clone(), "*".to_owned()));
        return at + 1;
    }
    let (word, end) = ident(chars, at);
    prefix.push(word.clone());
    if follows(chars, end, "::") {
        return tree(chars, end + 2, prefix, out);
    }
    // `B as C`: the path binds `C`.
    let after = skip_space(chars, end);
    if follows(chars, after, "as") && chars.get(after + 2).is_some_and(|c| c.is_whitespace()) {
        let (alias, alias_end) = ident(chars, skip_space(chars, after + 2));
        if !alias.is_empty() {
            out.push((prefix.clone(), alias));
            return alias_end;
        }
    }
    out.push((prefix.clone(), word));
    end
}

/// The module path of a file: `src/store/cache.rs` → `["store", "cache"]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix("src").unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The file of a module path, if it is a module.
fn file_of(module: &[String]) -> Option<PathBuf> {
    if module.is_empty() {
        return Some(PathBuf::from("src/lib.rs"));
    }
    let base: PathBuf = std::iter::once("src".to_owned())
        .chain(module.iter().cloned())
        .collect();
    let file = base.with_extension("rs");
    if file.exists() {
        return Some(file);
    }
    let file = base.join("mod.rs");
    file.exists().then_some(file)
}

/// Resolves a path named in `from` to the file that defines its item: the deepest
/// module on the path, followed through that module's re-exports (`pub use
/// self::sub::…`, `crate::…` or `super::…`, renamed or not) to the file they name.
/// `src/lib.rs` when the path ends at the crate root.
fn resolve(from: &Path, path: &[String]) -> Option<PathBuf> {
    resolve_within(from, path, 0)
}

fn resolve_within(from: &Path, path: &[String], depth: usize) -> Option<PathBuf> {
    let here = module_of(from);
    let mut module: Vec<String> = match path[0].as_str() {
        "crate" => Vec::new(),
        "self" => here.clone(),
        _ => {
            let mut m = here.clone();
            m.pop()?;
            m
        }
    };
    let mut rest = &path[1..];
    while let Some(first) = rest.first() {
        if first == "super" {
            module.pop()?;
            rest = &rest[1..];
            continue;
        }
        let mut next = module.clone();
        next.push(first.clone());
        if file_of(&next).is_some() {
            module = next;
            rest = &rest[1..];
        } else {
            break;
        }
    }
    let file = file_of(&module)?;
    // An item the module re-exports rather than defines: the file of its definition.
    // A chain of re-exports longer than the crate is deep is a loop.
    let text = code(&file);
    if let Some(item) = rest
        .first()
        .filter(|item| depth < 8 && !defines(&text, item))
    {
        for (reexport, binds) in named_paths(&text) {
            if &binds == item {
                if let Some(target) = resolve_within(&file, &reexport, depth + 1) {
                    if target != file {
                        return Some(target);
                    }
                }
            }
        }
    }
    Some(file)
}

/// The table of `src/lib.rs`: top-level module → its row (0 is the bottom).
fn layers() -> BTreeMap<String, u32> {
    let lib = fs::read_to_string("src/lib.rs").unwrap();
    let mut layers = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! | ") else {
            continue;
        };
        let cells: Vec<&str> = row.split(" | ").collect();
        let Ok(layer) = cells[0].trim().parse::<u32>() else {
            continue;
        };
        for name in cells[1].split(',') {
            let name = name.trim().trim_matches(|c| "[]` ".contains(c));
            let name = name.split_whitespace().next().unwrap_or(name);
            layers.insert(name.to_owned(), layer);
        }
    }
    layers
}

/// What is wrong with the imports in `code`, read as the code of `file`: paths that
/// point up or across the module table, and paths the reader cannot follow.
fn wrong_imports(file: &Path, code: &str, layers: &BTreeMap<String, u32>) -> Vec<String> {
    let mut wrong = Vec::new();
    let here = module_of(file);
    let Some(top) = here.first() else {
        return wrong; // the crate root re-exports everything
    };
    let Some(&own) = layers.get(top) else {
        wrong.push(format!(
            "module `{top}` is missing from the table in src/lib.rs"
        ));
        return wrong;
    };
    for path in paths(code) {
        let Some(target) = resolve(file, &path) else {
            continue;
        };
        let Some(other) = module_of(&target).first().cloned() else {
            wrong.push(format!(
                "{} names `{}`, which src/lib.rs re-exports in a form this test cannot \
                 follow to the module that defines it",
                file.display(),
                path.join("::")
            ));
            continue;
        };
        if &other == top {
            continue;
        }
        let Some(&theirs) = layers.get(&other) else {
            wrong.push(format!(
                "module `{other}` is missing from the table in src/lib.rs"
            ));
            continue;
        };
        if theirs >= own {
            wrong.push(format!(
                "{} (row {own}) imports {} (row {theirs}): `{}`",
                file.display(),
                target.display(),
                path.join("::")
            ));
        }
    }
    wrong
}

#[test]
fn imports_point_down_the_module_table() {
    let layers = layers();
    assert!(
        layers.len() > 10,
        "the module table of src/lib.rs was not found"
    );
    let wrong: BTreeSet<String> = sources()
        .iter()
        .flat_map(|file| wrong_imports(file, &code(file), &layers))
        .collect();
    assert!(
        wrong.is_empty(),
        "imports that do not point down:\n{}",
        wrong.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn no_two_files_import_each_other() {
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for file in sources() {
        if file.ends_with("lib.rs") {
            continue; // the table of contents re-exports everything
        }
        let targets = edges.entry(file.clone()).or_default();
        for path in paths(&code(&file)) {
            if let Some(target) = resolve(&file, &path) {
                if target != file && !target.ends_with("lib.rs") {
                    targets.insert(target);
                }
            }
        }
    }
    // A module's `mod.rs` declares and re-exports its files: that is not an import.
    for (file, targets) in &mut edges {
        if file.ends_with("mod.rs") {
            let dir = file.parent().unwrap().to_path_buf();
            targets.retain(|t| t.parent() != Some(&dir) || t.ends_with("mod.rs"));
        }
    }
    let mut cycles = Vec::new();
    for start in edges.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, trail)) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if next == start {
                    let mut cycle: Vec<String> =
                        trail.iter().map(|p| p.display().to_string()).collect();
                    cycle.push(start.display().to_string());
                    cycles.push(cycle.join(" → "));
                } else if seen.insert(next.clone()) {
                    let mut trail = trail.clone();
                    trail.push(next.clone());
                    stack.push((next.clone(), trail));
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "files importing each other:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_reader_finds_what_it_checks() {
    // Positive controls: the parser sees nested use trees and inline paths.
    let found = paths("use super::{a::B, c::{D, E}};\nlet x = crate::clock::now();");
    assert_eq!(
        found,
        [
            vec!["super", "a", "B"],
            vec!["super", "c", "D"],
            vec!["super", "c", "E"],
            vec!["crate", "clock", "now"],
        ]
    );
    // A renamed import binds its new name.
    let found = named_paths("pub use self::a::{B as C, D};");
    assert_eq!(
        found,
        [
            (vec!["self".into(), "a".into(), "B".into()], "C".to_owned()),
            (vec!["self".into(), "a".into(), "D".into()], "D".to_owned()),
        ]
    );
    // A known downward import resolves to the defining file.
    let target = resolve(
        Path::new("src/store/cache.rs"),
        &["super".into(), "record".into(), "ActiveUntil".into()],
    );
    assert_eq!(target, Some(PathBuf::from("src/store/record.rs")));
    let layers = layers();
    assert!(layers["authenticate"] > layers["pipeline"]);
    assert_eq!(layers["authenticate"], layers["rate_limit"]);
}

/// Whether `text` defines an item called `name`.
fn defines(text: &str, name: &str) -> bool {
    let kinds = [
        "struct", "enum", "trait", "type", "fn", "const", "static", "union",
    ];
    kinds.iter().any(|kind| {
        let head = format!("{kind} {name}");
        text.match_indices(&head).any(|(at, _)| {
            !text[at + head.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
        })
    })
}

#[test]
fn an_import_through_a_reexport_counts_where_the_name_is_defined() {
    // Every name the crate root and the modules re-export is followed to the file
    // that defines it.
    let reexporting = sources()
        .into_iter()
        .filter(|f| f.ends_with("lib.rs") || f.ends_with("mod.rs"));
    let mut followed = 0;
    for file in reexporting {
        for (path, name) in named_paths(&code(&file)) {
            if path[0] != "self" || path.len() < 3 {
                continue;
            }
            let target = resolve(&file, &["self".into(), name.clone()]).unwrap();
            assert!(
                defines(&fs::read_to_string(&target).unwrap(), &name),
                "`{name}`, re-exported by {}, resolves to {}, which does not define it",
                file.display(),
                target.display()
            );
            followed += 1;
        }
    }
    assert!(followed > 50, "only {followed} re-exports were found");

    // Positive controls: `key` (row 1) importing `Principal` (row 3) through the crate
    // root fails as it would by the defining module's path, and so does `scope` (row
    // 1) importing `KeyRecord` (row 2) through the `store` module's re-export.
    let layers = layers();
    let key = Path::new("src/key.rs");
    assert_eq!(
        wrong_imports(key, "use crate::Principal;", &layers),
        ["src/key.rs (row 1) imports src/principal.rs (row 3): `crate::Principal`"]
    );
    assert_eq!(
        wrong_imports(
            Path::new("src/scope/model.rs"),
            "fn f(r: &crate::store::KeyRecord) {}",
            &layers
        ),
        [
            "src/scope/model.rs (row 1) imports src/store/record.rs (row 2): \
          `crate::store::KeyRecord`"
        ]
    );
    // A downward import through the root passes.
    assert_eq!(
        wrong_imports(key, "use crate::ConfigError;", &layers),
        Vec::<String>::new()
    );
    // A name the reader cannot follow fails, rather than passing unchecked.
    let unknown = wrong_imports(key, "use crate::NoSuchName;", &layers);
    assert!(
        unknown.len() == 1 && unknown[0].contains("cannot follow"),
        "{unknown:?}"
    );
}
