//! Layering lint for the crate's own sources; this file owns the rule reader, the import scanner
//! and the two checks, and uses only `std` (it also builds with plain `rustc --test`).
//!
//! The rule lives in one place: the first ```text block of the `//!` comment at the top of
//! `src/lib.rs`, one layer per line from the top down, module names separated by spaces.
//!
//! 1. A file of top-level module A (`src/A.rs` or `src/A/`) may import from module B only when
//!    B's layer is strictly below A's: sideways and upward imports are violations, so nothing
//!    imports the top layers (`cli`, then `pipeline`) from below.
//! 2. The files inside one top-level module import one another without cycles.
//!
//! Imports are every `crate::` path (in `use` trees and inline in code), plus `self::`, `super::`
//! and edition-2021 child-module paths resolved against the file's module. `crate::NAME` of a
//! `#[macro_export]` macro belongs to the module defining it. A path ending at a file that
//! re-exports the name (`pub use ir::Graph;`, `pub use exec::*;`) is followed to the defining
//! file, and `pub use` / `mod x;` in a `mod.rs` are no dependency edges of their own.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

/// Keywords whose next identifier names an item (what a glob re-export can bring in).
const ITEM_KEYWORDS: [&str; 9] = ["fn", "struct", "enum", "trait", "type", "const", "static", "union", "mod"];

#[test]
fn imports_point_one_way() {
    let src = repo_root().join("src");
    let violations = check(&src, &src.join("lib.rs"));
    assert!(
        violations.is_empty(),
        "{} layering violation(s) against the rule in the ```text block at the top of \
         src/lib.rs:\n{}\n",
        violations.len(),
        violations.join("\n")
    );
}

fn repo_root() -> PathBuf {
    match option_env!("CARGO_MANIFEST_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_dir().expect("the current directory is readable"),
    }
}

// ---------------------------------------------------------------------------------------------
// The checker

/// Checks every `.rs` file under `src` (but `main.rs` and `bin/`) against the rule written in
/// `lib_rs` (normally `src/lib.rs`); returns all violations, sorted, one line each.
pub fn check(src: &Path, lib_rs: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let index = match CrateIndex::load(src) {
        Ok(index) => index,
        Err(err) => {
            found.push(Violation::at("", 0, format!("cannot read {}: {err}", src.display())));
            return finish(found);
        }
    };
    match fs::read_to_string(lib_rs) {
        Ok(lib) => {
            let declared = declared_modules(&lib);
            if let Some(rule) = read_rule(&lib, &declared, &mut found) {
                check_layers(&index, &rule, &declared, &mut found);
            }
        }
        Err(err) => {
            let message = format!("cannot read the rule file {}: {err}", lib_rs.display());
            found.push(Violation::at("lib.rs", 1, message));
        }
    }
    check_cycles(&index, &mut found);
    finish(found)
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    /// Path relative to `src/`.
    file: String,
    line: usize,
    message: String,
}

impl Violation {
    fn at(file: &str, line: usize, message: String) -> Violation {
        Violation { file: file.to_string(), line, message }
    }
}

fn finish(mut found: Vec<Violation>) -> Vec<String> {
    found.sort();
    found.dedup();
    found.into_iter().map(|v| format!("src/{}:{}: {}", v.file, v.line, v.message)).collect()
}

// ---------------------------------------------------------------------------------------------
// The rule in lib.rs

#[derive(Default)]
struct Rule {
    /// Module name to its layer, 1 = top.
    layer_of: BTreeMap<String, usize>,
    layers: Vec<Vec<String>>,
}

/// The `mod NAME;` declarations of lib.rs (any visibility), with their lines.
fn declared_modules(lib: &str) -> BTreeMap<String, usize> {
    let toks = tokenize(&strip_comments_and_strings(lib));
    let mut depth = 0usize;
    let mut out = BTreeMap::new();
    for (i, tok) in toks.iter().enumerate() {
        match tok.text.as_str() {
            "{" => depth += 1,
            "}" => depth = depth.saturating_sub(1),
            "mod" if depth == 0 && tok_is(&toks, i + 2, ";") => {
                if let Some(name) = ident_at(&toks, i + 1) {
                    out.insert(name, tok.line);
                }
            }
            _ => {}
        }
    }
    out
}

/// The non-empty lines of the first ```text block in the leading `//!` comment, with their
/// line numbers; `None` when there is no such block.
fn rule_block(lib: &str) -> Option<Vec<(usize, String)>> {
    let mut inside = false;
    let mut rows = Vec::new();
    for (n, line) in lib.lines().enumerate() {
        let trimmed = line.trim();
        let Some(doc) = trimmed.strip_prefix("//!") else {
            let in_header = trimmed.is_empty() || trimmed.starts_with("#![") || (trimmed.starts_with("//") && !trimmed.starts_with("///"));
            if in_header {
                continue;
            }
            break;
        };
        let doc = doc.trim();
        if !inside {
            inside = doc == "```text";
        } else if doc.starts_with("```") {
            return Some(rows);
        } else if !doc.is_empty() {
            rows.push((n + 1, doc.to_string()));
        }
    }
    inside.then_some(rows)
}

/// Reads the layers and reports what is wrong with them: no block, a declared module in no
/// layer, a layer naming an undeclared module, a module in two layers.
fn read_rule(lib: &str, declared: &BTreeMap<String, usize>, found: &mut Vec<Violation>) -> Option<Rule> {
    let rows = match rule_block(lib) {
        Some(rows) if !rows.is_empty() => rows,
        other => {
            let what = if other.is_some() { "an empty" } else { "no" };
            let message = format!(
                "no layer rule: the leading `//!` comment of lib.rs has {what} ```text block \
                 (one layer per line, top layer first, module names separated by spaces)"
            );
            found.push(Violation::at("lib.rs", 1, message));
            return None;
        }
    };
    let mut rule = Rule::default();
    for (number, (line, row)) in rows.iter().enumerate() {
        let layer = number + 1;
        let names: Vec<String> = row.split_whitespace().map(String::from).collect();
        for name in &names {
            if let Some(first) = rule.layer_of.get(name) {
                let message = format!("`{name}` is placed twice, in layers {first} and {layer}");
                found.push(Violation::at("lib.rs", *line, message));
                continue;
            }
            if !declared.contains_key(name) {
                let message = format!("layer {layer} names `{name}`, which is no module: lib.rs has no `mod {name};`");
                found.push(Violation::at("lib.rs", *line, message));
            }
            rule.layer_of.insert(name.clone(), layer);
        }
        rule.layers.push(names);
    }
    for (name, line) in declared {
        if !rule.layer_of.contains_key(name) {
            let message = format!("`mod {name};` is in no layer: add `{name}` to a line of the ```text rule block");
            found.push(Violation::at("lib.rs", *line, message));
        }
    }
    Some(rule)
}

// ---------------------------------------------------------------------------------------------
// Rule 1: imports point down

fn check_layers(index: &CrateIndex, rule: &Rule, declared: &BTreeMap<String, usize>, found: &mut Vec<Violation>) {
    for file in &index.files {
        let Some(from) = file.module.first() else {
            continue;
        };
        let Some(&from_layer) = rule.layer_of.get(from) else {
            continue;
        };
        for import in &file.facts.imports {
            let Some(to) = index.top_module(&import.path, rule, declared) else {
                continue;
            };
            let Some(&to_layer) = rule.layer_of.get(&to) else {
                continue;
            };
            if &to != from && to_layer <= from_layer {
                let message = layer_message(rule, &import.text, (from, from_layer), (&to, to_layer));
                found.push(Violation::at(&file.rel, import.line, message));
            }
        }
    }
}

fn layer_message(rule: &Rule, text: &str, from: (&str, usize), to: (&str, usize)) -> String {
    let ((from, from_layer), (to, to_layer)) = (from, to);
    let mut message = if to_layer == from_layer {
        format!(
            "`{text}` points sideways: {from} and {to} share layer {from_layer}; a module may \
             import only from layers below its own"
        )
    } else {
        format!(
            "`{text}` points up: {from} (layer {from_layer}) may not import {to} \
             (layer {to_layer})"
        )
    };
    let top = rule.layers[0].join(" ");
    if to_layer == 1 {
        message += &format!("; nothing may import the top layer ({top})");
    } else if to_layer == 2 {
        message += &format!("; nothing but the top layer ({top}) may import {to}");
    }
    message
}

// ---------------------------------------------------------------------------------------------
// Rule 2: no cycles among the files of one top-level module

fn check_cycles(index: &CrateIndex, found: &mut Vec<Violation>) {
    let edges = intra_module_edges(index);
    let mut next: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &(a, b) in edges.keys() {
        next.entry(a).or_default().push(b);
    }
    // The shortest cycle through each edge that lies on one: bounded, and covers every such edge.
    let mut cycles = BTreeSet::new();
    for &(a, b) in edges.keys() {
        if let Some(back) = shortest_path(&next, b, a) {
            let mut cycle = vec![a];
            cycle.extend_from_slice(&back[..back.len() - 1]);
            cycles.insert(rotate_to_smallest(cycle));
        }
    }
    for cycle in cycles {
        found.push(cycle_violation(index, &edges, &cycle));
    }
}

/// File-to-file edges inside one top-level module, with the first import making each; `pub use`
/// re-exports and `mod x;` declarations make none.
fn intra_module_edges(index: &CrateIndex) -> BTreeMap<(usize, usize), (usize, String)> {
    let mut edges = BTreeMap::new();
    for (a, file) in index.files.iter().enumerate() {
        let Some(top) = file.module.first() else {
            continue;
        };
        for import in file.facts.imports.iter().filter(|i| !i.reexport) {
            let Some(b) = index.file_of(&import.path) else {
                continue;
            };
            // A folder's `mod.rs` assembles its own children (a registry calling each family's
            // `register`, a dispatcher calling each subcommand): parent to descendant is
            // structure, not a dependency; only the way back up can close a cycle.
            let descendant = index.files[b].module.len() > file.module.len() && index.files[b].module.starts_with(&file.module);
            if b != a && !descendant && index.files[b].module.first() == Some(top) {
                edges.entry((a, b)).or_insert_with(|| (import.line, import.text.clone()));
            }
        }
    }
    edges
}

/// Breadth-first path `from ..= to`, both ends included.
fn shortest_path(next: &BTreeMap<usize, Vec<usize>>, from: usize, to: usize) -> Option<Vec<usize>> {
    let mut came_from = BTreeMap::from([(from, from)]);
    let mut queue = VecDeque::from([from]);
    while let Some(node) = queue.pop_front() {
        if node == to {
            let mut path = vec![to];
            while *path.last()? != from {
                path.push(came_from[path.last()?]);
            }
            path.reverse();
            return Some(path);
        }
        for &succ in next.get(&node).into_iter().flatten() {
            if let std::collections::btree_map::Entry::Vacant(slot) = came_from.entry(succ) {
                slot.insert(node);
                queue.push_back(succ);
            }
        }
    }
    None
}

fn rotate_to_smallest(mut cycle: Vec<usize>) -> Vec<usize> {
    let smallest = (0..cycle.len()).min_by_key(|&k| cycle[k]).unwrap_or(0);
    cycle.rotate_left(smallest);
    cycle
}

fn cycle_violation(index: &CrateIndex, edges: &BTreeMap<(usize, usize), (usize, String)>, cycle: &[usize]) -> Violation {
    let rel = |f: usize| index.files[f].rel.as_str();
    let hop = |k: usize| (cycle[k], cycle[(k + 1) % cycle.len()]);
    let mut order: Vec<&str> = cycle.iter().map(|&f| rel(f)).collect();
    order.push(rel(cycle[0]));
    let imports: Vec<String> = (0..cycle.len())
        .map(|k| {
            let (line, text) = &edges[&hop(k)];
            format!("{}:{line} `{text}`", rel(hop(k).0))
        })
        .collect();
    let (line, text) = &edges[&hop(0)];
    let module = index.files[cycle[0]].module[0].as_str();
    let message = format!("`{text}` is part of an import cycle inside module {module}: {} (imports: {})", order.join(" -> "), imports.join(", "));
    Violation::at(rel(cycle[0]), *line, message)
}

// ---------------------------------------------------------------------------------------------
// The crate's files, their module paths and what each imports

struct SourceFile {
    /// Path relative to `src/`, with `/`.
    rel: String,
    /// `graph::ir` for `graph/ir.rs`, `graph` for `graph/mod.rs`, empty for `lib.rs`.
    module: Vec<String>,
    tokens: Vec<Tok>,
    facts: Facts,
}

#[derive(Default)]
struct Facts {
    imports: Vec<Import>,
    /// `pub use` at file level: the name it exports to its absolute path (`None`: another crate).
    reexports: BTreeMap<String, Option<Vec<String>>>,
    /// `pub use x::*` at file level: the absolute paths globbed.
    globs: Vec<Vec<String>>,
    /// Names of items defined in the file (anywhere; approximate, for glob re-exports).
    items: BTreeSet<String>,
    /// `#[macro_export] macro_rules! NAME`.
    exported_macros: Vec<String>,
}

struct Import {
    line: usize,
    /// The import as written (a leaf of a `use` tree is shown flattened).
    text: String,
    /// Absolute path from the crate root, without `crate`.
    path: Vec<String>,
    reexport: bool,
}

struct CrateIndex {
    files: Vec<SourceFile>,
    by_module: BTreeMap<Vec<String>, usize>,
}

impl CrateIndex {
    fn load(src: &Path) -> std::io::Result<CrateIndex> {
        let mut rels = Vec::new();
        collect_rs_files(src, src, &mut rels)?;
        rels.sort();
        let texts = rels.iter().map(|rel| fs::read_to_string(src.join(rel))).collect::<Result<Vec<_>, _>>()?;
        let declared_by_path = path_attribute_modules(&rels, &texts);
        let mut files: Vec<SourceFile> = rels
            .into_iter()
            .zip(&texts)
            .map(|(rel, text)| SourceFile {
                module: declared_by_path.get(&rel).cloned().unwrap_or_else(|| module_path_of(&rel)),
                tokens: tokenize(&strip_comments_and_strings(text)),
                facts: Facts::default(),
                rel,
            })
            .collect();
        let mut by_module = BTreeMap::new();
        for (f, file) in files.iter().enumerate() {
            by_module.entry(file.module.clone()).or_insert(f);
        }
        let mut index = CrateIndex { files: Vec::new(), by_module };
        let facts: Vec<Facts> = files.iter().map(|file| scan_file(&index, file)).collect();
        for (file, facts) in files.iter_mut().zip(facts) {
            file.facts = facts;
        }
        index.files = files;
        index.export_macros();
        Ok(index)
    }

    /// `#[macro_export]` puts a macro at the crate root: record it as a root re-export.
    fn export_macros(&mut self) {
        let Some(&root) = self.by_module.get(&Vec::new()) else {
            return;
        };
        let mut exports = Vec::new();
        for file in &self.files {
            for name in &file.facts.exported_macros {
                let mut path = file.module.clone();
                path.push(name.clone());
                exports.push((name.clone(), path));
            }
        }
        for (name, path) in exports {
            self.files[root].facts.reexports.insert(name, Some(path));
        }
    }

    fn is_child(&self, scope: &[String], name: &str) -> bool {
        let mut path = scope.to_vec();
        path.push(name.to_string());
        self.by_module.contains_key(&path)
    }

    /// The absolute path (from the crate root, without `crate`) of `segs` written in `scope`;
    /// `None` for other crates and paths that leave the crate.
    fn absolutize(&self, segs: &[String], scope: &[String]) -> Option<Vec<String>> {
        let first = segs.first()?.as_str();
        match first {
            "crate" => Some(segs[1..].to_vec()),
            "self" if segs.get(1).is_some_and(|s| s == "super") => self.absolutize(&segs[1..], scope),
            "self" => Some([scope, &segs[1..]].concat()),
            "super" => {
                let mut base = scope.to_vec();
                let ups = segs.iter().take_while(|s| *s == "super").count();
                for _ in 0..ups {
                    base.pop()?;
                }
                base.extend_from_slice(&segs[ups..]);
                Some(base)
            }
            _ if self.is_child(scope, first) => Some([scope, segs].concat()),
            _ => None,
        }
    }

    /// The file with the longest module path that is a prefix of `path`, and that prefix's length.
    fn longest_prefix(&self, path: &[String]) -> Option<(usize, usize)> {
        (0..=path.len()).rev().find_map(|n| self.by_module.get(&path[..n]).map(|&f| (f, n)))
    }

    /// The file defining what `path` names, following re-exports; `None` when it leads out of
    /// the crate.
    fn file_of(&self, path: &[String]) -> Option<usize> {
        let mut path = path.to_vec();
        for _ in 0..32 {
            let (file, used) = self.longest_prefix(&path)?;
            let Some(name) = path.get(used).cloned() else {
                return Some(file);
            };
            let facts = &self.files[file].facts;
            let rest = &path[used + 1..];
            let followed = match facts.reexports.get(&name) {
                Some(None) => return None,
                Some(Some(target)) => [target.as_slice(), rest].concat(),
                None => match facts.globs.iter().map(|g| [g, &path[used..]].concat()).find(|c| self.defines(c)) {
                    Some(candidate) => candidate,
                    None => return Some(file),
                },
            };
            if followed == path {
                return Some(file);
            }
            path = followed;
        }
        None
    }

    /// Whether `path` names a module, or an item or re-export of the file it leads into.
    fn defines(&self, path: &[String]) -> bool {
        match self.longest_prefix(path) {
            Some((_, used)) if used == path.len() => true,
            Some((file, used)) => {
                let facts = &self.files[file].facts;
                facts.items.contains(&path[used]) || facts.reexports.contains_key(&path[used])
            }
            None => false,
        }
    }

    /// The top-level module an absolute path imports from: its first segment when that is a
    /// module, else the module of the file it resolves to (`crate::bad_input` -> `error`).
    fn top_module(&self, path: &[String], rule: &Rule, declared: &BTreeMap<String, usize>) -> Option<String> {
        let first = path.first()?;
        if declared.contains_key(first) || rule.layer_of.contains_key(first) {
            return Some(first.clone());
        }
        self.files[self.file_of(path)?].module.first().cloned()
    }
}

fn collect_rs_files(src: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let rel = path.strip_prefix(src).unwrap_or(&path).to_string_lossy().replace('\\', "/");
        if path.is_dir() {
            if rel != "bin" {
                collect_rs_files(src, &path, out)?;
            }
        } else if rel.ends_with(".rs") && rel != "main.rs" {
            out.push(rel);
        }
    }
    Ok(())
}

/// `graph/ir.rs` -> `graph::ir`, `graph/mod.rs` -> `graph`, `lib.rs` -> the root.
fn module_path_of(rel: &str) -> Vec<String> {
    if rel == "lib.rs" {
        return Vec::new();
    }
    let mut parts: Vec<String> = rel.trim_end_matches(".rs").split('/').map(String::from).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Files brought in by `#[path = "p"] mod name;`: the module they are declared as.
fn path_attribute_modules(rels: &[String], texts: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (rel, text) in rels.iter().zip(texts) {
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let Some(after) = line.trim().strip_prefix("#[path") else {
                continue;
            };
            let Some(target) = after.split('"').nth(1) else {
                continue;
            };
            let Some(name) = lines[n..].iter().take(4).find_map(|l| declared_mod_name(l)) else {
                continue;
            };
            let mut module = module_path_of(rel);
            module.push(name);
            out.insert(join_rel(rel, target), module);
        }
    }
    out
}

/// `tests` from `mod tests;` (after any attributes on the same line).
fn declared_mod_name(line: &str) -> Option<String> {
    let code = line.rsplit(']').next()?;
    let words: Vec<&str> = code.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ';')).filter(|w| !w.is_empty()).collect();
    let at = words.iter().position(|w| *w == "mod")?;
    let name = words.get(at + 1)?.strip_suffix(';')?;
    Some(name.to_string())
}

/// `target` relative to the folder of the file `rel` (a `#[path]` outside inline modules).
fn join_rel(rel: &str, target: &str) -> String {
    let mut parts: Vec<&str> = rel.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    parts.join("/")
}

// ---------------------------------------------------------------------------------------------
// Scanning one file's tokens

/// Walks the tokens once, tracking inline `mod x { .. }` scopes, and collects imports, re-exports,
/// item names and exported macros.
fn scan_file(index: &CrateIndex, file: &SourceFile) -> Facts {
    let toks = &file.tokens;
    let mut facts = Facts::default();
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let text = toks[i].text.as_str();
        match text {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                while inline.last().is_some_and(|(_, d)| *d > depth) {
                    inline.pop();
                }
            }
            "use" => {
                let scope = scope_of(&file.module, &inline);
                i = scan_use(index, toks, i, &scope, inline.is_empty(), &mut facts);
                continue;
            }
            "mod" if tok_is(toks, i + 2, "{") && ident_at(toks, i + 1).is_some() => {
                depth += 1;
                inline.push((toks[i + 1].text.clone(), depth));
                facts.items.insert(toks[i + 1].text.clone());
                i += 3;
                continue;
            }
            "macro_rules" if tok_is(toks, i + 1, "!") => {
                if let Some(name) = ident_at(toks, i + 2) {
                    if macro_exported(toks, i) {
                        facts.exported_macros.push(name.clone());
                    }
                    facts.items.insert(name);
                }
            }
            _ if ITEM_KEYWORDS.contains(&text) => {
                if let Some(name) = ident_at(toks, i + 1) {
                    facts.items.insert(name);
                }
            }
            _ => {
                if let Some(end) = scan_inline_path(index, toks, i, &file.module, &inline, &mut facts) {
                    i = end;
                    continue;
                }
            }
        }
        i += 1;
    }
    facts
}

fn scope_of(module: &[String], inline: &[(String, usize)]) -> Vec<String> {
    module.iter().cloned().chain(inline.iter().map(|(name, _)| name.clone())).collect()
}

struct UseLeaf {
    segs: Vec<String>,
    /// The name the leaf binds (its last segment or its `as` alias).
    name: String,
    glob: bool,
    line: usize,
}

/// Records the leaves of the `use` item at `toks[at]`; returns the index after its `;`.
fn scan_use(index: &CrateIndex, toks: &[Tok], at: usize, scope: &[String], file_level: bool, facts: &mut Facts) -> usize {
    let reexport = is_pub(toks, at);
    let mut leaves = Vec::new();
    let mut j = at + 1;
    parse_use_tree(toks, &mut j, &mut Vec::new(), &mut leaves);
    while j < toks.len() && toks[j].text != ";" {
        j += 1;
    }
    for leaf in leaves {
        let path = index.absolutize(&leaf.segs, scope);
        if reexport && file_level {
            match (&path, leaf.glob) {
                (Some(path), true) => facts.globs.push(path.clone()),
                (_, true) => {}
                (_, false) => {
                    facts.reexports.insert(leaf.name.clone(), path.clone());
                }
            }
        }
        if let Some(path) = path {
            let text = format!("{}use {}{}", if reexport { "pub " } else { "" }, leaf.segs.join("::"), if leaf.glob { "::*" } else { "" });
            facts.imports.push(Import { line: leaf.line, text, path, reexport });
        }
    }
    j + 1
}

/// Parses one use tree (`a::b::{c, d::*, e as f}`) starting at `toks[*j]`, flattening it into
/// `out` with `prefix` in front.
fn parse_use_tree(toks: &[Tok], j: &mut usize, prefix: &mut Vec<String>, out: &mut Vec<UseLeaf>) {
    let keep = prefix.len();
    while let Some(tok) = toks.get(*j) {
        match tok.text.as_str() {
            "::" => *j += 1,
            "*" => {
                *j += 1;
                out.push(UseLeaf { segs: prefix.clone(), name: String::new(), glob: true, line: tok.line });
                break;
            }
            "{" => {
                *j += 1;
                parse_use_group(toks, j, prefix, out);
                break;
            }
            word if is_ident(word) => {
                prefix.push(word.to_string());
                *j += 1;
                if tok_is(toks, *j, "::") {
                    continue;
                }
                let mut segs = prefix.clone();
                if segs.len() > 1 && segs.last().is_some_and(|s| s == "self") {
                    segs.pop();
                }
                let mut name = segs.last().cloned().unwrap_or_default();
                if tok_is(toks, *j, "as") {
                    if let Some(alias) = ident_at(toks, *j + 1) {
                        name = alias;
                    }
                    *j += 2;
                }
                out.push(UseLeaf { segs, name, glob: false, line: tok.line });
                break;
            }
            _ => break,
        }
    }
    prefix.truncate(keep);
}

/// The inside of `{ .. }` in a use tree, up to and including the closing brace.
fn parse_use_group(toks: &[Tok], j: &mut usize, prefix: &mut Vec<String>, out: &mut Vec<UseLeaf>) {
    while let Some(tok) = toks.get(*j) {
        match tok.text.as_str() {
            "}" => {
                *j += 1;
                return;
            }
            "," => *j += 1,
            ";" => return,
            _ => {
                let before = *j;
                parse_use_tree(toks, j, prefix, out);
                if *j == before {
                    *j += 1;
                }
            }
        }
    }
}

/// An inline path at `toks[i]` starting with `crate`, `self`, `super` or a child module of the
/// current scope: records it and returns the index after it.
fn scan_inline_path(index: &CrateIndex, toks: &[Tok], i: usize, module: &[String], inline: &[(String, usize)], facts: &mut Facts) -> Option<usize> {
    if !tok_is(toks, i + 1, "::") || ident_at(toks, i + 2).is_none() {
        return None;
    }
    let prev = if i > 0 { toks[i - 1].text.as_str() } else { "" };
    // Inside a longer path, `$crate` of a macro, a method's turbofish, or `pub(in crate::x)`.
    if matches!(prev, "::" | "$" | ".") || (prev == "in" && i >= 2 && toks[i - 2].text == "(") {
        return None;
    }
    let first = toks[i].text.as_str();
    let scope = scope_of(module, inline);
    if !matches!(first, "crate" | "self" | "super") && !index.is_child(&scope, first) {
        return None;
    }
    let mut segs = vec![first.to_string()];
    let mut end = i + 1;
    while tok_is(toks, end, "::") {
        let Some(seg) = ident_at(toks, end + 1) else {
            break;
        };
        segs.push(seg);
        end += 2;
    }
    if let Some(path) = index.absolutize(&segs, &scope) {
        let text = segs.join("::");
        facts.imports.push(Import { line: toks[i].line, text, path, reexport: false });
    }
    Some(end)
}

/// Whether the `use` at `toks[at]` has a visibility: `pub use`, `pub(crate) use`, ...
fn is_pub(toks: &[Tok], at: usize) -> bool {
    match at.checked_sub(1).map(|p| toks[p].text.as_str()) {
        Some("pub") => true,
        Some(")") => {
            let open = (0..at - 1).rev().find(|&k| toks[k].text == "(");
            open.is_some_and(|k| k > 0 && toks[k - 1].text == "pub")
        }
        _ => false,
    }
}

/// Whether the `macro_rules` at `toks[at]` carries `#[macro_export]` among its attributes.
fn macro_exported(toks: &[Tok], at: usize) -> bool {
    let mut j = at;
    while j >= 1 && toks[j - 1].text == "]" {
        let close = j - 1;
        let mut depth = 0i32;
        let mut k = close;
        loop {
            match toks[k].text.as_str() {
                "]" => depth += 1,
                "[" => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                break;
            }
            if k == 0 {
                return false;
            }
            k -= 1;
        }
        if k == 0 || toks[k - 1].text != "#" {
            return false;
        }
        if toks[k..close].iter().any(|t| t.text == "macro_export") {
            return true;
        }
        j = k - 1;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Lexing: blank out comments and literals, then split into tokens

#[derive(Debug)]
struct Tok {
    text: String,
    line: usize,
}

fn tok_is(toks: &[Tok], i: usize, text: &str) -> bool {
    toks.get(i).is_some_and(|t| t.text == text)
}

fn ident_at(toks: &[Tok], i: usize) -> Option<String> {
    toks.get(i).filter(|t| is_ident(&t.text)).map(|t| t.text.clone())
}

fn is_ident(text: &str) -> bool {
    text.chars().next().is_some_and(is_ident_start)
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The source with comments, string and char literals replaced by spaces (newlines kept, so
/// line numbers still hold).
fn strip_comments_and_strings(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < chars.len() {
        match literal_or_comment_end(&chars, i) {
            Some(end) => {
                out.extend(chars[i..end].iter().map(|&c| if c == '\n' { '\n' } else { ' ' }));
                i = end;
            }
            None => {
                out.push(chars[i]);
                i += 1;
            }
        }
    }
    out
}

/// Where the comment or literal starting at `c[i]` ends (exclusive), if one starts there.
fn literal_or_comment_end(c: &[char], i: usize) -> Option<usize> {
    let starts_word = i == 0 || !is_ident_char(c[i - 1]);
    match (c[i], c.get(i + 1).copied()) {
        ('/', Some('/')) => Some((i..c.len()).find(|&k| c[k] == '\n').unwrap_or(c.len())),
        ('/', Some('*')) => Some(block_comment_end(c, i)),
        ('"', _) => Some(string_end(c, i + 1)),
        ('\'', _) => char_literal_end(c, i),
        ('r', _) if starts_word => raw_string_end(c, i + 1),
        ('b' | 'c', Some('r')) if starts_word => raw_string_end(c, i + 2),
        _ => None,
    }
}

fn block_comment_end(c: &[char], start: usize) -> usize {
    let mut depth = 0;
    let mut k = start;
    while k + 1 < c.len() {
        match (c[k], c[k + 1]) {
            ('/', '*') => {
                depth += 1;
                k += 2;
            }
            ('*', '/') => {
                depth -= 1;
                k += 2;
                if depth == 0 {
                    return k;
                }
            }
            _ => k += 1,
        }
    }
    c.len()
}

/// The end of a `"..."` string whose contents start at `k`.
fn string_end(c: &[char], mut k: usize) -> usize {
    while k < c.len() {
        match c[k] {
            '\\' => k += 2,
            '"' => return k + 1,
            _ => k += 1,
        }
    }
    c.len()
}

/// The end of `r#"..."#` when `c[k..]` is the `#..#"` part of one.
fn raw_string_end(c: &[char], k: usize) -> Option<usize> {
    let hashes = c[k.min(c.len())..].iter().take_while(|&&ch| ch == '#').count();
    if c.get(k + hashes) != Some(&'"') {
        return None;
    }
    let mut j = k + hashes + 1;
    while j < c.len() {
        if c[j] == '"' && c[j + 1..].iter().take(hashes).filter(|&&ch| ch == '#').count() == hashes {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(c.len())
}

/// The end of a char literal at `c[i]` (`'x'`, `'\n'`, `'\u{..}'`); `None` for a lifetime.
fn char_literal_end(c: &[char], i: usize) -> Option<usize> {
    match (c.get(i + 1), c.get(i + 2)) {
        (Some('\\'), _) => {
            let mut k = i + 3;
            while k < c.len() && c[k] != '\'' && c[k] != '\n' {
                k += 1;
            }
            (k < c.len() && c[k] == '\'').then_some(k + 1)
        }
        (Some(&ch), Some('\'')) if ch != '\'' && ch != '\n' => Some(i + 3),
        _ => None,
    }
}

fn tokenize(code: &str) -> Vec<Tok> {
    let chars: Vec<char> = code.chars().collect();
    let mut toks = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let mut start = i;
        if is_ident_start(c) {
            i += 1;
            if c == 'r' && chars.get(i) == Some(&'#') && chars.get(i + 1).is_some_and(|&n| is_ident_start(n)) {
                i += 1;
                start = i; // raw identifier `r#name`
            }
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
        } else if c.is_ascii_digit() {
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            i += 1;
        }
        toks.push(Tok { text: chars[start..i].iter().collect(), line });
    }
    toks
}

// ---------------------------------------------------------------------------------------------
// Tests of the checker, on small trees under the temp folder

/// A throwaway `src/` tree, removed on drop.
struct TempTree {
    root: PathBuf,
}

impl TempTree {
    fn new(files: &[(&str, &str)]) -> TempTree {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("layering-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for (rel, text) in files {
            let path = root.join("src").join(rel);
            fs::create_dir_all(path.parent().expect("a file has a folder")).expect("create folder");
            fs::write(&path, text).expect("write test file");
        }
        TempTree { root }
    }

    fn src(&self) -> PathBuf {
        self.root.join("src")
    }

    fn check(&self) -> Vec<String> {
        check(&self.src(), &self.src().join("lib.rs"))
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// A lib.rs with the rule block `layers` (one string per layer) declaring `mods`.
fn lib_rs(layers: &[&str], mods: &[&str]) -> String {
    let mut text = String::from("//! A test crate.\n//!\n//! ```text\n");
    for layer in layers {
        text += &format!("//! {layer}\n");
    }
    text += "//! ```\n\n";
    for name in mods {
        text += &format!("pub mod {name};\n");
    }
    text
}

fn three_layers(files: &[(&str, &str)]) -> TempTree {
    let lib = lib_rs(&["top", "mid", "low"], &["top", "mid", "low"]);
    let mut all = vec![("lib.rs", lib.as_str()), ("top.rs", ""), ("mid.rs", ""), ("low.rs", "")];
    all.retain(|(rel, _)| !files.iter().any(|(r, _)| r == rel));
    all.extend_from_slice(files);
    TempTree::new(&all)
}

#[test]
fn upward_import_is_caught_with_file_and_line() {
    let tree = three_layers(&[("low.rs", "pub fn f() {}\n\npub fn g() {\n    crate::top::h();\n}\n")]);
    assert_eq!(
        tree.check(),
        ["src/low.rs:4: `crate::top::h` points up: low (layer 3) may not import top (layer 1); \
          nothing may import the top layer (top)"]
    );
}

#[test]
fn sideways_import_is_caught() {
    let lib = lib_rs(&["top", "a b", "low"], &["top", "a", "b", "low"]);
    let files = [("lib.rs", lib.as_str()), ("top.rs", ""), ("a.rs", "use crate::b::X;\n"), ("b.rs", ""), ("low.rs", "")];
    let found = TempTree::new(&files).check();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("src/a.rs:1: `use crate::b::X` points sideways: a and b share layer 2"), "{found:?}");
}

#[test]
fn downward_import_passes() {
    let top = "use crate::mid::{M, N};\nuse crate::low;\n\nfn f() {\n    crate::low::g();\n}\n";
    let tree = three_layers(&[("top.rs", top), ("mid.rs", "use super::low::L;\n")]);
    assert_eq!(tree.check(), Vec::<String>::new());
}

#[test]
fn intra_module_cycle_is_caught() {
    let lib = lib_rs(&["m"], &["m"]);
    let files = [
        ("lib.rs", lib.as_str()),
        ("m/mod.rs", "mod a;\nmod b;\n"),
        ("m/a.rs", "use super::b::B;\npub struct A;\n"),
        ("m/b.rs", "pub struct B;\n\nfn f() {\n    let _ = super::a::A;\n}\n"),
    ];
    let found = TempTree::new(&files).check();
    assert_eq!(
        found,
        ["src/m/a.rs:1: `use super::b::B` is part of an import cycle inside module m: \
          m/a.rs -> m/b.rs -> m/a.rs (imports: m/a.rs:1 `use super::b::B`, m/b.rs:4 `super::a::A`)"]
    );
}

#[test]
fn reexport_in_mod_rs_is_no_cycle() {
    let lib = lib_rs(&["n", "m"], &["m", "n"]);
    let files = [
        ("lib.rs", lib.as_str()),
        (
            "m/mod.rs",
            "pub mod a;\npub mod b;\nmod c;\n\npub use a::A;\npub use self::b::{B};\n\
             pub use c::*;\n",
        ),
        ("m/a.rs", "use super::{B, C};\npub struct A;\n"),
        ("m/b.rs", "pub struct B;\n"),
        ("m/c.rs", "use crate::m::B;\npub struct C;\n"),
        ("n.rs", "use crate::m::A;\n"),
    ];
    assert_eq!(TempTree::new(&files).check(), Vec::<String>::new());
}

#[test]
fn mod_rs_may_assemble_children_that_use_it() {
    // A registry in mod.rs calling each child's builder, the child using the parent's types:
    // structure, not a cycle. Two children importing each other is one.
    let lib = lib_rs(&["m"], &["m"]);
    let files = [
        ("lib.rs", lib.as_str()),
        ("m/mod.rs", "mod a;\nmod kd;\n\npub struct Spec;\n\nconst ALL: [fn(); 1] = [kd::build];\n"),
        ("m/kd.rs", "use super::Spec;\nuse super::a::A;\n\npub fn build() {}\npub struct K;\n"),
        ("m/a.rs", "use super::kd::K;\npub struct A;\n"),
    ];
    let found = TempTree::new(&files).check();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("m/a.rs -> m/kd.rs -> m/a.rs"), "{found:?}");
    assert!(found.iter().all(|f| !f.contains("m/mod.rs ->")), "{found:?}");
}

#[test]
fn nested_multiline_use_group_is_parsed() {
    let low = "use crate::{\n    top::T,\n    mid::{\n        inner::X,\n        Y as Z,\n    },\n};\n";
    let found = three_layers(&[("low.rs", low)]).check();
    let heads: Vec<&str> = found.iter().map(|v| v.split(" points").next().unwrap_or("")).collect();
    assert_eq!(heads, ["src/low.rs:2: `use crate::top::T`", "src/low.rs:4: `use crate::mid::inner::X`", "src/low.rs:5: `use crate::mid::Y`"]);
}

#[test]
fn bad_input_macro_maps_to_error() {
    let error = "#[macro_export]\nmacro_rules! bad_input {\n    ($($arg:tt)*) => {\n        \
                 $crate::error::BadInput(format!($($arg)*))\n    };\n}\n\n\
                 pub struct BadInput(pub String);\n";
    let app = "use crate::bad_input;\n\nfn f() {\n    let _ = crate::bad_input!(\"x\");\n}\n";
    let lib = lib_rs(&["app", "error"], &["app", "error"]);
    let tree = TempTree::new(&[("lib.rs", lib.as_str()), ("error.rs", error), ("app.rs", app)]);
    assert_eq!(tree.check(), Vec::<String>::new());

    let reversed = tree.root.join("reversed_lib.rs");
    fs::write(&reversed, lib_rs(&["error", "app"], &["app", "error"])).expect("write rule");
    let found = check(&tree.src(), &reversed);
    assert_eq!(found.len(), 2, "{found:?}");
    let want = "src/app.rs:1: `use crate::bad_input` points up: app (layer 2) may not import \
                error (layer 1)";
    assert!(found[0].starts_with(want), "{found:?}");
    assert!(found[1].starts_with("src/app.rs:4: `crate::bad_input` points up"), "{found:?}");
}

#[test]
fn strings_and_comments_are_ignored() {
    let low = r####"// use crate::top::A;
/* crate::top::B /* nested */
   crate::top::C */
/// Calls `crate::top::f`.
pub const S: &str = "crate::top::x \" crate::top::y";
pub const R: &str = r#"use crate::top::z;"#;
pub const C: char = '"';
pub fn f<'a>(s: &'a str) -> &'a str { s }
pub fn g() { crate::top::h() }
"####;
    let found = three_layers(&[("low.rs", low)]).check();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("src/low.rs:9: `crate::top::h` points up"), "{found:?}");
}

#[test]
fn missing_layer_block_is_an_error() {
    let lib = "//! A crate without a rule.\n\npub mod a;\n";
    let found = TempTree::new(&[("lib.rs", lib), ("a.rs", "")]).check();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("src/lib.rs:1: no layer rule"), "{found:?}");
}

#[test]
fn unplaced_and_unknown_modules_are_errors() {
    let lib = lib_rs(&["a", "ghost"], &["a", "extra"]);
    let found = TempTree::new(&[("lib.rs", lib.as_str()), ("a.rs", ""), ("extra.rs", "")]).check();
    assert_eq!(
        found,
        [
            "src/lib.rs:5: layer 2 names `ghost`, which is no module: lib.rs has no `mod ghost;`",
            "src/lib.rs:9: `mod extra;` is in no layer: add `extra` to a line of the ```text \
             rule block"
        ]
    );
}

#[test]
fn inline_test_modules_and_path_files_resolve_to_their_file() {
    let lib = lib_rs(&["m"], &["m"]);
    let a = "pub fn f() {}\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n\n    fn t() {\n        \
             super::f();\n    }\n}\n\n#[cfg(test)]\n#[path = \"a_tests.rs\"]\nmod more;\n";
    let files = [("lib.rs", lib.as_str()), ("m/mod.rs", "mod a;\n\nfn g() {\n    a::f();\n}\n"), ("m/a.rs", a), ("m/a_tests.rs", "use super::f;\n")];
    let tree = TempTree::new(&files);
    assert_eq!(tree.check(), Vec::<String>::new());
    let index = CrateIndex::load(&tree.src()).expect("load");
    let module = |rel: &str| index.files.iter().find(|f| f.rel == rel).map(|f| f.module.join("::"));
    assert_eq!(module("m/a_tests.rs").as_deref(), Some("m::a::more"));
    let imports: Vec<(usize, &str)> =
        index.files.iter().filter(|f| f.rel == "m/a.rs").flat_map(|f| &f.facts.imports).map(|i| (i.line, i.text.as_str())).collect();
    assert_eq!(imports, [(5, "use super::*"), (8, "super::f")]);
    let a_file = index.files.iter().position(|f| f.rel == "m/a.rs");
    let mut path = vec!["m".to_string(), "a".to_string()];
    assert_eq!(index.file_of(&path), a_file);
    path.push("f".to_string());
    assert_eq!(index.file_of(&path), a_file);
}
