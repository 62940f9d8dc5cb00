//! The layers point one way. Reads every `crate::…` path in `src/` (up to a file's
//! `#[cfg(test)]` module, after which clippy's `items_after_test_module` allows nothing), maps each file to its top-level module, and checks the
//! edges against the layer list in `docs/architecture.md` (the fenced `layers` block, bottom
//! up, one layer a line). A module may use its own layer (unless two modules then use each
//! other) and the layers below it, never one above.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer list from `docs/architecture.md`: module -> layer index (0 = bottom).
fn layers(root: &Path) -> BTreeMap<String, usize> {
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let start = doc.find("```layers\n").expect("docs/architecture.md has a ```layers block");
    let body = &doc[start + "```layers\n".len()..];
    let body = &body[..body.find("```").expect("the layers block is closed")];
    let mut out = BTreeMap::new();
    for (i, line) in body.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        // "a b c    comment": module names up to the first run of two spaces.
        let names = line.split("  ").next().unwrap_or("");
        for m in names.split_whitespace() {
            assert!(out.insert(m.to_string(), i).is_none(), "{m} is listed twice in the layers block");
        }
    }
    out
}

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

/// The top-level modules named by `crate::` paths in `src`, including `crate::{a, b::c}`.
fn crate_refs(src: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut out = BTreeSet::new();
    for (i, _) in src.match_indices("crate::") {
        if i > 0 && src[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::` in a macro, or a longer name ending in "crate"
        }
        let rest = &src[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The first name of each top-level item of the group (items may nest braces).
            let (mut depth, mut item_start) = (0usize, true);
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        out.insert(ident(&group[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out
}

/// (from module, to module) -> files where the edge is, for the whole library.
fn edges(root: &Path) -> BTreeMap<(String, String), BTreeSet<String>> {
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        if rel == "main.rs" || rel == "lib.rs" {
            continue;
        }
        let module = rel.split('/').next().unwrap().trim_end_matches(".rs").to_string();
        let text = std::fs::read_to_string(&f).unwrap();
        let text = match text.find("#[cfg(test)]") {
            Some(i) => &text[..i],
            None => &text[..],
        };
        for to in crate_refs(text) {
            if to != module {
                out.entry((module.clone(), to)).or_default().insert(rel.clone());
            }
        }
    }
    out
}

#[test]
fn modules_import_only_their_own_layer_and_below() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let layers = layers(root);
    let edges = edges(root);
    // The reader must see the edges it checks: the web layer uses the store.
    assert!(edges.contains_key(&("web".into(), "store".into())), "no web -> store edge read: {edges:?}");
    let mut wrong = Vec::new();
    let mut unlisted = BTreeSet::new();
    for ((from, to), files) in &edges {
        let Some(&lf) = layers.get(from) else {
            unlisted.insert(from.clone());
            continue;
        };
        // `crate::Config` and other re-exports at the root name no module.
        let Some(&lt) = layers.get(to) else { continue };
        let mutual = lf == lt && edges.contains_key(&(to.clone(), from.clone()));
        if lt > lf || mutual {
            wrong.push((format!("{from} -> {to}"), files.clone()));
        }
    }
    assert!(unlisted.is_empty(), "modules missing from the layers block in docs/architecture.md: {unlisted:?}");
    assert!(wrong.is_empty(), "imports from a layer above (or both ways within a layer): {wrong:#?}");
}

#[test]
fn the_reader_finds_grouped_and_nested_paths() {
    let refs = crate_refs("use crate::{store::{Tx, get}, events::*};\nfn f() { crate::ids::parse(); $crate::x; }");
    assert_eq!(refs, ["events", "ids", "store"].iter().map(|s| s.to_string()).collect());
}

#[test]
fn only_the_store_opens_redb() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut outside = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        // `error.rs` turns redb's errors into ours.
        if rel.starts_with("store/") || rel == "error.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        if text.contains("redb::") || text.contains("use redb") || text.contains("store::tables") {
            outside.push(rel);
        }
    }
    assert!(outside.is_empty(), "redb or the table list used outside src/store: {outside:?}");
}
