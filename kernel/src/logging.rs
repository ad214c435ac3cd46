//! The kernel log (env_logger, RUST_LOG / THREADBOOK_LOG). It goes to the
//! kernel's stderr — the frontend's terminal or log — through a sink that
//! can be pointed elsewhere when stderr itself is rerouted.

use std::io::Write;
use std::sync::Mutex;

static SINK: Mutex<Option<std::fs::File>> = Mutex::new(None);

struct Sink;

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut *SINK.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(f) => f.write(buf),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut *SINK.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(f) => f.flush(),
            None => std::io::stderr().flush(),
        }
    }
}

pub fn init() {
    let env = env_logger::Env::new()
        .filter_or("THREADBOOK_LOG", "info")
        .write_style("THREADBOOK_LOG_STYLE");
    let _ = env_logger::Builder::from_env(env)
        .target(env_logger::Target::Pipe(Box::new(Sink)))
        .try_init();
}

/// Sends the log to `file` from now on (None: back to stderr).
pub fn redirect(file: Option<std::fs::File>) {
    *SINK.lock().unwrap_or_else(|p| p.into_inner()) = file;
}
