//! Completion of paths into the standard library (`std::mem::repl`) while
//! rust-analyzer is not ready, from the toolchain's own sources (rust-src).
//!
//! rust-analyzer needs seconds and hundreds of MiB to analyse std, and the
//! kernel lets it go when the learner is idle; a path, though, names a module
//! whose public items can be read from one source file. The module's file is
//! found the way rustc would (`a/b.rs` or `a/b/mod.rs`), in std first and then
//! in core and alloc, which std re-exports. Only stable, documented items are
//! offered: `#[unstable]` and `#[doc(hidden)]` ones are skipped. Parsed
//! modules are kept for the session.

use super::Candidate;
use ra_ap_syntax::ast::{self, HasAttrs, HasModuleItem, HasName, HasVisibility};
use ra_ap_syntax::{AstNode, Edition, SourceFile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The crates whose paths are completed, and where std's re-exports come from.
const CRATES: [&str; 3] = ["std", "core", "alloc"];

/// `library/` of the toolchain's rust-src, when installed.
fn library() -> Option<&'static Path> {
    static LIBRARY: OnceLock<Option<PathBuf>> = OnceLock::new();
    LIBRARY
        .get_or_init(|| {
            let out = std::process::Command::new("rustc").args(["--print", "sysroot"]).output().ok()?;
            let sysroot = String::from_utf8(out.stdout).ok()?;
            let dir = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library");
            dir.join("core/src/lib.rs").is_file().then_some(dir)
        })
        .as_deref()
}

/// Looks the sysroot up ahead of the first completion (it runs `rustc`).
pub fn prepare() {
    std::thread::Builder::new().name("std-paths".into()).spawn(|| library().is_some()).ok();
}

/// The public items of the module at `path` (`["std", "mem"]`) whose names
/// start with `prefix`, sorted by name; empty when the module is not found or
/// one of its segments is not a public, stable name of its parent (`std::sys`).
pub fn complete(path: &[&str], prefix: &str) -> Vec<Candidate> {
    let Some(library) = library() else { return Vec::new() };
    if !CRATES.contains(&path.first().copied().unwrap_or_default()) {
        return Vec::new();
    }
    for depth in 2..=path.len() {
        let parent = listing(library, &path[..depth - 1]);
        if !parent.iter().any(|c| c.text == path[depth - 1] && c.kind != "function") {
            return Vec::new();
        }
    }
    listing(library, path).into_iter().filter(|c| c.text.starts_with(prefix) && c.text != prefix).collect()
}

/// The module's items, parsed once per session.
fn listing(library: &Path, path: &[&str]) -> Vec<Candidate> {
    static MODULES: OnceLock<Mutex<HashMap<Vec<String>, Vec<Candidate>>>> = OnceLock::new();
    let modules = MODULES.get_or_init(Default::default);
    let key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
    if let Some(items) = modules.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return items.clone();
    }
    let items = module_items(library, path);
    modules.lock().unwrap_or_else(|e| e.into_inner()).insert(key, items.clone());
    items
}

fn module_items(library: &Path, path: &[&str]) -> Vec<Candidate> {
    let Some((&krate, rest)) = path.split_first() else { return Vec::new() };
    let Some(file) = module_file(library, krate, rest) else { return Vec::new() };
    let Ok(text) = std::fs::read_to_string(&file) else { return Vec::new() };
    let parsed = SourceFile::parse(&text, Edition::Edition2021).tree();
    let mut items: HashMap<String, Candidate> = HashMap::new();
    for item in parsed.items() {
        let macro_body = match &item {
            ast::Item::MacroCall(call) => call.token_tree(),
            ast::Item::MacroRules(rules) => rules.token_tree(),
            _ => None,
        };
        if let Some(body) = macro_body {
            for name in macro_defined_types(&body) {
                items.entry(name.clone()).or_insert(Candidate { text: name, kind: "type".to_owned(), signature: None });
            }
            continue;
        }
        if !is_public(&item) || hidden(&item) {
            continue;
        }
        for (name, kind, signature) in describe(&item) {
            items.entry(name.clone()).or_insert(Candidate { text: name, kind: kind.to_owned(), signature });
        }
    }
    let mut items: Vec<Candidate> = items.into_values().collect();
    items.sort_by(|a, b| a.text.cmp(&b.text));
    items
}

/// The file of module `rest` in `krate` (std's modules may live in core or alloc).
fn module_file(library: &Path, krate: &str, rest: &[&str]) -> Option<PathBuf> {
    let candidates: &[&str] = match krate {
        "std" => &CRATES,
        "core" => &["core"],
        "alloc" => &["alloc"],
        _ => return None,
    };
    candidates.iter().find_map(|c| {
        let src = library.join(c).join("src");
        if rest.is_empty() {
            return Some(src.join("lib.rs"));
        }
        let dir = rest.iter().fold(src, |d, seg| d.join(seg));
        let file = dir.with_extension("rs");
        [file, dir.join("mod.rs")].into_iter().find(|f| f.is_file())
    })
}

fn is_public(item: &ast::Item) -> bool {
    let vis = match item {
        ast::Item::Fn(x) => x.visibility(),
        ast::Item::Struct(x) => x.visibility(),
        ast::Item::Enum(x) => x.visibility(),
        ast::Item::Union(x) => x.visibility(),
        ast::Item::Trait(x) => x.visibility(),
        ast::Item::TypeAlias(x) => x.visibility(),
        ast::Item::Const(x) => x.visibility(),
        ast::Item::Static(x) => x.visibility(),
        ast::Item::Module(x) => x.visibility(),
        ast::Item::Use(x) => x.visibility(),
        _ => None,
    };
    // `pub`, not `pub(crate)` or `pub(super)`.
    vis.is_some_and(|v| v.syntax().text() == "pub")
}

/// Unstable or hidden from the docs: not for a learner's completion list.
fn hidden(item: &ast::Item) -> bool {
    item.attrs().any(|attr| {
        let text = attr.syntax().text().to_string();
        let text: String = text.split_whitespace().collect();
        text.starts_with("#[unstable") || text.starts_with("#[doc(hidden")
    })
}

/// Name, kind and signature of an item; a `use` may name several.
fn describe(item: &ast::Item) -> Vec<(String, &'static str, Option<String>)> {
    let one = |name: Option<ast::Name>, kind: &'static str, signature: Option<String>| {
        name.map(|n| vec![(n.text().to_string(), kind, signature)]).unwrap_or_default()
    };
    match item {
        ast::Item::Fn(f) => one(f.name(), "function", Some(fn_signature(f))),
        ast::Item::Struct(x) => one(x.name(), "struct", None),
        ast::Item::Enum(x) => one(x.name(), "enum", None),
        ast::Item::Union(x) => one(x.name(), "union", None),
        ast::Item::Trait(x) => one(x.name(), "trait", None),
        ast::Item::TypeAlias(x) => one(x.name(), "type", None),
        ast::Item::Const(x) => one(x.name(), "constant", x.ty().map(|t| t.syntax().text().to_string())),
        ast::Item::Static(x) => one(x.name(), "static", x.ty().map(|t| t.syntax().text().to_string())),
        ast::Item::Module(x) => one(x.name(), "module", None),
        ast::Item::Use(u) => u.use_tree().map(|t| use_names(&t)).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// `pub fn replace<T>(dest: &mut T, src: T) -> T`: the item up to its body,
/// without attributes and doc comments, on one line.
fn fn_signature(f: &ast::Fn) -> String {
    let node = f.syntax();
    let start = f.visibility().map(|v| v.syntax().text_range().start()).or_else(|| f.fn_token().map(|t| t.text_range().start()));
    let end = f.body().map(|b| b.syntax().text_range().start()).unwrap_or(node.text_range().end());
    let whole = node.text_range();
    let (Some(start), true) = (start, end >= whole.start()) else { return String::new() };
    let text = node.text().to_string();
    let from = usize::from(start - whole.start());
    let to = usize::from(end - whole.start());
    text.get(from..to).unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Types that a macro call or definition declares, as far as its text says: the
/// standard library declares families of types with macros (`atomic_int! { …,
/// rustc_diagnostic_item = "AtomicU64", … }`); a stable one names its type so.
fn macro_defined_types(body: &ast::TokenTree) -> Vec<String> {
    let text = body.syntax().text().to_string();
    if text.contains("unstable(") {
        return Vec::new();
    }
    text.split("rustc_diagnostic_item")
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.trim_start().strip_prefix('=')?.trim_start().strip_prefix('"')?;
            let name = &rest[..rest.find('"')?];
            (name.starts_with(char::is_uppercase) && name.chars().all(|c| c.is_alphanumeric() || c == '_'))
                .then(|| name.to_owned())
        })
        .collect()
}

/// The names a `use` tree brings in: the last segment or its `as` name,
/// every name of a `{…}` group; a glob brings in nothing nameable here.
fn use_names(tree: &ast::UseTree) -> Vec<(String, &'static str, Option<String>)> {
    if let Some(list) = tree.use_tree_list() {
        return list.use_trees().flat_map(|t| use_names(&t)).collect();
    }
    if tree.star_token().is_some() {
        return Vec::new();
    }
    let name = match tree.rename() {
        Some(rename) => rename.name().map(|n| n.text().to_string()),
        None => tree.path().and_then(|p| p.segment()).and_then(|s| s.name_ref()).map(|n| n.text().to_string()),
    };
    match name {
        Some(n) if n != "self" && n != "_" => {
            // A re-export names a type (upper case), or a module or a function: which one
            // would take following the path, so it is only called a re-export.
            let kind = if n.starts_with(char::is_uppercase) { "type" } else { "re-export" };
            vec![(n, kind, None)]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(path: &[&str], prefix: &str) -> Vec<String> {
        complete(path, prefix).into_iter().map(|c| c.text).collect()
    }

    #[test]
    fn std_paths_come_from_the_toolchain_sources() {
        if library().is_none() {
            eprintln!("rust-src is not installed: nothing to check");
            return;
        }
        let replace = complete(&["std", "mem"], "repl");
        assert_eq!(replace.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(), ["replace"]);
        assert_eq!(replace[0].kind, "function");
        let signature = replace[0].signature.as_deref().unwrap_or_default();
        assert!(signature.starts_with("pub") && signature.contains("fn replace<T>(dest: &mut T, src: T) -> T"), "{signature}");
        // std's own modules, and re-exports by name.
        assert!(names(&["std", "sync"], "").contains(&"Mutex".to_string()));
        assert!(names(&["std", "sync"], "Ar").contains(&"Arc".to_string()));
        assert!(names(&["std", "sync", "atomic"], "Atomic").contains(&"AtomicU64".to_string()));
        assert!(names(&["std", "sync", "atomic"], "AtomicU").contains(&"AtomicUsize".to_string()));
        // Private modules are not completed, even though their files exist.
        assert!(names(&["std", "sys"], "").is_empty());
        assert!(names(&["std", "panicking"], "").is_empty());
        assert!(names(&["std", "thread"], "sp").contains(&"spawn".to_string()));
        assert!(names(&["std"], "thr").contains(&"thread".to_string()));
        // Nothing unstable, nothing private, nothing outside the std crates.
        assert!(names(&["std", "thread"], "").iter().all(|n| !n.starts_with("__")));
        assert!(names(&["serde", "de"], "").is_empty());
        assert!(names(&["std", "no_such_module"], "").is_empty());
    }
}
