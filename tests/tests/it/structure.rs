//! The repository's structure, checked like its code: no crate has an
//! import cycle between its modules, nothing points outside the
//! repository, and every `main.rs` stays thin.
//!
//! The module graph is read from the source: a file's module path comes
//! from where it lives under `src/`, and an edge from every `crate::…` and
//! `super::…` path it names (use trees expanded) to the longest module
//! prefix of that path. Inline `#[cfg(test)] mod tests` blocks are left
//! out; a module naming its own ancestor is not an edge (a child may use
//! its parent's items). Cycles are looked for between files and, for each
//! directory, between its children as wholes, so that two directories
//! that import each other through different files are caught too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the repository")
        .to_path_buf()
}

/// The crates whose modules are checked.
const CRATES: &[&str] = &[
    "proto",
    "runtime",
    "signatures",
    "engine",
    "appliance",
    "shim",
    "manager",
    "bench",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; `lib.rs` and `main.rs`
/// are the crate root (empty).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The source without comments and without an inline test module.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("//") { "" } else { l }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path that follows `prefix` (`crate::` or `super::`) in `code`,
/// with use trees (`a::{b, c::{d}}`) expanded.
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        expand("", rest, &mut out);
    }
    out
}

/// Reads one path (or use tree) at the start of `s`, appending each full
/// path to `out` with `base` in front.
fn expand(base: &str, s: &str, out: &mut Vec<String>) {
    let ident_len = |s: &str| {
        s.find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len())
    };
    let mut path = base.to_string();
    let mut s = s;
    loop {
        let n = ident_len(s);
        if n > 0 {
            if !path.is_empty() && !path.ends_with("::") {
                path.push_str("::");
            }
            path.push_str(&s[..n]);
            s = &s[n..];
        }
        if let Some(r) = s.strip_prefix("::") {
            s = r;
            if let Some(inner) = s.strip_prefix('{') {
                // A group: split at top-level commas up to its brace.
                let mut depth = 0;
                let mut start = 0;
                for (i, c) in inner.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            expand(&path, inner[start..i].trim_start(), out);
                            return;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            expand(&path, inner[start..i].trim_start(), out);
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                return;
            }
            continue;
        }
        out.push(path);
        return;
    }
}

/// The module graph of one crate: module → modules it names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mods: BTreeMap<String, PathBuf> = files
        .iter()
        .filter(|f| !f.starts_with(src.join("bin")))
        .map(|f| (module_of(src, f), f.clone()))
        .collect();
    let resolve = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|m| mods.contains_key(m))
    };
    let mut edges = BTreeMap::new();
    for (m, file) in &mods {
        let code = code_of(&std::fs::read_to_string(file).expect("readable source"));
        let parent = m.rsplit_once("::").map_or("", |(p, _)| p);
        let mut targets: BTreeSet<String> = BTreeSet::new();
        let named = paths_after(&code, "crate::").into_iter().chain(
            paths_after(&code, "super::").into_iter().map(|p| {
                if parent.is_empty() {
                    p
                } else {
                    format!("{parent}::{p}")
                }
            }),
        );
        for p in named {
            if let Some(t) = resolve(&p)
                && &t != m
                && !m.starts_with(&format!("{t}::"))
                && !t.is_empty()
            {
                targets.insert(t);
            }
        }
        edges.insert(m.clone(), targets);
    }
    edges
}

/// The strongly connected components of more than one node (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> T<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on.insert(v);
            for w in self.edges.get(v).into_iter().flatten() {
                if !self.index.contains_key(w.as_str()) {
                    self.visit(w);
                    let lw = self.low[w.as_str()];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on.contains(w.as_str()) {
                    let iw = self.index[w.as_str()];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    comp.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

/// The graph between siblings: an edge `a::x → b::y` (neither an
/// ancestor of the other) becomes an edge between the children of their
/// common parent that hold them.
fn sibling_graph(edges: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, targets) in edges {
        for b in targets {
            let pa: Vec<&str> = a.split("::").filter(|s| !s.is_empty()).collect();
            let pb: Vec<&str> = b.split("::").filter(|s| !s.is_empty()).collect();
            let common = pa.iter().zip(&pb).take_while(|(x, y)| x == y).count();
            if common == pa.len() || common == pb.len() {
                continue;
            }
            out.entry(pa[..=common].join("::"))
                .or_default()
                .insert(pb[..=common].join("::"));
        }
    }
    out
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let mut found = Vec::new();
    for c in CRATES {
        let src = repo().join(c).join("src");
        let g = graph(&src);
        assert!(
            !g.is_empty(),
            "{c}: no modules found under {}",
            src.display()
        );
        for comp in cycles(&g).into_iter().chain(cycles(&sibling_graph(&g))) {
            let detail: Vec<String> = comp
                .iter()
                .map(|m| {
                    let to: Vec<&String> = g
                        .get(m)
                        .into_iter()
                        .flatten()
                        .filter(|t| {
                            comp.iter()
                                .any(|x| t == &x || t.starts_with(&format!("{x}::")))
                        })
                        .collect();
                    format!("{m} -> {to:?}")
                })
                .collect();
            found.push(format!("{c}: {}", detail.join("; ")));
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_cycle_check_sees_use_trees_super_paths_and_directory_cycles() {
    let mut out = Vec::new();
    expand("", "a::{b, c::{d, e::F}, g}", &mut out);
    assert_eq!(out, ["a::b", "a::c::d", "a::c::e::F", "a::g"]);
    let code = "use crate::x::{Y, z::W};\nfn f() { super::q::r(); crate::p::s(); }";
    assert_eq!(paths_after(code, "crate::"), ["x::Y", "x::z::W", "p::s"]);
    assert_eq!(paths_after(code, "super::"), ["q::r"]);
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a::x", &["b::y"][..]),
        ("b::z", &["a::w"][..]),
        ("a::w", &[][..]),
        ("b::y", &[][..]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
    .collect();
    assert!(cycles(&g).is_empty(), "no cycle between files");
    assert_eq!(cycles(&sibling_graph(&g)), [vec!["a", "b"]]);
}

/// Text files of the repository (no build output, no VCS data).
fn text_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if !matches!(
                name.as_str(),
                "target" | ".git" | "corpus-seed" | "regressions" | "artifacts" | "tmp"
            ) {
                text_files(&p, out);
            }
        } else if matches!(
            p.extension().and_then(|x| x.to_str()),
            Some("rs" | "md" | "toml" | "sh" | "proto" | "sql" | "txt" | "yml" | "yaml")
        ) || name == "run"
        {
            out.push(p);
        }
    }
}

#[test]
fn nothing_points_outside_the_repository() {
    let root = repo();
    let mut files = Vec::new();
    text_files(&root, &mut files);
    assert!(files.len() > 100, "found only {} files", files.len());
    // Spelled in pieces so that this file does not match itself.
    let outside = [
        ["..", "/shared"].concat(),
        ["shared", "/DESIGN.md"].concat(),
        ["shared", "/docs/"].concat(),
        ["/work", "/shared"].concat(),
    ];
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if outside.iter().any(|o| line.contains(o.as_str())) {
                let rel = f.strip_prefix(&root).unwrap_or(f);
                found.push(format!("{}:{}: {}", rel.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "references outside the repository:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_main_rs_is_thin() {
    for c in CRATES {
        let main = repo().join(c).join("src/main.rs");
        let Ok(text) = std::fs::read_to_string(&main) else {
            continue;
        };
        let lines = text.lines().count();
        assert!(
            lines <= 150,
            "{}: {lines} lines; a main parses flags, builds a config through the library and runs",
            main.display()
        );
    }
}
