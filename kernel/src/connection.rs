//! The connection file a frontend writes before starting the kernel.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
pub struct ConnectionInfo {
    #[serde(default = "default_transport")]
    pub transport: String,
    pub ip: String,
    pub shell_port: u16,
    pub iopub_port: u16,
    pub stdin_port: u16,
    pub control_port: u16,
    pub hb_port: u16,
    #[serde(default)]
    pub key: String,
    #[serde(default = "default_scheme")]
    pub signature_scheme: String,
}

fn default_transport() -> String {
    "tcp".into()
}

fn default_scheme() -> String {
    "hmac-sha256".into()
}

impl ConnectionInfo {
    pub fn from_file(path: &Path) -> Result<ConnectionInfo> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read connection file {}", path.display()))?;
        let info: ConnectionInfo = serde_json::from_str(&text)
            .with_context(|| format!("connection file {} is not valid", path.display()))?;
        info.validate()?;
        Ok(info)
    }

    pub fn validate(&self) -> Result<()> {
        if self.signature_scheme != "hmac-sha256" {
            bail!(
                "unsupported signature_scheme {:?}: threadbook signs messages with hmac-sha256 only",
                self.signature_scheme
            );
        }
        if self.transport != "tcp" && self.transport != "ipc" {
            bail!("unsupported transport {:?}: use tcp or ipc", self.transport);
        }
        Ok(())
    }

    /// The ZeroMQ endpoint for a port: `tcp://ip:port`, or `ipc://ip-port`
    /// as jupyter_client names ipc sockets.
    pub fn endpoint(&self, port: u16) -> String {
        match self.transport.as_str() {
            "ipc" => format!("ipc://{}-{}", self.ip, port),
            _ => format!("tcp://{}:{}", self.ip, port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(json: &str) -> Result<ConnectionInfo> {
        let c: ConnectionInfo = serde_json::from_str(json)?;
        c.validate()?;
        Ok(c)
    }

    const BASE: &str = r#""ip": "127.0.0.1", "shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5, "key": "k""#;

    #[test]
    fn endpoints_for_both_transports() {
        let tcp = info(&format!("{{{BASE}, \"transport\": \"tcp\"}}")).unwrap();
        assert_eq!(tcp.endpoint(5), "tcp://127.0.0.1:5");
        let ipc = info(&format!("{{{BASE}, \"transport\": \"ipc\"}}")).unwrap();
        assert_eq!(ipc.endpoint(1), "ipc://127.0.0.1-1");
    }

    #[test]
    fn other_signature_schemes_are_refused_clearly() {
        let err = info(&format!("{{{BASE}, \"signature_scheme\": \"hmac-md5\"}}")).unwrap_err();
        assert!(err.to_string().contains("hmac-md5"), "{err}");
        assert!(info(&format!("{{{BASE}}}")).is_ok(), "scheme defaults to hmac-sha256");
    }
}
