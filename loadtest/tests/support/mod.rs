//! What the integration tests of the load generator share.
//!
//! The `depot` binary belongs to another package, so `CARGO_BIN_EXE_depot` is not available
//! here: it is built with `cargo build -p depot --bin depot` and its path taken from cargo's
//! artifact message. `LOADTEST_DEPOT_BIN` overrides that with a ready binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Builds `depot` once (a no-op when it is fresh) and returns the executable's path.
pub(crate) fn depot_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("LOADTEST_DEPOT_BIN") {
                return PathBuf::from(path);
            }
            let cargo = std::env::var("CARGO")
                .ok()
                .or_else(|| option_env!("CARGO").map(str::to_owned))
                .unwrap_or_else(|| "cargo".to_owned());
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
            let output = Command::new(cargo)
                .current_dir(workspace)
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "depot",
                    "--bin",
                    "depot",
                    "--message-format=json",
                ])
                .stderr(Stdio::inherit())
                .output()
                .expect("run cargo build -p depot");
            assert!(output.status.success(), "cargo build -p depot failed");
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter(|msg| {
                    msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "depot"
                })
                .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
                .expect("cargo reported no depot executable")
        })
        .clone()
}
