//! No two modules of a crate import each other, directly or through others: the top-level
//! modules of every crate of the workspace form a directed acyclic graph. An edge `a -> b`
//! is any mention of `crate::b` in the non-test code of module `a` (its file or folder).
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Top-level module of a source file: `src/a.rs` and `src/a/**` are `a`; lib.rs and main.rs,
/// which only declare and re-export, have none.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    match first.as_str() {
        "lib.rs" | "main.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// `crate::x` mentions in the code before the first `#[cfg(test)]`.
fn mentions(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        // `crate::{a, b}` lists several.
        let rest = &code[i + "crate::".len()..];
        let names: Vec<&str> = if let Some(inner) = rest.strip_prefix('{') {
            inner[..inner.find('}').unwrap_or(0)]
                .split(',')
                .map(|s| s.trim().split("::").next().unwrap_or(""))
                .collect()
        } else {
            vec![rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("")]
        };
        for n in names {
            if !n.is_empty() && n.chars().next().unwrap().is_lowercase() {
                out.insert(n.to_string());
            }
        }
    }
    out
}

fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|s| s == m).unwrap();
                    let mut c = stack[start..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn graph_of(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        if let Some(m) = module_of(src, &f) {
            let deps = mentions(&std::fs::read_to_string(&f).unwrap());
            let entry = g.entry(m.clone()).or_default();
            entry.extend(deps.into_iter().filter(|d| *d != m));
        }
    }
    g
}

#[test]
fn the_checker_finds_a_planted_cycle() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    assert_eq!(
        mentions("use crate::{x::Y, z};\nuse crate::w::V;\n#[cfg(test)]\nuse crate::t;"),
        BTreeSet::from(["w".to_string(), "x".to_string(), "z".to_string()])
    );
}

#[test]
fn no_crate_of_the_workspace_has_an_import_cycle() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for name in ["hmoe", "finetune", "lab", "fsio"] {
        let g = graph_of(&crates.join(name).join("src"));
        assert!(!g.is_empty(), "{name}: no modules found");
        if let Some(c) = cycle(&g) {
            panic!("{name}: modules import each other: {}", c.join(" -> "));
        }
    }
}
