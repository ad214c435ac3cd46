//! Keeping a learner's variables when the evaluation process is lost.
//!
//! Functions, types, `use`s and dependencies live in evcxr's state and
//! survive a lost evaluation process; variables live only in that process.
//! So the engine records every cell that succeeded ([`Record`]), and when the
//! process is lost — a crash, or an interrupt that had to stop it — it
//! rebuilds the variables the process held by running again, quietly, the
//! cells they came from ([`Record::plan`], [`Plan::code`]).
//!
//! Only what the lost variables need is run again: for each variable, the
//! last cell that bound it with `let`, the cells whose names that cell used
//! (recursively), and the cells after it that may have changed it (they name
//! it, and it is `mut` or of a type with interior mutability). A cell that
//! only printed or timed something is not run again. A cell marked
//! `// no-replay` on its first line, or one that asked for input, is never
//! run again: the variables that need it are reported as not restored.
//!
//! The chosen cells run as one cell: their statements in order inside a
//! block that hands back the lost variables, bound with their known types —
//! one compile, and no wait for rust-analyzer.

use ra_ap_syntax::ast::HasName;
use ra_ap_syntax::{ast, AstNode, Edition, SourceFile, SyntaxKind, SyntaxNode};
use std::collections::{BTreeMap, BTreeSet};

/// The first-line comment that keeps a cell from being run again.
pub const NO_REPLAY_MARK: &str = "// no-replay";

/// A variable the evaluation process held.
#[derive(Debug, Clone, PartialEq)]
pub struct Var {
    pub name: String,
    pub ty: String,
    pub mutable: bool,
}

/// One cell that succeeded.
#[derive(Debug, Clone)]
pub struct CellRecord {
    /// Its execution count, to name it in reports.
    pub count: u64,
    /// Its statements, as code that can run again inside a block.
    statements: Vec<String>,
    /// Names bound by its top-level `let`s.
    defines: BTreeSet<String>,
    /// Every identifier it uses (also inside macros and format strings).
    names: BTreeSet<String>,
    /// Names it uses where a `mut` value can change: a method's receiver
    /// (unless the method only reads), `&mut`, the left of an assignment,
    /// and anything inside a macro whose arguments are not expressions.
    changes: BTreeSet<String>,
    /// Names it uses outside formatting (`println!`, `format!`, ...
    /// arguments that only print): a value with interior mutability can
    /// change wherever it is used.
    touches: BTreeSet<String>,
    /// Why it must not run again, if it must not.
    keep_out: Option<String>,
    /// How long it ran the first time, in seconds.
    run_seconds: f64,
}

impl CellRecord {
    /// Reads a cell that succeeded.
    pub fn new(count: u64, code: &str) -> CellRecord {
        let rust = rust_part(code);
        let parsed = parse_statements(&rust);
        let keep_out = if first_code_line(code).is_some_and(|l| l.eq_ignore_ascii_case(NO_REPLAY_MARK)) {
            Some(format!("cell [{count}] is marked `{NO_REPLAY_MARK}`"))
        } else if parsed.uses.names.contains("evcxr_input") {
            Some(format!("cell [{count}] asked for input"))
        } else {
            None
        };
        CellRecord {
            count,
            statements: parsed.statements,
            defines: parsed.defines,
            names: parsed.uses.names,
            changes: parsed.uses.changes,
            touches: parsed.uses.touches,
            keep_out,
            run_seconds: 0.0,
        }
    }

    /// The same, with how long the cell ran.
    pub fn ran_for(mut self, seconds: f64) -> CellRecord {
        self.run_seconds = seconds;
        self
    }

    /// The names the cell uses.
    pub fn names(&self) -> &BTreeSet<String> {
        &self.names
    }

    pub fn defines(&self) -> &BTreeSet<String> {
        &self.defines
    }
}

/// The cells that succeeded since the evaluation process's variables last
/// started from nothing (kernel start, `:clear`, `:restart`).
#[derive(Debug, Default)]
pub struct Record {
    cells: Vec<CellRecord>,
}

/// What to run again after a loss.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// The cells to run again, in order (their execution counts).
    pub counts: Vec<u64>,
    /// Variables that running them restores.
    pub restored: Vec<Var>,
    /// Variables that cannot be restored, with the reason.
    pub lost: Vec<(String, String)>,
    /// Variables left for later (restored when a cell first uses them): they
    /// need a cell that ran longer than the plan's limit.
    pub deferred: Vec<Var>,
    /// The slow cells the deferred variables need (their execution counts).
    pub slow_counts: Vec<u64>,
    statements: Vec<String>,
}

impl Record {
    pub fn push(&mut self, cell: CellRecord) {
        // Cells that bind nothing and name nothing could never be needed.
        if !cell.statements.is_empty() {
            self.cells.push(cell);
        }
    }

    pub fn clear(&mut self) {
        self.cells.clear();
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The cells that rebuild `live`, the variables the lost process held
    /// when the first `end` cells were recorded. A variable that needs a cell
    /// which ran longer than `slow` seconds is deferred instead.
    pub fn plan(&self, live: &[Var], end: usize, slow: f64) -> Plan {
        let end = end.min(self.cells.len());
        let kinds: BTreeMap<&str, &Var> = live.iter().map(|v| (v.name.as_str(), v)).collect();
        let mut all_needed = BTreeSet::new();
        let mut slow_cells = BTreeSet::new();
        let mut plan = Plan::default();
        for var in live {
            match self.closure(&var.name, end, &kinds) {
                Ok(cells) => {
                    let slow_ones: Vec<usize> =
                        cells.iter().copied().filter(|&i| self.cells[i].run_seconds > slow).collect();
                    if slow_ones.is_empty() {
                        all_needed.extend(cells);
                        plan.restored.push(var.clone());
                    } else {
                        slow_cells.extend(slow_ones);
                        plan.deferred.push(var.clone());
                    }
                }
                Err(why) => plan.lost.push((var.name.clone(), why)),
            }
        }
        plan.slow_counts = slow_cells.iter().map(|&i| self.cells[i].count).collect();
        for &i in &all_needed {
            plan.counts.push(self.cells[i].count);
            plan.statements.extend(self.cells[i].statements.iter().cloned());
        }
        plan
    }

    /// The cells needed for the value `name` had just before cell `before`.
    fn closure(&self, name: &str, before: usize, live: &BTreeMap<&str, &Var>) -> Result<BTreeSet<usize>, String> {
        let top = before;
        let mut needed = BTreeSet::new();
        let mut work = vec![(name.to_owned(), before)];
        let mut seen = BTreeSet::new();
        while let Some((name, before)) = work.pop() {
            if !seen.insert((name.clone(), before)) {
                continue;
            }
            let Some(def) = (0..before).rev().find(|&i| self.cells[i].defines.contains(&name)) else {
                // Not a variable of a recorded cell: a function, type or
                // method name, or a variable bound where no cell records it.
                if live.contains_key(name.as_str()) && before == top {
                    return Err("no successful cell that binds it was recorded".to_owned());
                }
                continue;
            };
            // Later cells that may have changed it. (Of a variable that is not
            // live, the type is unknown: any use may have changed it.)
            let var = live.get(name.as_str());
            let interior = var.is_none_or(|v| !plain_type(&v.ty));
            let mutable = var.is_none_or(|v| v.mutable);
            let changed_by = |j: usize| {
                let cell = &self.cells[j];
                (interior && cell.touches.contains(&name)) || (mutable && cell.changes.contains(&name))
            };
            let mut cells = vec![def];
            cells.extend((def + 1..before).filter(|&j| changed_by(j)));
            for i in cells {
                if needed.insert(i) {
                    if let Some(why) = &self.cells[i].keep_out {
                        return Err(why.clone());
                    }
                    for used in &self.cells[i].names {
                        work.push((used.clone(), i));
                    }
                }
            }
        }
        Ok(needed)
    }
}

impl Plan {
    /// Nothing to run.
    pub fn is_empty(&self) -> bool {
        self.restored.is_empty()
    }

    /// One cell that runs the chosen cells' statements and binds the
    /// restored variables with their known types.
    pub fn code(&self) -> String {
        let pattern: Vec<String> = self
            .restored
            .iter()
            .map(|v| if v.mutable { format!("mut {}", v.name) } else { v.name.clone() })
            .collect();
        let types: Vec<&str> = self.restored.iter().map(|v| v.ty.as_str()).collect();
        let names: Vec<&str> = self.restored.iter().map(|v| v.name.as_str()).collect();
        let mut code = format!(
            "#[allow(unused_mut, unused_variables)]\nlet ({},): ({},) = {{\n",
            pattern.join(", "),
            types.join(", ")
        );
        for s in &self.statements {
            code.push_str(s);
            code.push('\n');
        }
        code.push_str(&format!("({},)\n}};\n", names.join(", ")));
        code
    }
}

/// The Rust part of a cell: without the leading lines of `:` commands,
/// `!` shell commands, comments and blank lines (evcxr's rule).
fn rust_part(code: &str) -> String {
    let mut lines = code.lines().peekable();
    let mut skipped = 0;
    while let Some(line) = lines.peek() {
        let t = line.trim_start();
        if line.starts_with('!') || t.starts_with(':') || line.starts_with("//") || t.is_empty() {
            skipped += 1;
            lines.next();
        } else {
            break;
        }
    }
    code.lines().skip(skipped).collect::<Vec<_>>().join("\n")
}

/// The first line that is not blank.
fn first_code_line(code: &str) -> Option<&str> {
    code.lines().map(str::trim).find(|l| !l.is_empty())
}

struct Parsed {
    statements: Vec<String>,
    defines: BTreeSet<String>,
    uses: Uses,
}

/// How a piece of code uses names.
#[derive(Default)]
struct Uses {
    names: BTreeSet<String>,
    changes: BTreeSet<String>,
    touches: BTreeSet<String>,
}

impl Uses {
    fn all(&mut self, name: &str) {
        self.names.insert(name.to_owned());
        self.changes.insert(name.to_owned());
        self.touches.insert(name.to_owned());
    }
}

/// Macros whose arguments are only formatted (read).
const FORMATTING: &[&str] = &[
    "println", "print", "eprintln", "eprint", "format", "format_args", "write", "writeln", "panic", "assert",
    "assert_eq", "assert_ne", "debug_assert", "debug_assert_eq", "debug_assert_ne", "todo", "unimplemented",
    "unreachable",
];

/// Methods that only read their receiver.
const READS: &[&str] = &[
    "len", "is_empty", "iter", "par_iter", "get", "contains", "contains_key", "first", "last", "keys", "values",
    "clone", "to_string", "to_vec", "to_owned", "as_slice", "as_str", "as_ref", "capacity", "starts_with",
    "ends_with", "lines", "chars", "bytes", "windows", "chunks", "par_chunks", "split", "trim", "join", "eq",
    "cmp", "max", "min", "abs", "pow", "sqrt", "is_some", "is_none", "is_ok", "is_err", "elapsed",
    "as_secs_f64", "as_millis", "as_micros", "as_nanos", "binary_search",
];

fn parse_statements(rust: &str) -> Parsed {
    let mut parsed = Parsed { statements: Vec::new(), defines: BTreeSet::new(), uses: Uses::default() };
    let Some(list) = statement_list(rust) else { return parsed };
    for stmt in list.statements() {
        match &stmt {
            // Items are kept by the engine itself.
            ast::Stmt::Item(_) => continue,
            ast::Stmt::LetStmt(let_stmt) => {
                if let Some(pat) = let_stmt.pat() {
                    for ident in pat.syntax().descendants().filter_map(ast::IdentPat::cast) {
                        if let Some(name) = ident.name() {
                            parsed.defines.insert(name.text().to_string());
                        }
                    }
                }
                parsed.statements.push(stmt.syntax().text().to_string());
            }
            ast::Stmt::ExprStmt(e) => {
                let text = stmt.syntax().text().to_string();
                // A block-like expression needs no semicolon; anything else gets one.
                if e.semicolon_token().is_none() && !text.trim_end().ends_with('}') {
                    parsed.statements.push(format!("{text};"));
                } else {
                    parsed.statements.push(text);
                }
            }
        }
    }
    if let Some(tail) = list.tail_expr() {
        parsed.statements.push(format!("let _ = ({});", tail.syntax().text()));
    }
    uses_in(list.syntax(), &mut parsed.uses, 0);
    parsed
}

/// The statements of `rust` as a function body.
fn statement_list(rust: &str) -> Option<ast::StmtList> {
    let wrapped = format!("fn __threadbook_cell() {{\n{rust}\n}}");
    let file = SourceFile::parse(&wrapped, Edition::Edition2021).tree();
    file.syntax().descendants().find_map(ast::Fn::cast)?.body()?.stmt_list()
}

/// Collects how `node` uses names, looking into macro arguments.
fn uses_in(node: &SyntaxNode, uses: &mut Uses, depth: usize) {
    for n in node.descendants() {
        if let Some(name_ref) = ast::NameRef::cast(n.clone()) {
            let name = name_ref.text().to_string();
            // Only a path expression of one segment (`name`, not `a::name`,
            // a method or a field) can be a variable.
            let path_expr = n
                .parent()
                .filter(|p| p.kind() == SyntaxKind::PATH_SEGMENT)
                .and_then(|seg| seg.parent())
                .and_then(ast::Path::cast)
                .filter(|path| path.qualifier().is_none())
                .and_then(|path| path.syntax().parent())
                .and_then(ast::PathExpr::cast);
            let Some(path_expr) = path_expr else {
                uses.names.insert(name);
                continue;
            };
            uses.names.insert(name.clone());
            uses.touches.insert(name.clone());
            if may_change(path_expr.syntax()) {
                uses.changes.insert(name);
            }
        } else if let Some(call) = ast::MacroCall::cast(n.clone()) {
            macro_uses(&call, uses, depth);
        }
    }
}

fn macro_uses(call: &ast::MacroCall, uses: &mut Uses, depth: usize) {
    let Some(tt) = call.token_tree() else { return };
    let macro_name = call.path().and_then(|p| p.segment()).map(|s| s.syntax().text().to_string()).unwrap_or_default();
    let formatting = FORMATTING.contains(&macro_name.as_str());
    // Arguments that parse as expressions are looked at like code; others
    // (a macro's own syntax) are taken to do anything with every name.
    let text = tt.syntax().text().to_string();
    let inner = text.get(1..text.len().saturating_sub(1)).unwrap_or("");
    let parsed = (depth < 4).then(|| SourceFile::parse(&format!("fn __m() {{ __threadbook_args({inner}); }}"), Edition::Edition2021));
    match parsed {
        Some(p) if p.errors().is_empty() => {
            let mut inside = Uses::default();
            uses_in(&p.tree().syntax().clone(), &mut inside, depth + 1);
            inside.names.remove("__threadbook_args");
            inside.touches.remove("__threadbook_args");
            uses.names.append(&mut inside.names);
            uses.changes.append(&mut inside.changes);
            if !formatting {
                uses.touches.append(&mut inside.touches);
            }
        }
        _ => {
            for token in tt.syntax().descendants_with_tokens().filter_map(|e| e.into_token()) {
                if token.kind() == SyntaxKind::IDENT {
                    uses.all(token.text());
                }
            }
        }
    }
    // Names captured by format strings ("{total}") are read.
    for token in tt.syntax().descendants_with_tokens().filter_map(|e| e.into_token()) {
        if token.kind() == SyntaxKind::STRING {
            uses.names.extend(format_args(token.text()));
        }
    }
}

/// True when the value at `expr` (a variable) may be changed where it
/// stands: it is, through fields and indexing, the receiver of a method that
/// is not known to only read, borrowed `&mut`, or assigned to.
fn may_change(expr: &SyntaxNode) -> bool {
    let mut node = expr.clone();
    while let Some(parent) = node.parent() {
        match parent.kind() {
            SyntaxKind::FIELD_EXPR | SyntaxKind::INDEX_EXPR | SyntaxKind::PAREN_EXPR
                if parent.first_child().as_ref() == Some(&node) =>
            {
                node = parent;
            }
            SyntaxKind::METHOD_CALL_EXPR => {
                let Some(call) = ast::MethodCallExpr::cast(parent) else { return true };
                if call.receiver().map(|r| r.syntax().clone()) != Some(node) {
                    return false;
                }
                let method = call.name_ref().map(|n| n.text().to_string()).unwrap_or_default();
                return !READS.contains(&method.as_str());
            }
            SyntaxKind::REF_EXPR => {
                return ast::RefExpr::cast(parent).is_some_and(|r| r.mut_token().is_some());
            }
            SyntaxKind::BIN_EXPR => {
                let Some(bin) = ast::BinExpr::cast(parent) else { return true };
                let assigns = matches!(bin.op_kind(), Some(ast::BinaryOp::Assignment { .. }));
                return assigns && bin.lhs().map(|l| l.syntax().clone()) == Some(node);
            }
            _ => return false,
        }
    }
    false
}

/// Identifiers named inside `{…}` of a format string.
fn format_args(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split('{').skip(1).filter_map(|part| {
        let name: String = part.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        (!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit())).then_some(name)
    })
}

/// True for types whose values cannot change behind a shared name: numbers,
/// strings, the std collections, `Option`, `Box`, `Arc`/`Rc` of such types.
/// Anything else (cells, locks, atomics, channels, user types) may be changed
/// by a cell that only mentions it.
fn plain_type(ty: &str) -> bool {
    const PLAIN: &[&str] = &[
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize", "f32", "f64",
        "bool", "char", "str", "String", "Vec", "VecDeque", "HashMap", "HashSet", "BTreeMap", "BTreeSet",
        "BinaryHeap", "Option", "Result", "Box", "Arc", "Rc", "Duration", "Instant", "SystemTime", "PathBuf",
        "std", "core", "alloc", "collections", "vec", "string", "boxed", "sync", "rc", "time", "path", "hash",
        "map", "set", "hash_map", "hash_set", "btree_map", "btree_set", "vec_deque", "binary_heap", "option",
        "result", "RandomState", "static",
    ];
    ty.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty() && !w.starts_with(|c: char| c.is_ascii_digit()))
        .all(|w| PLAIN.contains(&w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str, ty: &str, mutable: bool) -> Var {
        Var { name: name.into(), ty: ty.into(), mutable }
    }

    impl Record {
        fn plan_all(&self, live: &[Var]) -> Plan {
            self.plan(live, usize::MAX, f64::INFINITY)
        }
    }

    #[test]
    fn variables_that_need_a_slow_cell_are_deferred() {
        let mut r = Record::default();
        r.push(CellRecord::new(1, "let data: Vec<u64> = (0..10).collect();").ran_for(0.01));
        r.push(CellRecord::new(2, "let timed: u64 = data.iter().sum();").ran_for(3.0));
        r.push(CellRecord::new(3, "let quick: usize = data.len();").ran_for(0.01));
        let live = [var("data", "Vec<u64>", false), var("timed", "u64", false), var("quick", "usize", false)];
        let plan = r.plan(&live, 3, 0.5);
        assert_eq!(plan.counts, [1, 3]);
        assert_eq!(plan.deferred, [var("timed", "u64", false)]);
        assert_eq!(plan.slow_counts, [2]);
        // Later, only the deferred one, with no limit, as the record stood at the loss.
        r.push(CellRecord::new(4, "let timed: u64 = 0;").ran_for(0.01));
        let later = r.plan(&plan.deferred, 3, f64::INFINITY);
        assert_eq!(later.counts, [1, 2]);
    }

    fn record(cells: &[&str]) -> Record {
        let mut r = Record::default();
        for (i, c) in cells.iter().enumerate() {
            r.push(CellRecord::new(i as u64 + 1, c));
        }
        r
    }

    #[test]
    fn a_cell_is_read_into_statements_names_and_bindings() {
        let c = CellRecord::new(
            3,
            ":dep rayon = \"1\"\n// setup\nuse std::collections::HashMap;\nfn helper() -> u32 { 1 }\nlet (a, mut b) = (helper(), 2);\nb += a;\nprintln!(\"{b} {a:?}\");\nb * 2",
        );
        assert_eq!(c.defines.iter().cloned().collect::<Vec<_>>(), ["a", "b"]);
        assert!(c.names.contains("helper") && c.names.contains("b"));
        assert_eq!(
            c.statements,
            [
                "let (a, mut b) = (helper(), 2);",
                "b += a;",
                "println!(\"{b} {a:?}\");",
                "let _ = (b * 2);",
            ]
        );
        assert!(c.keep_out.is_none());
    }

    #[test]
    fn what_a_cell_may_change_is_read_from_where_it_uses_a_name() {
        let c = CellRecord::new(
            1,
            "v.push(1);\nlet n = w.len();\nlet r = &mut x;\ny += 1;\nz[0] = 2;\np.a.b = 3;\n\
             println!(\"{} {:?} {q}\", s.len(), t);\nassert!(u.insert(4));\nvec![k; 3];",
        );
        let changes: Vec<&str> = c.changes.iter().map(String::as_str).collect();
        assert_eq!(changes, ["k", "p", "u", "v", "x", "y", "z"]);
        // Formatting only reads: `s`, `t` and the captured `q` are not touched.
        assert!(!c.touches.contains("t") && !c.touches.contains("s") && !c.touches.contains("q"));
        assert!(c.names.contains("q") && c.names.contains("t") && c.touches.contains("w"));
    }

    #[test]
    fn a_cell_that_only_prints_is_not_run_again() {
        let r = record(&[
            "let mut names: Vec<String> = Vec::new(); names.push(\"a\".into());",
            "#[derive(Debug)] struct P { x: i32 } let p = P { x: 1 };",
            "println!(\"{:?} {:?} {}\", names, p, names.len());",
            "names.push(\"b\".into());",
        ]);
        let plan = r.plan_all(&[var("names", "Vec<String>", true), var("p", "P", false)]);
        assert_eq!(plan.counts, [1, 2, 4]);
    }

    #[test]
    fn only_the_cells_the_variables_need_are_planned() {
        let r = record(&[
            "let data: Vec<u64> = (0..100).collect();",
            "println!(\"{}\", data.len());",                     // reads only
            "let total: u64 = data.iter().sum();",
            "let t0 = std::time::Instant::now(); let _ = data.iter().max();", // timing
            "let mut log = Vec::new(); log.push(total);",
            "log.push(1);",                                         // changes a mut
        ]);
        let live = [
            var("data", "Vec<u64>", false),
            var("total", "u64", false),
            var("log", "Vec<u64>", true),
            var("t0", "std::time::Instant", false),
        ];
        let plan = r.plan_all(&live);
        assert_eq!(plan.counts, [1, 3, 4, 5, 6]);
        assert!(plan.lost.is_empty());
        let code = plan.code();
        assert!(code.starts_with("#[allow(unused_mut, unused_variables)]\nlet (data, total, mut log, t0,): (Vec<u64>, u64, Vec<u64>, std::time::Instant,) = {"), "{code}");
        assert!(code.trim_end().ends_with("(data, total, log, t0,)\n};"), "{code}");
        assert!(!code.contains("println"), "the printing cell is not run again: {code}");
    }

    #[test]
    fn a_timing_cell_is_skipped_when_nothing_it_binds_is_live() {
        let r = record(&["let v = vec![1u8; 10];", "let t = std::time::Instant::now(); let n = v.len(); println!(\"{n} {:?}\", t.elapsed());"]);
        let plan = r.plan_all(&[var("v", "Vec<u8>", false)]);
        assert_eq!(plan.counts, [1]);
    }

    #[test]
    fn interior_mutability_pulls_in_the_cells_that_use_it() {
        let r = record(&[
            "let hits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));",
            "hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);",
            "let frozen = vec![1, 2];",
            "println!(\"{:?}\", frozen);",
        ]);
        let plan = r.plan_all(&[
            var("hits", "std::sync::Arc<std::sync::atomic::AtomicU64>", false),
            var("frozen", "Vec<i32>", false),
        ]);
        assert_eq!(plan.counts, [1, 2, 3]);
    }

    #[test]
    fn dependencies_are_followed_through_earlier_cells() {
        let r = record(&["let a = 2;", "let b = a * 10;", "let a = 5;", "let c = b + 1;"]);
        // `a` is the second binding's value; `c` needs `b`, which needs the first `a`.
        let plan = r.plan_all(&[var("a", "i32", false), var("b", "i32", false), var("c", "i32", false)]);
        assert_eq!(plan.counts, [1, 2, 3, 4]);
        let code = plan.code();
        let first_a = code.find("let a = 2;").unwrap();
        let b = code.find("let b = a * 10;").unwrap();
        let second_a = code.find("let a = 5;").unwrap();
        assert!(first_a < b && b < second_a, "cells stay in their order:\n{code}");
    }

    #[test]
    fn marked_cells_and_input_are_never_run_again() {
        let r = record(&[
            "// no-replay\nlet server = 7;",
            "let name = evcxr_input::get_string(\"name? \");",
            "let uses_server = server + 1;",
            "let fine = 1;",
        ]);
        let plan = r.plan_all(&[
            var("server", "i32", false),
            var("name", "String", false),
            var("uses_server", "i32", false),
            var("fine", "i32", false),
        ]);
        assert_eq!(plan.counts, [4]);
        assert_eq!(plan.restored, [var("fine", "i32", false)]);
        let lost: BTreeMap<_, _> = plan.lost.iter().cloned().collect();
        assert!(lost["server"].contains("no-replay"), "{lost:?}");
        assert!(lost["uses_server"].contains("cell [1]"), "{lost:?}");
        assert!(lost["name"].contains("asked for input"), "{lost:?}");
    }

    #[test]
    fn a_variable_without_a_recorded_cell_is_named() {
        let plan = record(&["let a = 1;"]).plan_all(&[var("ghost", "i32", false)]);
        assert!(plan.is_empty());
        assert_eq!(plan.lost.len(), 1);
        assert_eq!(plan.lost[0].0, "ghost");
    }

    #[test]
    fn plain_types_are_recognised() {
        assert!(plain_type("Vec<u64>"));
        assert!(plain_type("std::collections::HashMap<String, Vec<(u32, f64)>>"));
        assert!(plain_type("Arc<[u8]>"));
        assert!(plain_type("[bool; 4]") && plain_type("[[f64; 3]; 1_000]"));
        assert!(!plain_type("Arc<Mutex<u64>>"));
        assert!(!plain_type("std::sync::atomic::AtomicUsize"));
        assert!(!plain_type("Point"));
        assert!(!plain_type("std::sync::mpsc::Receiver<u32>"));
    }

    #[test]
    fn format_args_find_captured_names() {
        let names: Vec<String> = format_args("\"{a} {b:?} {{ {0} {c_d:>8}\"").collect();
        assert_eq!(names, ["a", "b", "c_d"]);
    }
}
