//! The runtime's modules form a ladder: configuration ← logical graph ← physical plan ←
//! executor ← pipeline builder, with the operator API, channels, metrics and the other leaves
//! below. No module may reach back up: this test reads every file under `src/`, collects the
//! modules it names through `crate::`, `super::` and `self::` paths (in `use` items, grouped or
//! not, and inline in code), and fails, naming the circle, if those references form one.
//!
//! Test code is left out (`tests.rs`, `*_tests.rs`, files under a `tests/` directory and
//! `#[cfg(test)]` modules written inline): tests may use the whole crate. Comments, doc links
//! and string literals are not references. A parent naming its own child to re-export it
//! (`pub use self::child::Item`) declares its API and is not a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path inside the crate: `[]` for the crate root, `["exec", "driver"]` for
/// `src/exec/driver.rs`.
type ModPath = Vec<String>;

/// The module a file under `src/` defines, or `None` for test code.
fn module_of(relative: &Path) -> Option<ModPath> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop()?;
    let stem = file.strip_suffix(".rs")?.to_string();
    if stem == "tests" || stem.ends_with("_tests") || parts.iter().any(|p| p == "tests") {
        return None;
    }
    if parts.is_empty() && (stem == "lib" || stem == "main") {
        return Some(Vec::new());
    }
    if stem != "mod" {
        parts.push(stem);
    }
    Some(parts)
}

/// The source with comments, string and character literals blanked out (lifetimes kept).
fn strip_comments_and_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            }
            b'r' if (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
                && (i == 0 || !is_ident(b[i - 1])) =>
            {
                // A raw string: r"..." or r#"..."#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == b'"' && b[j + 1..].iter().take(hashes).all(|&c| c == b'#') {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                i = j;
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' => {
                // A character literal ('x', '\n', '\u{..}'), or a lifetime / label.
                let close = if b.get(i + 1) == Some(&b'\\') {
                    b[i + 2..]
                        .iter()
                        .position(|&c| c == b'\'')
                        .map(|p| i + 2 + p)
                } else {
                    // One character of up to four bytes, then a quote.
                    (2..=5).map(|k| i + k).find(|&j| {
                        b.get(j) == Some(&b'\'')
                            && std::str::from_utf8(&b[i + 1..j])
                                .is_ok_and(|c| c.chars().count() == 1)
                    })
                };
                match close {
                    Some(j) => {
                        out.push_str("' '");
                        i = j + 1;
                    }
                    None => {
                        out.push('\'');
                        i += 1;
                    }
                }
            }
            _ => {
                let len = utf8_len(b[i]);
                out.push_str(&text[i..i + len]);
                i += len;
            }
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The source without `#[cfg(test)]` (or `#[cfg(all(test, ..))]`) modules written inline.
fn strip_test_modules(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_test_attr(rest) {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        let attr_end = after.find(']').map_or(after.len(), |p| p + 1);
        let item = after[attr_end..].trim_start();
        let header_end = item.find(['{', ';']).unwrap_or(item.len());
        let header = &item[..header_end];
        let is_inline_mod =
            header.split_whitespace().any(|w| w == "mod") && item[header_end..].starts_with('{');
        if !is_inline_mod {
            out.push_str(&after[..attr_end]);
            rest = &after[attr_end..];
            continue;
        }
        let body = &item[header_end..];
        let mut depth = 0usize;
        let mut end = body.len();
        for (k, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &body[end..];
    }
    out.push_str(rest);
    out
}

fn find_test_attr(text: &str) -> Option<usize> {
    ["#[cfg(test)]", "#[cfg(all(test"]
        .iter()
        .filter_map(|pat| text.find(pat))
        .min()
}

/// Expands a `use` tree (`crate::a::{b, c::{d, e as f}, self}`) into its paths.
fn expand_use_tree(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        return vec![path.replace(' ', "")];
    };
    let prefix = tree[..open].trim().to_string();
    let inner = tree[open + 1..].trim_end();
    let inner = inner.strip_suffix('}').unwrap_or(inner);
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (k, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| {
            expand_use_tree(p)
                .into_iter()
                .map(|sub| format!("{prefix}{sub}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The `use` items of a file: `(is_pub, path)` per leaf of each tree; and the code with them
/// removed.
fn use_items(code: &str) -> (Vec<(bool, String)>, String) {
    let mut uses = Vec::new();
    let mut rest_code = String::with_capacity(code.len());
    let bytes = code.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while let Some(p) = code[i..].find("use ") {
        let at = i + p;
        let boundary = at == 0 || !is_ident(bytes[at - 1]);
        if !boundary {
            i = at + 4;
            continue;
        }
        let Some(semi) = code[at..].find(';') else {
            break;
        };
        let tree = &code[at + 4..at + semi];
        let before = code[..at].trim_end();
        let is_pub = before.ends_with("pub")
            || before.ends_with(')')
                && before
                    .rfind('(')
                    .is_some_and(|open| before[..open].trim_end().ends_with("pub"));
        for path in expand_use_tree(tree) {
            uses.push((is_pub, path));
        }
        rest_code.push_str(&code[copied..at]);
        rest_code.push(' ');
        i = at + semi + 1;
        copied = i;
    }
    rest_code.push_str(&code[copied..]);
    (uses, rest_code)
}

/// `crate::`, `super::` and `self::` paths written inline in code.
fn inline_paths(code: &str) -> Vec<String> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(p) = code[from..].find(start) {
            let at = from + p;
            from = at + start.len();
            if at > 0 && (is_ident(bytes[at - 1]) || bytes[at - 1] == b':') {
                continue; // part of a longer path (`super::super::`, `x::self::`)
            }
            let mut end = at;
            while end < bytes.len() && (is_ident(bytes[end]) || bytes[end] == b':') {
                end += 1;
            }
            found.push(code[at..end].trim_end_matches(':').to_string());
        }
    }
    found
}

/// The module a path names, resolved against the modules that exist: its longest prefix that is
/// a module file. `None` for paths outside the crate.
fn resolve(current: &ModPath, path: &str, modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    let mut segments = path.split("::").map(str::trim).filter(|s| !s.is_empty());
    let first = segments.next()?;
    let mut base: ModPath = match first {
        "crate" => Vec::new(),
        "self" => current.clone(),
        "super" => current[..current.len().saturating_sub(1)].to_vec(),
        _ => return None,
    };
    let mut rest: Vec<&str> = Vec::new();
    for s in segments {
        match s {
            "super" if rest.is_empty() => {
                base.pop();
            }
            "self" if rest.is_empty() => {}
            "self" | "*" => break,
            s => rest.push(s),
        }
    }
    (0..=rest.len()).rev().find_map(|k| {
        let mut candidate = base.clone();
        candidate.extend(rest[..k].iter().map(|s| s.to_string()));
        modules.contains(&candidate).then_some(candidate)
    })
}

/// The module graph of a crate's source files (`(path under src/, text)`): each module and the
/// modules it depends on.
fn module_graph(files: &[(PathBuf, String)]) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let sources: Vec<(ModPath, &str)> = files
        .iter()
        .filter_map(|(path, text)| module_of(path).map(|m| (m, text.as_str())))
        .collect();
    let modules: BTreeSet<ModPath> = sources.iter().map(|(m, _)| m.clone()).collect();
    let mut graph = BTreeMap::new();
    for (module, text) in &sources {
        let code = strip_test_modules(&strip_comments_and_strings(text));
        let (uses, code) = use_items(&code);
        let mut deps = BTreeSet::new();
        let mut add = |path: &str, reexport: bool| {
            if let Some(target) = resolve(module, path, &modules) {
                let own_descendant = target.len() > module.len() && target.starts_with(module);
                if target != *module && !(reexport && own_descendant) {
                    deps.insert(target);
                }
            }
        };
        for (is_pub, path) in &uses {
            add(path, *is_pub);
        }
        for path in inline_paths(&code) {
            add(&path, false);
        }
        graph.insert(module.clone(), deps);
    }
    graph
}

/// A circle in the graph, as the modules along it (first repeated at the end), if there is one.
fn find_circle(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Option<Vec<ModPath>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        at: &ModPath,
        graph: &BTreeMap<ModPath, BTreeSet<ModPath>>,
        marks: &mut BTreeMap<ModPath, Mark>,
        stack: &mut Vec<ModPath>,
    ) -> Option<Vec<ModPath>> {
        marks.insert(at.clone(), Mark::Open);
        stack.push(at.clone());
        for next in graph.get(at).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let from = stack.iter().position(|m| m == next).unwrap_or(0);
                    let mut circle = stack[from..].to_vec();
                    circle.push(next.clone());
                    return Some(circle);
                }
                Mark::New => {
                    if let Some(circle) = visit(next, graph, marks, stack) {
                        return Some(circle);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(at.clone(), Mark::Done);
        None
    }
    let mut marks: BTreeMap<ModPath, Mark> = graph.keys().map(|k| (k.clone(), Mark::New)).collect();
    for start in graph.keys() {
        if marks[start] == Mark::New {
            if let Some(circle) = visit(start, graph, &mut marks, &mut Vec::new()) {
                return Some(circle);
            }
        }
    }
    None
}

fn name(module: &ModPath) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        format!("crate::{}", module.join("::"))
    }
}

fn read_sources(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let relative = path.strip_prefix(root).expect("under src").to_path_buf();
            out.push((relative, text));
        }
    }
}

#[test]
fn runtime_modules_form_no_import_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_sources(&src, &src, &mut files);
    let graph = module_graph(&files);
    // The ladder's rungs are all there, so the check reads the real layout.
    for rung in ["config", "graph", "plan", "exec", "pipeline", "operator"] {
        assert!(
            graph.contains_key(&vec![rung.to_string()]),
            "module `{rung}` not found under {}",
            src.display()
        );
    }
    if let Some(circle) = find_circle(&graph) {
        let names: Vec<String> = circle.iter().map(name).collect();
        panic!(
            "the runtime's modules import each other in a circle: {}\n\
             move what both need into a lower module (the ladder is in the crate docs, src/lib.rs)",
            names.join(" -> ")
        );
    }
}

fn files(list: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
    list.iter()
        .map(|(p, t)| (PathBuf::from(p), t.to_string()))
        .collect()
}

#[test]
fn a_circle_through_grouped_and_inline_paths_is_named() {
    let graph = module_graph(&files(&[
        ("lib.rs", "mod a; mod b; mod c;"),
        ("a.rs", "use crate::{b::Thing, x};\n"),
        ("b/mod.rs", "fn f() { let _ = super::c::make(); }\n"),
        ("c.rs", "pub(crate) fn make() -> crate::a::A { todo!() }\n"),
    ]));
    let circle = find_circle(&graph).expect("a -> b -> c -> a is a circle");
    let names: Vec<String> = circle.iter().map(name).collect();
    assert_eq!(names.first(), names.last());
    assert_eq!(names.len(), 4, "{names:?}");
    for m in ["crate::a", "crate::b", "crate::c"] {
        assert!(names.contains(&m.to_string()), "{names:?}");
    }
}

#[test]
fn comments_strings_tests_and_reexports_are_not_references() {
    let graph = module_graph(&files(&[
        ("lib.rs", "pub mod a; mod b;"),
        (
            "a/mod.rs",
            "mod inner;\npub use self::inner::X;\n/// See [`crate::b::B`].\n\
             const S: &str = \"crate::b\"; const C: char = '\"'; fn f<'a>(_: &'a str) {}\n\
             #[cfg(test)]\nmod tests { use crate::b::B; }\n",
        ),
        (
            "a/inner.rs",
            "pub struct X; fn g() { let _ = super::super::b::B; }\n",
        ),
        ("a/tests.rs", "use crate::b::B;\n"),
        ("b.rs", "use crate::a::X;\npub struct B;\n"),
    ]));
    assert_eq!(graph[&vec!["a".to_string()]], BTreeSet::new());
    assert_eq!(
        graph[&vec!["a".to_string(), "inner".to_string()]],
        BTreeSet::from([vec!["b".to_string()]])
    );
    // b uses a, a/inner uses b, and a only re-exports a/inner: no circle.
    assert_eq!(find_circle(&graph), None);
}

#[test]
fn a_parent_and_child_using_each_other_are_a_circle() {
    let graph = module_graph(&files(&[
        ("lib.rs", "mod exec;"),
        (
            "exec/mod.rs",
            "use self::driver::run;\npub(crate) fn helper() {}\n",
        ),
        (
            "exec/driver.rs",
            "use super::helper;\npub(crate) fn run() {}\n",
        ),
    ]));
    assert!(find_circle(&graph).is_some());
}
