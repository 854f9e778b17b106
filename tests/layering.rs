//! The crate reads in one direction: every import points down the crate docs' module
//! table (`src/lib.rs`, "Modules"), never up and never across a row (so the three
//! middlewares, which share a row, never import one another), and no two files import
//! each other, directly or through others. The table is the specification: a new
//! module must be placed in it, and a new import that points up fails here.
//!
//! Read from the source's own paths (`use` trees and inline `crate::…`, `super::…`,
//! `self::…` paths), leaving out comments and the unit tests at the bottom of files.

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

/// Reads a path (or use tree) after `prefix::`, pushing every complete path.
fn tree(chars: &[char], at: usize, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
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
        out.push(prefix.clone());
        return at;
    }
    if chars[at] == '*' {
        out.push(prefix.clone());
        return at + 1;
    }
    let (word, end) = ident(chars, at);
    prefix.push(word);
    if follows(chars, end, "::") {
        tree(chars, end + 2, prefix, out)
    } else {
        out.push(prefix.clone());
        end
    }
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
/// module on the path, followed through that module's `pub use self::sub::…`
/// re-exports.
fn resolve(from: &Path, path: &[String]) -> Option<PathBuf> {
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
    // An item re-exported by the module: the file of its definition.
    if let Some(item) = rest.first() {
        for reexport in paths(&code(&file)) {
            if reexport.first().is_some_and(|s| s == "self")
                && reexport.last() == Some(item)
                && reexport.len() > 2
            {
                if let Some(target) = resolve(&file, &reexport) {
                    return Some(target);
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

#[test]
fn imports_point_down_the_module_table() {
    let layers = layers();
    assert!(
        layers.len() > 10,
        "the module table of src/lib.rs was not found"
    );
    let mut wrong = BTreeSet::new();
    for file in sources() {
        let here = module_of(&file);
        let Some(top) = here.first() else { continue };
        let Some(&own) = layers.get(top) else {
            wrong.insert(format!(
                "module `{top}` is missing from the table in src/lib.rs"
            ));
            continue;
        };
        for path in paths(&code(&file)) {
            let Some(target) = resolve(&file, &path) else {
                continue;
            };
            let Some(other) = module_of(&target).first().cloned() else {
                continue; // the crate root
            };
            if &other == top {
                continue;
            }
            let Some(&theirs) = layers.get(&other) else {
                wrong.insert(format!(
                    "module `{other}` is missing from the table in src/lib.rs"
                ));
                continue;
            };
            if theirs >= own {
                wrong.insert(format!(
                    "{} (row {own}) imports {} (row {theirs}): `{}`",
                    file.display(),
                    target.display(),
                    path.join("::")
                ));
            }
        }
    }
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
