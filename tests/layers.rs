//! The crates' modules import each other in one direction only: in each library crate, no
//! module reaches (through `crate::` or `super::` paths) a module that reaches it back. Test
//! and fuzzing modules, and the generated codec, are left out. A loop found is printed as
//! the modules it runs through.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const CRATES: &[&str] = &[
    "core/src",
    "admin/src",
    "iggy-client/src",
    "iggy-backend/src",
    "embedded/src",
    "runtime-tokio/src",
    "runtime-smol/src",
    "tls/src",
];

/// Modules that exist only for tests and fuzzers: they may use anything.
fn left_out(module: &[String]) -> bool {
    module.iter().any(|m| {
        matches!(
            m.as_str(),
            "tests" | "testing" | "fuzzing" | "sample" | "generated"
        )
    })
}

/// Every module of the crate whose sources are under `src`, by path, with its file.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("a source directory") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut module: Vec<String> = rel
                .with_extension("")
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("lib" | "mod")) {
                module.pop();
            }
            if !left_out(&module) {
                out.insert(module, path);
            }
        }
    }
    out
}

/// The code of a file without its comments and string literals, so that paths in prose do
/// not count.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut kept = String::new();
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if !in_str && c == '/' && chars.get(i + 1) == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' && !(prev == '\'' && chars.get(i + 1) == Some(&'\'')) {
                in_str = !in_str;
            } else if !in_str {
                kept.push(c);
            }
            prev = c;
            i += 1;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// The `crate::` and `super::` paths in `code`, each as the words after the keyword, and
/// the paths inside `use` groups (`use crate::a::{b, c::d}`) split out.
fn paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let at_word_start = i == 0 || !word(bytes[i - 1]) && bytes[i - 1] != ':';
        let base: Option<Vec<String>> = if at_word_start && rest.starts_with("crate::") {
            i += "crate::".len();
            Some(Vec::new())
        } else if at_word_start && rest.starts_with("super::") {
            let mut base = module.to_vec();
            while bytes[i..].iter().collect::<String>().starts_with("super::") {
                base.pop();
                i += "super::".len();
            }
            Some(base)
        } else {
            None
        };
        let Some(base) = base else {
            i += 1;
            continue;
        };
        let mut path = base.clone();
        loop {
            let start = i;
            while i < bytes.len() && word(bytes[i]) {
                i += 1;
            }
            if i > start {
                path.push(bytes[start..i].iter().collect());
            }
            if bytes[i..].iter().take(2).collect::<String>() == "::" {
                i += 2;
                if bytes.get(i) == Some(&'{') {
                    // A group: each entry is a path after this prefix.
                    let end = group_end(&bytes, i);
                    let inner: String = bytes[i + 1..end].iter().collect();
                    for part in inner.split(',') {
                        let mut p = path.clone();
                        p.extend(
                            part.split("::")
                                .map(|w| w.trim().trim_matches(|c: char| !word(c)).to_owned())
                                .filter(|w| !w.is_empty() && w != "self"),
                        );
                        found.push(p);
                    }
                    i = end + 1;
                    break;
                }
                continue;
            }
            break;
        }
        found.push(path);
    }
    found
}

fn group_end(chars: &[char], open: usize) -> usize {
    let mut depth = 0;
    for (j, &c) in chars.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    chars.len() - 1
}

/// A loop in `edges`, if there is one, as the modules it runs through.
fn find_loop(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    fn visit(
        at: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        done: &mut BTreeSet<Vec<String>>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        if let Some(i) = stack.iter().position(|m| m == at) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(at.clone());
            return Some(cycle);
        }
        if done.contains(at) {
            return None;
        }
        stack.push(at.clone());
        for next in edges.get(at).into_iter().flatten() {
            if let Some(c) = visit(next, edges, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(at.clone());
        None
    }
    let mut done = BTreeSet::new();
    for start in edges.keys() {
        if let Some(c) = visit(start, edges, &mut done, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for krate in CRATES {
        let modules = modules(&root.join(krate));
        assert!(!modules.is_empty(), "{krate}: no modules found");
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for (module, file) in &modules {
            let text = fs::read_to_string(file).expect("a source file");
            // What only tests compile cannot make a loop in what ships.
            let shipped = text
                .split("#[cfg(test)]\nmod tests")
                .next()
                .unwrap_or_default();
            for mut path in paths(&code(shipped), module) {
                // The longest prefix that names a module of the crate.
                while !path.is_empty() && !modules.contains_key(&path) {
                    path.pop();
                }
                if path != *module && !(path.is_empty() && module.is_empty()) {
                    if left_out(&path) {
                        continue;
                    }
                    // A module is not an import of its own parent's declaration of it.
                    edges.entry(module.clone()).or_default().insert(path);
                }
            }
        }
        if let Some(cycle) = find_loop(&edges) {
            let names: Vec<String> = cycle
                .iter()
                .map(|m| {
                    if m.is_empty() {
                        "crate".to_owned()
                    } else {
                        m.join("::")
                    }
                })
                .collect();
            panic!("{krate}: an import loop: {}", names.join(" -> "));
        }
    }
}
