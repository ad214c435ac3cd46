//! What can be known about a cell from its text alone: whether it is complete
//! (for `is_complete_request`), and whether it ends in an expression whose
//! value becomes the cell's result.
//!
//! A small scanner finds open brackets, strings and comments (so an open
//! brace means "incomplete", a stray `)` means "invalid"); the rust-analyzer
//! parser that the engine already uses decides whether balanced code parses.

use crate::messages::IsComplete;
use ra_ap_syntax::{ast, AstNode, Edition, SourceFile};

const INDENT: &str = "    ";

/// The Rust part of a cell: lines starting with `:` are engine commands.
fn rust_part(code: &str) -> String {
    code.lines()
        .map(|l| if l.trim_start().starts_with(':') { "" } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, PartialEq)]
enum Scan {
    /// Everything closed.
    Balanced,
    /// Open brackets (depth), or an unterminated string or comment.
    Open(usize),
    /// A closing bracket that does not match.
    Mismatched,
}

fn scan(code: &str) -> Scan {
    let b: Vec<char> = code.chars().collect();
    let mut stack: Vec<char> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        match c {
            '/' if next == Some('/') => {
                while i < b.len() && b[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                let mut depth = 1;
                i += 2;
                while i < b.len() && depth > 0 {
                    if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 1;
                    } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 1;
                    }
                    i += 1;
                }
                if depth > 0 {
                    return Scan::Open(stack.len() + 1);
                }
                continue;
            }
            'r' | 'b' | 'c'
                if (i == 0 || !is_ident(b[i - 1]))
                    && raw_string_start(&b[i..]).is_some() =>
            {
                let (skip, hashes) = raw_string_start(&b[i..]).unwrap_or((1, 0));
                i += skip;
                // find closing quote followed by `hashes` #'s
                let mut closed = false;
                while i < b.len() {
                    if b[i] == '"' && (0..hashes).all(|k| b.get(i + 1 + k) == Some(&'#')) {
                        i += 1 + hashes;
                        closed = true;
                        break;
                    }
                    i += 1;
                }
                if !closed {
                    return Scan::Open(stack.len() + 1);
                }
                continue;
            }
            '"' => {
                i += 1;
                let mut closed = false;
                while i < b.len() {
                    match b[i] {
                        '\\' => i += 2,
                        '"' => {
                            closed = true;
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                if !closed {
                    return Scan::Open(stack.len() + 1);
                }
                continue;
            }
            '\'' => {
                // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
                if next == Some('\\') {
                    i += 2;
                    while i < b.len() && b[i] != '\'' && b[i] != '\n' {
                        i += 1;
                    }
                } else if b.get(i + 2) == Some(&'\'') {
                    i += 2;
                }
            }
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(want) {
                    return Scan::Mismatched;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if stack.is_empty() {
        Scan::Balanced
    } else {
        Scan::Open(stack.len())
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `r"`, `r#"`, `br"`, `cr#"` … → (chars up to and including the quote, number of #).
fn raw_string_start(s: &[char]) -> Option<(usize, usize)> {
    let mut i = 0;
    if matches!(s.first(), Some('b') | Some('c')) {
        i += 1;
    }
    if s.get(i) != Some(&'r') {
        return None;
    }
    i += 1;
    let mut hashes = 0;
    while s.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    (s.get(i) == Some(&'"')).then_some((i + 1, hashes))
}

fn parse_as_body(code: &str) -> ra_ap_syntax::Parse<SourceFile> {
    SourceFile::parse(&format!("fn threadbook_cell() {{\n{code}\n}}"), Edition::Edition2024)
}

/// The answer to an `is_complete_request`.
pub fn is_complete(code: &str) -> IsComplete {
    let rust = rust_part(code);
    if rust.trim().is_empty() {
        return IsComplete::Complete;
    }
    match scan(&rust) {
        Scan::Open(depth) => IsComplete::Incomplete {
            indent: INDENT.repeat(depth.max(1)),
        },
        Scan::Mismatched => IsComplete::Invalid,
        Scan::Balanced => {
            if parse_as_body(&rust).errors().is_empty() {
                IsComplete::Complete
            } else {
                IsComplete::Invalid
            }
        }
    }
}

/// True when the cell ends in an expression without a semicolon, so the
/// engine shows its value as the cell's result.
pub fn has_tail_expression(code: &str) -> bool {
    let rust = rust_part(code);
    let parse = parse_as_body(&rust);
    parse
        .tree()
        .syntax()
        .descendants()
        .find_map(ast::StmtList::cast)
        .and_then(|list| list.tail_expr())
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: &str) -> &'static str {
        match is_complete(code) {
            IsComplete::Complete => "complete",
            IsComplete::Incomplete { .. } => "incomplete",
            IsComplete::Invalid => "invalid",
            IsComplete::Unknown => "unknown",
        }
    }

    #[test]
    fn complete_cells() {
        for code in [
            "1 + 1",
            "let x = 5;",
            "fn f() -> u32 { 1 }",
            "let s = \"}\"; // {",
            "let c = '{';",
            "fn f<'a>(x: &'a str) -> &'a str { x }",
            "let r = r#\"a \" { \"#;",
            ":dep rayon = \"1\"",
            ":dep rayon = \"1\"\nuse rayon::prelude::*;",
            "/* { */ 1",
            "",
        ] {
            assert_eq!(status(code), "complete", "{code:?}");
        }
    }

    #[test]
    fn incomplete_cells_with_indent() {
        assert_eq!(
            is_complete("fn f() {"),
            IsComplete::Incomplete { indent: "    ".into() }
        );
        assert_eq!(
            is_complete("fn f() {\n    if x {"),
            IsComplete::Incomplete { indent: "        ".into() }
        );
        for code in ["let s = \"abc", "/* open comment", "vec![1, 2,", "let r = r##\"x\"#"] {
            assert_eq!(status(code), "incomplete", "{code:?}");
        }
    }

    #[test]
    fn invalid_cells() {
        for code in ["let x = );", "fn f() { ) }", "let = 5;", "let x = 5 5;"] {
            assert_eq!(status(code), "invalid", "{code:?}");
        }
    }

    #[test]
    fn tail_expressions() {
        assert!(has_tail_expression("1 + 1"));
        assert!(has_tail_expression("let x = 2;\nx * 3"));
        assert!(has_tail_expression(":dep rayon = \"1\"\nvec![1]"));
        assert!(!has_tail_expression("let x = 2;"));
        assert!(!has_tail_expression("println!(\"hi\");"));
        assert!(!has_tail_expression("fn f() {}"));
        assert!(!has_tail_expression(":dep rayon = \"1\""));
    }
}
