//! The shape of `src/`, checked: imports run downward only (the layers `src/lib.rs`
//! names), no two files import each other however indirectly, and no file grows past 400
//! lines. A test over the `use` lines and `crate::`/`super::` paths of every file: it
//! fails on the change that breaks the rule, not a review later.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first; a module may import only modules of a lower layer (and its
/// own files).
const LAYERS: &[&[&str]] = &[
    &["domain", "config", "metrics", "shutdown"],
    &["telemetry", "auth", "client"],
    &["storage"],
    &["notifier"],
    &["http"],
    &["app"],
];

/// The longest a file of `src/` may be, in lines.
const MAX_LINES: usize = 400;

#[test]
fn imports_run_downward_and_never_in_a_circle() {
    let files = read_src(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let problems = check(&files);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_file_is_too_long() {
    let files = read_src(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let long: Vec<String> = files
        .iter()
        .filter(|(_, source)| source.lines().count() > MAX_LINES)
        .map(|(module, source)| format!("{module}: {} lines", source.lines().count()))
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

/// The checker itself catches what it is for.
#[test]
fn the_check_catches_an_upward_import_and_a_cycle() {
    let tree = |files: &[(&str, &str)]| -> BTreeMap<String, String> {
        files
            .iter()
            .map(|(m, s)| (m.to_string(), s.to_string()))
            .collect()
    };
    let upward = tree(&[
        ("domain", "use crate::storage::Storage;\n"),
        ("storage", "mod engine;\n"),
        ("storage::engine", "use crate::domain::FactRecord;\n"),
    ]);
    let problems = check(&upward);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("domain imports storage")),
        "{problems:?}"
    );
    let cycle = tree(&[
        ("storage", "mod a;\nmod b;\npub use a::A;\n"),
        ("storage::a", "use super::b::B;\n"),
        ("storage::b", "use crate::storage::A;\n"),
    ]);
    let problems = check(&cycle);
    assert!(
        problems.iter().any(|p| p.starts_with("cycle")),
        "{problems:?}"
    );
    let fine = tree(&[
        ("domain", "mod a;\npub use a::A;\n"),
        ("domain::a", "use super::b::B;\n"),
        ("domain::b", "pub struct B;\n"),
        (
            "storage",
            "use crate::domain::{self, A};\nfn f() { crate::domain::b::B; }\n",
        ),
    ]);
    assert_eq!(check(&fine), Vec::<String>::new());
}

/// Every file of `src/` but the crate root and the binary, by module path (`storage::sqlite`).
fn read_src(src: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path: PathBuf = entry.expect("an entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src/");
            let mut parts: Vec<String> = relative
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            let module = parts.join("::");
            if module == "lib" || module == "main" {
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("a readable file");
            files.insert(module, source);
        }
    }
    files
}

/// Every broken rule in `files` (module path to source).
fn check(files: &BTreeMap<String, String>) -> Vec<String> {
    let modules: BTreeSet<&str> = files.keys().map(String::as_str).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (module, source) in files {
        let from: Vec<&str> = module.split("::").collect();
        // A folder's front door declares its files: an edge to each.
        let targets = edges.entry(module.clone()).or_default();
        for other in &modules {
            if other
                .rsplit_once("::")
                .is_some_and(|(parent, _)| parent == module)
            {
                targets.insert((*other).to_owned());
            }
        }
        for path in referenced_paths(source) {
            let Some(target) = resolve(&from, &path, &modules) else {
                continue;
            };
            if target == *module {
                continue;
            }
            let (top_from, top_to) = (from[0], target.split("::").next().unwrap_or_default());
            if top_from != top_to && layer(top_to) >= layer(top_from) {
                problems.push(format!(
                    "{top_from} imports {top_to} ({module} uses {}), which is not below it",
                    path.join("::")
                ));
            }
            edges.entry(module.clone()).or_default().insert(target);
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        problems.push(format!("cycle: {}", cycle.join(" -> ")));
    }
    problems
}

/// The layer of a top-level module; unknown ones count as the top.
fn layer(top: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&top))
        .unwrap_or(LAYERS.len())
}

/// The paths a file names: every `use` tree, expanded, and every `crate::`/`super::`/
/// `self::` path in its code. Comments and the test module at the end are left out.
fn referenced_paths(source: &str) -> Vec<Vec<String>> {
    let mut code = String::new();
    for line in source.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        code.push_str(line.split("//").next().unwrap_or_default());
        code.push('\n');
    }
    let mut paths = Vec::new();
    let mut rest = code.as_str();
    let mut outside_use = String::new();
    while let Some(at) = find_use(rest) {
        outside_use.push_str(&rest[..at]);
        let tree_start = at + "use ".len();
        let end = rest[tree_start..]
            .find(';')
            .map_or(rest.len(), |e| tree_start + e);
        for path in expand(&rest[tree_start..end]) {
            paths.push(path.split("::").map(str::to_owned).collect());
        }
        rest = &rest[(end + 1).min(rest.len())..];
    }
    outside_use.push_str(rest);
    for root in ["crate::", "super::", "self::"] {
        let mut text = outside_use.as_str();
        while let Some(at) = text.find(root) {
            let starts_word = at == 0
                || !text[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            let tail: String = text[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if starts_word {
                paths.push(
                    tail.split("::")
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
            text = &text[at + root.len()..];
        }
    }
    paths
}

/// Where the next `use` keyword starts, as a statement (not inside a word).
fn find_use(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = text[from..].find("use ") {
        let at = from + at;
        let before = text[..at].chars().next_back();
        if before.is_none_or(|c| c.is_whitespace() || c == ')' || c == ';' || c == '{') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// A `use` tree as the paths it imports: `a::{b, c::{d, e as f}}` is `a::b`, `a::c::d`,
/// `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split_whitespace().next().unwrap_or_default();
        return vec![path.trim_end_matches("::self").to_owned()];
    };
    let head = &tree[..open];
    let close = tree.rfind('}').unwrap_or(tree.len());
    let inner = &tree[open + 1..close];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|item| !item.trim().is_empty())
        .flat_map(|item| {
            let item = item.trim();
            if item == "self" {
                vec![head.trim_end_matches("::").to_owned()]
            } else {
                expand(&format!("{head}{item}"))
            }
        })
        .collect()
}

/// The module file a path from module `from` lands in: the longest prefix of its absolute
/// form that is a module. `None` for paths outside this crate.
fn resolve(from: &[&str], path: &[String], modules: &BTreeSet<&str>) -> Option<String> {
    let mut absolute: Vec<&str> = Vec::new();
    let mut segments = path.iter().map(String::as_str).peekable();
    match segments.peek().copied() {
        Some("crate") => {
            segments.next();
        }
        Some("super") => {
            absolute.extend_from_slice(from);
            while segments.peek() == Some(&"super") {
                segments.next();
                absolute.pop();
            }
        }
        Some("self") => {
            segments.next();
            absolute.extend_from_slice(from);
        }
        Some(first) => {
            // A file of this folder named without `self::`, or another crate.
            let child = format!("{}::{first}", from.join("::"));
            if !modules.contains(child.as_str()) {
                return None;
            }
            absolute.extend_from_slice(from);
        }
        None => return None,
    }
    absolute.extend(segments);
    (1..=absolute.len())
        .rev()
        .map(|n| absolute[..n].join("::"))
        .find(|candidate| modules.contains(candidate.as_str()))
}

/// A cycle in the graph, if there is one, as the modules along it.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, bool>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(true) => return None,
            Some(false) => {
                let at = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[at..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        state.insert(node.to_owned(), false);
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, state, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        state.insert(node.to_owned(), true);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, edges, &mut state, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}
