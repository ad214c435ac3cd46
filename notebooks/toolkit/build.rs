//! Records how the toolkit itself was compiled (opt level, rustc version) so that
//! `tb::Context` can report it honestly instead of guessing.

use std::process::Command;

fn main() {
    let opt = std::env::var("OPT_LEVEL").unwrap_or_default();
    println!("cargo:rustc-env=TB_OPT_LEVEL={opt}");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=TB_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-changed=build.rs");
}
