//! The kernel log (env_logger, THREADBOOK_LOG), on the kernel's stderr —
//! the frontend's terminal or log, which `jupyter console` shares with the
//! learner: only warnings and errors by default (`THREADBOOK_LOG=info` or
//! `debug` for more).

pub fn init() {
    let env = env_logger::Env::new()
        .filter_or("THREADBOOK_LOG", "warn")
        .write_style("THREADBOOK_LOG_STYLE");
    let _ = env_logger::Builder::from_env(env).try_init();
}
