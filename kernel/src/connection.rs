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

    /// What is risky about this connection, one sentence each, for the log
    /// at start: an empty key turns signing off (anyone who can reach a port
    /// runs code), and a tcp address that is not loopback is reachable from
    /// other machines.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.key.is_empty() {
            out.push(
                "the connection file's key is empty: messages are neither signed nor checked, \
                 so anyone who can reach the kernel's ports can run code"
                    .to_owned(),
            );
        }
        if self.transport == "tcp" && !is_loopback(&self.ip) {
            out.push(format!(
                "the kernel listens on {}, not a loopback address: it can be reached from other machines",
                self.ip
            ));
        }
        out
    }

    /// The socket files of an ipc connection (none for tcp), to remove at exit.
    pub fn ipc_paths(&self) -> Vec<std::path::PathBuf> {
        if self.transport != "ipc" {
            return Vec::new();
        }
        [self.shell_port, self.iopub_port, self.stdin_port, self.control_port, self.hb_port]
            .iter()
            .map(|port| std::path::PathBuf::from(format!("{}-{}", self.ip, port)))
            .collect()
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

fn is_loopback(ip: &str) -> bool {
    match ip.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        Ok(addr) => addr.is_loopback(),
        Err(_) => ip.eq_ignore_ascii_case("localhost"),
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

    #[test]
    fn risky_connections_are_named() {
        let safe = info(&format!("{{{BASE}}}")).unwrap();
        assert!(safe.warnings().is_empty());
        let open = info(&format!("{{{}}}", BASE.replace("127.0.0.1", "0.0.0.0"))).unwrap();
        assert!(open.warnings()[0].contains("0.0.0.0"), "{:?}", open.warnings());
        let unsigned = info(&format!("{{{}}}", BASE.replace("\"key\": \"k\"", "\"key\": \"\""))).unwrap();
        assert!(unsigned.warnings()[0].contains("key is empty"));
        for ip in ["127.0.0.1", "127.5.5.5", "::1", "localhost"] {
            assert!(is_loopback(ip), "{ip}");
        }
        for ip in ["0.0.0.0", "*", "192.168.1.2", "example.org"] {
            assert!(!is_loopback(ip), "{ip}");
        }
    }

    #[test]
    fn ipc_paths_follow_the_endpoints() {
        let ipc = info(&format!("{{{BASE}, \"transport\": \"ipc\"}}")).unwrap();
        let paths = ipc.ipc_paths();
        assert_eq!(paths.len(), 5);
        assert_eq!(format!("ipc://{}", paths[0].display()), ipc.endpoint(1));
        assert!(info(&format!("{{{BASE}}}")).unwrap().ipc_paths().is_empty());
    }
}
