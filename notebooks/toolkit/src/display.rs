//! Displays: how HTML, SVG and plain text reach the notebook, and tables.
//!
//! Under the threadbook kernel (environment variable `THREADBOOK_KERNEL` set) a display is one
//! line on stdout in the format of the `threadbook-display` crate (which the kernel reads with),
//! written in one call while holding the stdout lock:
//!
//! ```text
//! THREADBOOK_DISPLAY {"data":{"text/plain":"…","text/html":"…"},"metadata":{},"display_id":"…","update":false}
//! THREADBOOK_CLEAR_OUTPUT {"wait":true}
//! ```
//!
//! Anywhere else (evcxr's own kernel, a plain program) every MIME type of the bundle is written
//! in evcxr's `EVCXR_BEGIN_CONTENT <mime>` … `EVCXR_END_CONTENT` form; clearing does nothing
//! and updating a display shows it again.
//!
//! Every display carries `text/plain`: if a bundle has none, one is derived.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use threadbook_display::Display;
#[cfg(test)]
use threadbook_display::DISPLAY_PREFIX;

/// True when running under the threadbook kernel (`THREADBOOK_KERNEL` is set).
fn threadbook_kernel() -> bool {
    std::env::var_os(threadbook_display::KERNEL_ENV).is_some()
}

/// Shows a bundle of MIME type → content, e.g. `&[("text/html", html), ("text/plain", text)]`.
pub fn display(data: &[(&str, String)]) {
    emit_display(data, None, false);
}

/// Shows an HTML fragment (its text/plain fallback is the HTML with the tags removed).
pub fn html(html: &str) {
    display(&[("text/html", html.to_string())]);
}

/// Shows an SVG document (e.g. one made by [`crate::chart`]).
pub fn svg(svg: &str) {
    display(&[("image/svg+xml", svg.to_string())]);
}

/// Clears the cell's output; with `wait` the front end clears only when the next output arrives
/// (no flicker). Does nothing outside the threadbook kernel.
pub fn clear_output(wait: bool) {
    if threadbook_kernel() {
        write_stdout(&clear_output_line(wait));
    }
}

/// A display that can be replaced later (`update_display_data`), e.g. a progress table.
///
/// Every handle has its own id. It is `Clone + Send + Sync`, so worker threads may update it.
#[derive(Clone, Debug)]
pub struct DisplayHandle {
    id: Arc<str>,
    shown: Arc<AtomicBool>,
}

impl Default for DisplayHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl DisplayHandle {
    /// A new handle with a unique id (process id, counter and time).
    pub fn new() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        DisplayHandle { id: format!("tb-{}-{n}-{nanos}", std::process::id()).into(), shown: Arc::new(AtomicBool::new(false)) }
    }

    /// Shows the bundle as a new display carrying this handle's id.
    pub fn show(&self, data: &[(&str, String)]) {
        self.shown.store(true, Ordering::Relaxed);
        emit_display(data, Some(&self.id), false);
    }

    /// Replaces what this handle's display shows. Outside the threadbook kernel the bundle is
    /// simply shown again. If the handle was never shown, this shows it.
    pub fn update(&self, data: &[(&str, String)]) {
        emit_display(data, Some(&self.id), self.shown.swap(true, Ordering::Relaxed));
    }
}

/// The `THREADBOOK_DISPLAY` line (ending in `\n`) for a bundle; adds `text/plain` if missing.
fn display_line(data: &[(&str, String)], display_id: Option<&str>, update: bool) -> String {
    let data: Map<String, Value> =
        with_plain(data).into_iter().map(|(mime, content)| (mime.to_string(), Value::String(content))).collect();
    Display { data, metadata: Map::new(), display_id: display_id.map(str::to_owned), update: update && display_id.is_some() }
        .to_line()
}

/// The `THREADBOOK_CLEAR_OUTPUT` line (ending in `\n`).
fn clear_output_line(wait: bool) -> String {
    threadbook_display::clear_line(wait)
}

/// The evcxr form of a bundle: one `EVCXR_BEGIN_CONTENT` block per MIME type.
fn evcxr_blocks(data: &[(&str, String)]) -> String {
    let block = |(mime, content): (&str, String)| {
        let nl = if content.ends_with('\n') { "" } else { "\n" };
        format!("EVCXR_BEGIN_CONTENT {mime}\n{content}{nl}EVCXR_END_CONTENT\n")
    };
    with_plain(data).into_iter().map(block).collect()
}

fn emit_display(data: &[(&str, String)], display_id: Option<&str>, update: bool) {
    write_stdout(&if threadbook_kernel() { display_line(data, display_id, update) } else { evcxr_blocks(data) });
}

/// Writes `s` with one `write_all` while holding the stdout lock, then flushes.
/// A closed stdout is not worth a panic in a notebook cell, so errors are ignored.
fn write_stdout(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

/// The bundle with a `text/plain` entry added when it has none; `text/plain` comes first.
fn with_plain<'a>(data: &[(&'a str, String)]) -> Vec<(&'a str, String)> {
    let mut out: Vec<(&'a str, String)> = Vec::with_capacity(data.len() + 1);
    let find = |mime: &str| data.iter().find(|(m, _)| *m == mime).map(|(_, c)| c);
    if find("text/plain").is_none() {
        let plain = if let Some(h) = find("text/html") {
            html_to_text(h)
        } else if let Some(s) = find("image/svg+xml") {
            format!("[SVG image, {} bytes: open the notebook in Jupyter to see it]", s.len())
        } else {
            let kinds: Vec<&str> = data.iter().map(|(m, _)| *m).collect();
            format!("[display: {}]", kinds.join(", "))
        };
        out.push(("text/plain", plain));
    }
    out.extend(data.iter().map(|(m, c)| (*m, c.clone())));
    out
}

/// Escapes `& < > " '` for HTML text and attribute values.
pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A rough plain-text version of an HTML fragment: tags dropped (block tags become line
/// breaks, an `<svg>` becomes `[chart]`), the common entities decoded.
fn html_to_text(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let after = &rest[lt..];
        let Some(gt) = after.find('>') else {
            out.push_str(after);
            rest = "";
            break;
        };
        let tag = after[1..gt].trim().to_ascii_lowercase();
        let closing = tag.starts_with('/');
        let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        rest = &after[gt + 1..];
        let line_start = out.is_empty() || out.ends_with('\n');
        if name == "svg" && !closing {
            out.push_str("[chart]");
            rest = rest.find("</svg>").map_or("", |end| &rest[end + "</svg>".len()..]);
        } else if ["br", "p", "div", "tr", "h1", "h2", "h3", "h4", "li", "table", "summary"].contains(&name.as_str()) {
            if !line_start {
                out.push('\n');
            }
        } else if (name == "td" || name == "th") && !closing && !line_start {
            out.push_str("  ");
        }
    }
    out.push_str(rest);
    let entities = [("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&#39;", "'"), ("&nbsp;", " "), ("&amp;", "&")];
    entities.iter().fold(out, |s, (e, c)| s.replace(e, c)).trim().to_string()
}

/// Renders a table as `(html, plain text)`.
///
/// HTML: `<table><thead>…</thead><tbody>…</tbody></table>`, cells escaped.
/// Text: columns padded to their widest cell, numeric columns (every cell starts with a digit,
/// sign, `.` or `?`) right-aligned and the others left-aligned, a dashed line under the header,
/// two spaces between columns, no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> (String, String) {
    let ncols = rows.iter().map(|r| r.len()).chain(std::iter::once(headers.len())).max().unwrap_or(0);
    let cell = |row: &[String], i: usize| row.get(i).cloned().unwrap_or_default();
    let header_row: Vec<String> = (0..ncols).map(|i| headers.get(i).map(|h| h.to_string()).unwrap_or_default()).collect();

    let mut html = String::from("<table><thead><tr>");
    for h in &header_row {
        html.push_str(&format!("<th>{}</th>", escape_html(h)));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for i in 0..ncols {
            html.push_str(&format!("<td>{}</td>", escape_html(&cell(row, i))));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");

    let width = |s: &str| s.chars().count();
    let widths: Vec<usize> = (0..ncols)
        .map(|i| rows.iter().map(|r| width(&cell(r, i))).chain(std::iter::once(width(&header_row[i]))).max().unwrap_or(0))
        .collect();
    // A column is right-aligned when all its non-empty cells start like a number.
    let numeric = |c: &str| c.starts_with(|ch: char| ch.is_ascii_digit() || "-+.?".contains(ch));
    let right: Vec<bool> = (0..ncols)
        .map(|i| {
            let cells: Vec<String> = rows.iter().map(|r| cell(r, i)).filter(|c| !c.is_empty()).collect();
            !cells.is_empty() && cells.iter().all(|c| numeric(c))
        })
        .collect();
    let line = |cells: &[String]| -> String {
        let pad = |i: usize, c: &String| {
            let p = " ".repeat(widths[i] - width(c));
            if right[i] { format!("{p}{c}") } else { format!("{c}{p}") }
        };
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| pad(i, c)).collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut plain = line(&header_row);
    plain.push('\n');
    let dashes: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    plain.push_str(&dashes.join("  "));
    for row in rows {
        plain.push('\n');
        let cells: Vec<String> = (0..ncols).map(|i| cell(row, i)).collect();
        plain.push_str(&line(&cells));
    }
    (html, plain)
}

/// Shows a table (HTML with a text fallback).
pub fn show_table(headers: &[&str], rows: &[Vec<String>]) {
    let (html, plain) = table(headers, rows);
    display(&[("text/plain", plain), ("text/html", html)]);
}

/// A measurement's display: title, warnings (red), table, chart, a grey note, the context line.
pub(crate) fn show_card(title: &str, warnings: &[String], table: (String, String), chart: &str, note: &str, ctx: &crate::Context) {
    let (h, t) = table;
    let warn_text: String = warnings.iter().map(|w| format!("!!! {w}\n")).collect();
    let warn_html: String = warnings
        .iter()
        .map(|w| format!("<div class=\"tb-warning\" style=\"color:#b00020;font-weight:bold\">{}</div>", escape_html(w)))
        .collect();
    display(&[
        ("text/plain", format!("{title}\n{warn_text}{t}\n{note}\n{}", ctx.text())),
        (
            "text/html",
            format!(
                "<div class=\"tb-card\"><b>{}</b>{warn_html}{h}<div>{chart}</div><div style=\"color:#666;font-size:85%\">{}</div>{}</div>",
                escape_html(title),
                escape_html(note),
                ctx.html()
            ),
        ),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn display_line_is_one_line_of_valid_json_with_the_right_keys() {
        let data = [
            ("text/plain", "a\nb \"quoted\"".to_string()),
            ("text/html", "<b>x</b>\n<i>y</i>".to_string()),
        ];
        let line = display_line(&data, Some("id-1"), true);
        assert!(line.starts_with(DISPLAY_PREFIX));
        assert!(line.ends_with('\n'));
        assert_eq!(
            line.matches('\n').count(),
            1,
            "exactly one newline: {line:?}"
        );
        let v: Value = serde_json::from_str(&line[DISPLAY_PREFIX.len()..]).expect("valid JSON");
        let obj = v.as_object().expect("an object");
        let mut keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["data", "display_id", "metadata", "update"]);
        assert_eq!(v["data"]["text/plain"], "a\nb \"quoted\"");
        assert_eq!(v["data"]["text/html"], "<b>x</b>\n<i>y</i>");
        assert_eq!(v["metadata"], json!({}));
        assert_eq!(v["display_id"], "id-1");
        assert_eq!(v["update"], true);
    }

    #[test]
    fn display_line_without_id_has_no_display_id_and_derives_plain_text() {
        let line = display_line(&[("text/html", "<p>1 &lt; 2</p>".to_string())], None, true);
        let v: Value = serde_json::from_str(line[DISPLAY_PREFIX.len()..].trim_end()).unwrap();
        assert!(v.get("display_id").is_none());
        assert_eq!(v["update"], false, "update needs a display id");
        assert_eq!(v["data"]["text/plain"], "1 < 2");
    }

    #[test]
    fn clear_line_format() {
        assert_eq!(
            clear_output_line(true),
            "THREADBOOK_CLEAR_OUTPUT {\"wait\":true}\n"
        );
        assert_eq!(
            clear_output_line(false),
            "THREADBOOK_CLEAR_OUTPUT {\"wait\":false}\n"
        );
    }

    #[test]
    fn evcxr_blocks_have_one_block_per_mime() {
        let s = evcxr_blocks(&[("text/html", "<b>x</b>".to_string())]);
        assert_eq!(
            s,
            "EVCXR_BEGIN_CONTENT text/plain\nx\nEVCXR_END_CONTENT\n\
             EVCXR_BEGIN_CONTENT text/html\n<b>x</b>\nEVCXR_END_CONTENT\n"
        );
    }

    #[test]
    fn handles_have_distinct_ids() {
        let a = DisplayHandle::new();
        let b = DisplayHandle::new();
        assert_ne!(a.id, b.id);
        assert!(a.id.starts_with("tb-"));
    }

    #[test]
    fn table_renders_exact_html_and_text() {
        let rows = vec![
            vec![
                "sequential".to_string(),
                "12.0 ms".to_string(),
                "1.00x".to_string(),
            ],
            vec!["a<b".to_string(), "6.4 ms".to_string(), "1.88x".to_string()],
        ];
        let (html, plain) = table(&["variant", "median", "speedup"], &rows);
        assert_eq!(
            html,
            "<table><thead><tr><th>variant</th><th>median</th><th>speedup</th></tr></thead>\
             <tbody><tr><td>sequential</td><td>12.0 ms</td><td>1.00x</td></tr>\
             <tr><td>a&lt;b</td><td>6.4 ms</td><td>1.88x</td></tr></tbody></table>"
        );
        assert_eq!(
            plain,
            "variant      median  speedup\n\
             ----------  -------  -------\n\
             sequential  12.0 ms    1.00x\n\
             a<b          6.4 ms    1.88x"
        );
    }

    #[test]
    fn table_pads_short_rows() {
        let (html, plain) = table(&["a", "b"], &[vec!["1".to_string()]]);
        assert_eq!(
            html,
            "<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td><td></td></tr></tbody></table>"
        );
        assert_eq!(plain, "a  b\n-  -\n1");
    }

    #[test]
    fn html_to_text_replaces_svg_and_breaks_blocks() {
        let t = html_to_text(
            "<h4>T</h4><div><svg a=\"1\"><text>x</text></svg></div><p>ok &amp; done</p>",
        );
        assert_eq!(t, "T\n[chart]\nok & done");
    }
}
