//! Typed Jupyter messages: headers, one struct per content, and one enum
//! each for requests ([`Request`]), replies ([`Reply`]) and broadcasts
//! ([`IopubContent`]). A verified [`RawMessage`] is decoded here into an
//! [`Incoming`]; replies and broadcasts are serde types turned into JSON only
//! when they are framed, so the compiler checks that every reply has its
//! required fields. `serde_json::Value` remains only where the protocol is
//! free-form: user expressions, metadata, mime bundle values, debug content.
//!
//! Why not the `jupyter-protocol` crate: its `Header` is a closed struct with
//! a `chrono` date, so a parent header is re-serialised rather than echoed
//! (unknown fields such as `subshell_id` are lost, an unparsable date refuses
//! the message); its media type is a list of enums where the engine speaks
//! mime → JSON maps; and it brings an async stack to a kernel built on
//! blocking sockets. The types below follow its shape.

use crate::wire::RawMessage;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub const PROTOCOL_VERSION: &str = "5.4";

/// A media bundle: mime type → value (strings, or JSON for `application/*json`).
pub type MimeBundle = BTreeMap<String, Value>;

// --- headers ------------------------------------------------------------------

/// A header this kernel writes.
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

/// A header as a client sent it. The kernel reads `msg_type` (and logs
/// `msg_id`); everything else, unknown fields included, is kept as sent so
/// that it goes back unchanged as the `parent_header` of what answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientHeader {
    pub msg_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// The parent of a message this kernel sends: a client's header, or none
/// (`{}` on the wire, e.g. the `starting` status).
pub type Parent = Option<ClientHeader>;

/// The JSON of a parent header.
pub fn parent_json(parent: &Parent) -> Value {
    match parent {
        Some(h) => serde_json::to_value(h).unwrap_or_else(|_| Value::Object(Map::new())),
        None => Value::Object(Map::new()),
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub fn cut_text(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

// --- requests -------------------------------------------------------------------

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

/// complete_request and inspect_request.
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

/// comm_msg and comm_close.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CommMsg {
    pub comm_id: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CommInfoRequest {
    #[serde(default)]
    pub target_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct InputReply {
    #[serde(default)]
    pub value: String,
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
    /// comm_msg / comm_close: there are no comms, so they are ignored.
    CommMsg(CommMsg),
    Shutdown(ShutdownRequest),
    Interrupt,
    /// debug_request: free-form content; answered "not supported".
    Debug(Value),
    InputReply(InputReply),
    /// A known msg_type whose content does not fit it.
    Malformed { msg_type: String, reason: String },
    /// A msg_type this kernel does not know; logged, not answered.
    Unknown(String),
}

impl Request {
    /// Decodes a content by its msg_type; content that does not fit the type
    /// becomes [`Request::Malformed`], answered with an error reply.
    pub fn parse(msg_type: &str, content: Value) -> Request {
        use serde_json::from_value as v;
        let parsed = match msg_type {
            "kernel_info_request" => Ok(Request::KernelInfo),
            "execute_request" => v(content).map(Request::Execute),
            "complete_request" => v(content).map(Request::Complete),
            "inspect_request" => v(content).map(Request::Inspect),
            "is_complete_request" => v(content).map(Request::IsComplete),
            "history_request" => v(content).map(Request::History),
            "comm_info_request" => v(content).map(Request::CommInfo),
            "comm_open" => v(content).map(Request::CommOpen),
            "comm_msg" | "comm_close" => v(content).map(Request::CommMsg),
            "shutdown_request" => v(content).map(Request::Shutdown),
            "interrupt_request" => Ok(Request::Interrupt),
            "debug_request" => Ok(Request::Debug(content)),
            "input_reply" => v(content).map(Request::InputReply),
            other => Ok(Request::Unknown(other.to_owned())),
        };
        parsed.unwrap_or_else(|e| Request::Malformed {
            msg_type: msg_type.to_owned(),
            reason: format!("bad {msg_type}: {e}"),
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

/// A verified request: who sent it, its header, and its decoded content.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub identities: Vec<Vec<u8>>,
    pub header: ClientHeader,
    pub request: Request,
}

/// Why a verified message could not be decoded at all (it is dropped).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("bad header: {0}")]
pub struct BadHeader(String);

impl Incoming {
    pub fn decode(raw: RawMessage) -> Result<Incoming, BadHeader> {
        let header: ClientHeader =
            serde_json::from_value(raw.header).map_err(|e| BadHeader(e.to_string()))?;
        let request = Request::parse(&header.msg_type, raw.content);
        Ok(Incoming {
            identities: raw.identities,
            header,
            request,
        })
    }

    pub fn msg_type(&self) -> &str {
        &self.header.msg_type
    }

    /// This request as the parent of what answers it.
    pub fn parent(&self) -> Parent {
        Some(self.header.clone())
    }

    /// `execute_reply` for `execute_request`, and so on.
    pub fn reply_type(&self) -> String {
        Request::reply_type(&self.header.msg_type)
    }
}

// --- replies -------------------------------------------------------------------

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

/// An error: the body of an error reply, and of the iopub `error` message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorContent {
    pub ename: String,
    pub evalue: String,
    pub traceback: Vec<String>,
}

impl ErrorContent {
    /// An error whose traceback is its one-line summary.
    pub fn new(ename: &str, evalue: impl Into<String>) -> ErrorContent {
        let evalue = evalue.into();
        ErrorContent {
            traceback: vec![format!("{ename}: {evalue}")],
            ename: ename.to_owned(),
            evalue,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum ExecuteReply {
    Ok {
        execution_count: u64,
        payload: Vec<Value>,
        user_expressions: Map<String, Value>,
    },
    Error {
        execution_count: u64,
        #[serde(flatten)]
        error: ErrorContent,
    },
    /// Not run: an earlier cell failed with stop_on_error.
    Aborted { execution_count: u64 },
}

impl ExecuteReply {
    pub fn ok(execution_count: u64) -> ExecuteReply {
        ExecuteReply::Ok {
            execution_count,
            payload: vec![],
            user_expressions: Map::new(),
        }
    }

    pub fn status(&self) -> &'static str {
        match self {
            ExecuteReply::Ok { .. } => "ok",
            ExecuteReply::Error { .. } => "error",
            ExecuteReply::Aborted { .. } => "aborted",
        }
    }
}

/// One entry of complete_reply's `metadata._jupyter_types_experimental`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CompletionType {
    pub start: usize,
    pub end: usize,
    pub text: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Shown beside the match by JupyterLab; never inserted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CompleteMetadata {
    #[serde(rename = "_jupyter_types_experimental")]
    pub types: Vec<CompletionType>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CompleteReply {
    pub status: &'static str,
    pub matches: Vec<String>,
    pub cursor_start: usize,
    pub cursor_end: usize,
    pub metadata: CompleteMetadata,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InspectReply {
    pub status: &'static str,
    pub found: bool,
    pub data: MimeBundle,
    pub metadata: Map<String, Value>,
}

/// is_complete_reply; `indent` only when incomplete.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum IsComplete {
    Complete,
    Incomplete { indent: String },
    Invalid,
    Unknown,
}

/// One history entry: `[session, line, input]` or `[session, line, [input, output]]`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum HistoryEntry {
    Input(i64, i64, String),
    WithOutput(i64, i64, (String, Option<String>)),
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HistoryReply {
    pub status: &'static str,
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CommInfoReply {
    pub status: &'static str,
    pub comms: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShutdownReply {
    pub status: &'static str,
    pub restart: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusOk {
    pub status: &'static str,
}

/// A reply to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    KernelInfo(KernelInfoReply),
    Execute(ExecuteReply),
    Complete(CompleteReply),
    Inspect(InspectReply),
    IsComplete(IsComplete),
    History(HistoryReply),
    CommInfo(CommInfoReply),
    Shutdown(ShutdownReply),
    Interrupt(StatusOk),
    /// A request that failed (malformed, refused, or a handler that
    /// panicked): `<kind>_reply` with status error.
    Error { msg_type: String, error: ErrorContent },
}

#[derive(Serialize)]
struct ErrorReplyBody<'a> {
    status: &'static str,
    #[serde(flatten)]
    error: &'a ErrorContent,
}

impl Reply {
    /// The error reply to a request of `request_type`; an execute_request
    /// gets an execute_reply with the current execution count.
    pub fn failure(request_type: &str, execution_count: u64, error: ErrorContent) -> Reply {
        if request_type == "execute_request" {
            Reply::Execute(ExecuteReply::Error { execution_count, error })
        } else {
            Reply::Error {
                msg_type: Request::reply_type(request_type),
                error,
            }
        }
    }

    pub fn msg_type(&self) -> String {
        match self {
            Reply::KernelInfo(_) => "kernel_info_reply",
            Reply::Execute(_) => "execute_reply",
            Reply::Complete(_) => "complete_reply",
            Reply::Inspect(_) => "inspect_reply",
            Reply::IsComplete(_) => "is_complete_reply",
            Reply::History(_) => "history_reply",
            Reply::CommInfo(_) => "comm_info_reply",
            Reply::Shutdown(_) => "shutdown_reply",
            Reply::Interrupt(_) => "interrupt_reply",
            Reply::Error { msg_type, .. } => return msg_type.clone(),
        }
        .to_owned()
    }

    pub fn content(&self) -> Result<Value, serde_json::Error> {
        use serde_json::to_value as v;
        match self {
            Reply::KernelInfo(r) => v(r),
            Reply::Execute(r) => v(r),
            Reply::Complete(r) => v(r),
            Reply::Inspect(r) => v(r),
            Reply::IsComplete(r) => v(r),
            Reply::History(r) => v(r),
            Reply::CommInfo(r) => v(r),
            Reply::Shutdown(r) => v(r),
            Reply::Interrupt(r) => v(r),
            Reply::Error { error, .. } => v(ErrorReplyBody { status: "error", error }),
        }
    }
}

/// stdin: the kernel asks the frontend for a line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InputRequest {
    pub prompt: String,
    pub password: bool,
}

// --- iopub ----------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionState {
    Starting,
    Busy,
    Idle,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    pub execution_state: ExecutionState,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExecuteInput {
    pub code: String,
    pub execution_count: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StreamContent {
    pub name: &'static str,
    pub text: String,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Transient {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_id: Option<String>,
}

/// display_data and update_display_data.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DisplayData {
    pub data: MimeBundle,
    pub metadata: Value,
    pub transient: Transient,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExecuteResult {
    pub execution_count: u64,
    pub data: MimeBundle,
    pub metadata: Value,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClearOutput {
    pub wait: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CommClose {
    pub comm_id: String,
    pub data: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IopubWelcome {
    pub subscription: String,
}

/// Everything broadcast on iopub.
#[derive(Debug, Clone, PartialEq)]
pub enum IopubContent {
    Status(Status),
    ExecuteInput(ExecuteInput),
    Stream(StreamContent),
    DisplayData(DisplayData),
    UpdateDisplayData(DisplayData),
    ExecuteResult(ExecuteResult),
    Error(ErrorContent),
    ClearOutput(ClearOutput),
    CommClose(CommClose),
    ShutdownReply(ShutdownReply),
    IopubWelcome(IopubWelcome),
}

impl IopubContent {
    pub fn status(state: ExecutionState) -> IopubContent {
        IopubContent::Status(Status { execution_state: state })
    }

    pub fn msg_type(&self) -> &'static str {
        match self {
            IopubContent::Status(_) => "status",
            IopubContent::ExecuteInput(_) => "execute_input",
            IopubContent::Stream(_) => "stream",
            IopubContent::DisplayData(_) => "display_data",
            IopubContent::UpdateDisplayData(_) => "update_display_data",
            IopubContent::ExecuteResult(_) => "execute_result",
            IopubContent::Error(_) => "error",
            IopubContent::ClearOutput(_) => "clear_output",
            IopubContent::CommClose(_) => "comm_close",
            IopubContent::ShutdownReply(_) => "shutdown_reply",
            IopubContent::IopubWelcome(_) => "iopub_welcome",
        }
    }

    pub fn content(&self) -> Result<Value, serde_json::Error> {
        use serde_json::to_value as v;
        match self {
            IopubContent::Status(c) => v(c),
            IopubContent::ExecuteInput(c) => v(c),
            IopubContent::Stream(c) => v(c),
            IopubContent::DisplayData(c) | IopubContent::UpdateDisplayData(c) => v(c),
            IopubContent::ExecuteResult(c) => v(c),
            IopubContent::Error(c) => v(c),
            IopubContent::ClearOutput(c) => v(c),
            IopubContent::CommClose(c) => v(c),
            IopubContent::ShutdownReply(c) => v(c),
            IopubContent::IopubWelcome(c) => v(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(t: &str, c: Value) -> Request {
        Request::parse(t, c)
    }

    #[test]
    fn execute_request_defaults_follow_the_spec() {
        let Request::Execute(e) = parse("execute_request", json!({"code": "1"})) else {
            panic!("not execute")
        };
        assert!(e.store_history);
        assert!(!e.silent && !e.allow_stdin && !e.stop_on_error);
    }

    #[test]
    fn missing_required_field_is_malformed() {
        assert!(matches!(parse("execute_request", json!({"silent": true})), Request::Malformed { .. }));
        assert!(matches!(parse("complete_request", json!({"code": "x"})), Request::Malformed { .. }));
        assert!(matches!(parse("execute_request", json!({"code": 5})), Request::Malformed { .. }));
    }

    #[test]
    fn unknown_types_are_kept_by_name() {
        assert_eq!(parse("frobnicate_request", json!({})), Request::Unknown("frobnicate_request".into()));
        assert_eq!(Request::reply_type("kernel_info_request"), "kernel_info_reply");
    }

    #[test]
    fn client_headers_are_echoed_with_unknown_fields() {
        let sent = json!({"msg_id": "m1", "msg_type": "execute_request", "session": "s",
            "username": "u", "date": "not a date", "version": "5.4", "subshell_id": "x", "extra": [1, 2]});
        let raw = RawMessage {
            identities: vec![],
            header: sent.clone(),
            parent_header: json!({}),
            metadata: json!({}),
            content: json!({"code": "1"}),
            buffers: vec![],
        };
        let msg = Incoming::decode(raw).unwrap();
        assert_eq!(msg.msg_type(), "execute_request");
        assert_eq!(parent_json(&msg.parent()), sent);
        assert_eq!(parent_json(&None), json!({}));
        let no_type = RawMessage {
            identities: vec![],
            header: json!({"msg_id": "x"}),
            parent_header: json!({}),
            metadata: json!({}),
            content: json!({}),
            buffers: vec![],
        };
        assert!(Incoming::decode(no_type).is_err());
    }

    #[test]
    fn kernel_info_language_fields() {
        let v = Reply::KernelInfo(KernelInfoReply::new("1.95.0")).content().unwrap();
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
        let ok = Reply::Execute(ExecuteReply::ok(3)).content().unwrap();
        assert_eq!(ok, json!({"status": "ok", "execution_count": 3, "payload": [], "user_expressions": {}}));
        let err = Reply::failure("execute_request", 4, ErrorContent::new("panic", "boom"));
        assert_eq!(err.msg_type(), "execute_reply");
        assert_eq!(
            err.content().unwrap(),
            json!({"status": "error", "execution_count": 4, "ename": "panic", "evalue": "boom", "traceback": ["panic: boom"]})
        );
        let aborted = Reply::Execute(ExecuteReply::Aborted { execution_count: 2 });
        assert_eq!(aborted.content().unwrap(), json!({"status": "aborted", "execution_count": 2}));
        let other = Reply::failure("complete_request", 0, ErrorContent::new("KernelError", "x"));
        assert_eq!(other.msg_type(), "complete_reply");
        assert_eq!(other.content().unwrap()["status"], "error");
        let inc = Reply::IsComplete(IsComplete::Incomplete { indent: "    ".into() });
        assert_eq!(inc.content().unwrap(), json!({"status": "incomplete", "indent": "    "}));
        assert_eq!(Reply::IsComplete(IsComplete::Complete).content().unwrap(), json!({"status": "complete"}));
        let hist = Reply::History(HistoryReply {
            status: "ok",
            history: vec![HistoryEntry::Input(0, 1, "a".into()), HistoryEntry::WithOutput(0, 2, ("b".into(), None))],
        });
        assert_eq!(hist.content().unwrap()["history"], json!([[0, 1, "a"], [0, 2, ["b", null]]]));
    }

    #[test]
    fn iopub_contents() {
        let d = IopubContent::DisplayData(DisplayData {
            data: MimeBundle::new(),
            metadata: json!({}),
            transient: Transient::default(),
        });
        assert_eq!(d.content().unwrap(), json!({"data": {}, "metadata": {}, "transient": {}}));
        let s = IopubContent::status(ExecutionState::Busy);
        assert_eq!((s.msg_type(), s.content().unwrap()), ("status", json!({"execution_state": "busy"})));
    }
}
