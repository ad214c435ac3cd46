//! Typed message contents. Requests are parsed into [`Request`] by msg_type;
//! replies and broadcasts are plain serde structs turned into JSON only at the
//! edge, so the compiler checks that every reply has its required fields.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub const PROTOCOL_VERSION: &str = "5.4";

/// A media bundle: mime type → value (strings, or JSON for `application/*json`).
pub type MimeBundle = BTreeMap<String, Value>;

/// A message header. Kept as the client sent it when it is a parent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub msg_id: String,
    pub session: String,
    pub username: String,
    pub date: String,
    pub msg_type: String,
    pub version: String,
}

impl Header {
    pub fn new(msg_type: &str, session: &str) -> Header {
        Header {
            msg_id: uuid::Uuid::new_v4().to_string(),
            session: session.to_owned(),
            username: "threadbook".to_owned(),
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            msg_type: msg_type.to_owned(),
            version: PROTOCOL_VERSION.to_owned(),
        }
    }
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ExecuteRequest {
    pub code: String,
    #[serde(default)]
    pub silent: bool,
    #[serde(default = "default_true")]
    pub store_history: bool,
    #[serde(default)]
    pub user_expressions: Map<String, Value>,
    #[serde(default)]
    pub allow_stdin: bool,
    #[serde(default)]
    pub stop_on_error: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CodeAtCursor {
    pub code: String,
    pub cursor_pos: usize,
    #[serde(default)]
    pub detail_level: u8,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct IsCompleteRequest {
    pub code: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct HistoryRequest {
    #[serde(default)]
    pub output: bool,
    #[serde(default)]
    pub raw: bool,
    pub hist_access_type: String,
    #[serde(default)]
    pub session: i64,
    #[serde(default)]
    pub start: i64,
    #[serde(default)]
    pub stop: i64,
    #[serde(default)]
    pub n: Option<usize>,
    #[serde(default)]
    pub pattern: String,
    #[serde(default)]
    pub unique: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ShutdownRequest {
    #[serde(default)]
    pub restart: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CommOpen {
    pub comm_id: String,
    #[serde(default)]
    pub target_name: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CommInfoRequest {
    #[serde(default)]
    pub target_name: Option<String>,
}

/// Every request a frontend may send, by msg_type.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    KernelInfo,
    Execute(ExecuteRequest),
    Complete(CodeAtCursor),
    Inspect(CodeAtCursor),
    IsComplete(IsCompleteRequest),
    History(HistoryRequest),
    CommInfo(CommInfoRequest),
    CommOpen(CommOpen),
    /// comm_msg / comm_close for comms we never opened: ignored.
    CommOther,
    Shutdown(ShutdownRequest),
    Interrupt,
    Debug,
    InputReply(Value),
    /// A msg_type this kernel does not know; logged, no reply.
    Unknown(String),
}

impl Request {
    pub fn parse(msg_type: &str, content: Value) -> Result<Request, serde_json::Error> {
        use serde_json::from_value as v;
        Ok(match msg_type {
            "kernel_info_request" => Request::KernelInfo,
            "execute_request" => Request::Execute(v(content)?),
            "complete_request" => Request::Complete(v(content)?),
            "inspect_request" => Request::Inspect(v(content)?),
            "is_complete_request" => Request::IsComplete(v(content)?),
            "history_request" => Request::History(v(content)?),
            "comm_info_request" => Request::CommInfo(v(content)?),
            "comm_open" => Request::CommOpen(v(content)?),
            "comm_msg" | "comm_close" => Request::CommOther,
            "shutdown_request" => Request::Shutdown(v(content)?),
            "interrupt_request" => Request::Interrupt,
            "debug_request" => Request::Debug,
            "input_reply" => Request::InputReply(content),
            other => Request::Unknown(other.to_owned()),
        })
    }

    /// The reply's msg_type for a request msg_type (`x_request` → `x_reply`).
    pub fn reply_type(msg_type: &str) -> String {
        match msg_type.strip_suffix("_request") {
            Some(stem) => format!("{stem}_reply"),
            None => format!("{msg_type}_reply"),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LanguageInfo {
    pub name: String,
    pub version: String,
    pub mimetype: String,
    pub file_extension: String,
    pub pygments_lexer: String,
    pub codemirror_mode: String,
    pub nbconvert_exporter: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HelpLink {
    pub text: String,
    pub url: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KernelInfoReply {
    pub status: &'static str,
    pub protocol_version: &'static str,
    pub implementation: &'static str,
    pub implementation_version: &'static str,
    pub language_info: LanguageInfo,
    pub banner: String,
    pub help_links: Vec<HelpLink>,
    pub debugger: bool,
}

impl KernelInfoReply {
    pub fn new(rustc_version: &str) -> Self {
        let link = |text: &str, url: &str| HelpLink {
            text: text.to_owned(),
            url: url.to_owned(),
        };
        KernelInfoReply {
            status: "ok",
            protocol_version: PROTOCOL_VERSION,
            implementation: "threadbook",
            implementation_version: env!("CARGO_PKG_VERSION"),
            language_info: LanguageInfo {
                name: "rust".into(),
                version: rustc_version.into(),
                mimetype: "text/rust".into(),
                file_extension: ".rs".into(),
                pygments_lexer: "rust".into(),
                codemirror_mode: "rust".into(),
                nbconvert_exporter: "script".into(),
            },
            banner: format!(
                "threadbook {} — Rust {} in Jupyter, on the evcxr engine",
                env!("CARGO_PKG_VERSION"),
                rustc_version
            ),
            help_links: vec![
                link("Rust standard library", "https://doc.rust-lang.org/std/"),
                link("rayon", "https://docs.rs/rayon/"),
                link("threadbook README", "https://github.com/threadbook/threadbook#readme"),
            ],
            debugger: false,
        }
    }
}

/// What a finished execution reports back (the reply body beside status).
#[derive(Debug, Clone, PartialEq)]
pub enum ExecuteStatus {
    Ok,
    Error(ErrorContent),
    Aborted,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ErrorContent {
    pub ename: String,
    pub evalue: String,
    pub traceback: Vec<String>,
}

pub fn execute_reply(status: &ExecuteStatus, execution_count: u64) -> Value {
    match status {
        ExecuteStatus::Ok => json!({
            "status": "ok",
            "execution_count": execution_count,
            "payload": [],
            "user_expressions": {},
        }),
        ExecuteStatus::Error(e) => json!({
            "status": "error",
            "execution_count": execution_count,
            "ename": e.ename,
            "evalue": e.evalue,
            "traceback": e.traceback,
        }),
        ExecuteStatus::Aborted => json!({
            "status": "aborted",
            "execution_count": execution_count,
        }),
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CompleteReply {
    pub status: &'static str,
    pub matches: Vec<String>,
    pub cursor_start: usize,
    pub cursor_end: usize,
    pub metadata: Value,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InspectReply {
    pub status: &'static str,
    pub found: bool,
    pub data: MimeBundle,
    pub metadata: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum IsComplete {
    Complete,
    Incomplete { indent: String },
    Invalid,
    Unknown,
}

impl IsComplete {
    pub fn reply(&self) -> Value {
        match self {
            IsComplete::Complete => json!({"status": "complete"}),
            IsComplete::Incomplete { indent } => json!({"status": "incomplete", "indent": indent}),
            IsComplete::Invalid => json!({"status": "invalid"}),
            IsComplete::Unknown => json!({"status": "unknown"}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_request_defaults_follow_the_spec() {
        let r = Request::parse("execute_request", json!({"code": "1"})).unwrap();
        let Request::Execute(e) = r else { panic!("not execute") };
        assert!(e.store_history);
        assert!(!e.silent && !e.allow_stdin && !e.stop_on_error);
    }

    #[test]
    fn missing_required_field_is_an_error() {
        assert!(Request::parse("execute_request", json!({"silent": true})).is_err());
        assert!(Request::parse("complete_request", json!({"code": "x"})).is_err());
    }

    #[test]
    fn unknown_types_are_kept_by_name() {
        assert_eq!(
            Request::parse("frobnicate_request", json!({})).unwrap(),
            Request::Unknown("frobnicate_request".into())
        );
        assert_eq!(Request::reply_type("kernel_info_request"), "kernel_info_reply");
    }

    #[test]
    fn kernel_info_language_fields() {
        let v = serde_json::to_value(KernelInfoReply::new("1.95.0")).unwrap();
        let li = &v["language_info"];
        assert_eq!(li["name"], "rust");
        assert_eq!(li["pygments_lexer"], "rust");
        assert_eq!(li["codemirror_mode"], "rust");
        assert_eq!(li["mimetype"], "text/rust");
        assert_eq!(li["file_extension"], ".rs");
        assert_eq!(v["protocol_version"], PROTOCOL_VERSION);
    }

    #[test]
    fn header_date_has_micros_and_zone() {
        let h = Header::new("status", "s");
        assert!(h.date.ends_with('Z'));
        let frac = h.date.split('.').nth(1).unwrap();
        assert_eq!(frac.len(), 7, "6 digits and Z: {}", h.date);
    }

    #[test]
    fn replies_carry_required_fields() {
        let ok = execute_reply(&ExecuteStatus::Ok, 3);
        assert_eq!(ok["payload"], json!([]));
        assert_eq!(ok["user_expressions"], json!({}));
        let err = execute_reply(
            &ExecuteStatus::Error(ErrorContent {
                ename: "panic".into(),
                evalue: "boom".into(),
                traceback: vec!["boom".into()],
            }),
            4,
        );
        assert_eq!(err["status"], "error");
        assert_eq!(err["execution_count"], 4);
        assert_eq!(IsComplete::Incomplete { indent: "    ".into() }.reply()["indent"], "    ");
        assert!(IsComplete::Complete.reply().get("indent").is_none());
    }
}
