// Shared by the build scripts that compile guest workspaces (first-party
// plugins for the host, test plugins for the end-to-end tests). Included with
// `#[path]` so both build the same way.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the cargo workspace at `manifest` for `wasm32-wasip2` (release) into
/// `<repo>/target/wasm`, and returns the folder holding the `.wasm` files.
pub fn build_guests(repo: &Path, manifest: &Path) -> PathBuf {
    let target_dir = repo.join("target").join("wasm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target=wasm32-wasip2")
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(repo);
    // The outer build's flags and jobserver settings are for the host target;
    // the guest build must not inherit them.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && key != "CARGO_HOME"
            || key == "RUSTFLAGS"
            || key == "RUSTC_WRAPPER"
            || key == "RUSTC_WORKSPACE_WRAPPER"
        {
            cmd.env_remove(&key);
        }
    }
    let status = cmd
        .status()
        .expect("failed to start cargo for the guest build");
    if !status.success() {
        panic!(
            "building the guest plugins in {} failed; if the target is missing, run `rustup target add wasm32-wasip2`",
            manifest.display()
        );
    }
    println!("cargo:rerun-if-changed={}", repo.join("wit").display());
    println!("cargo:rerun-if-changed={}", repo.join("sdk").display());
    println!(
        "cargo:rerun-if-changed={}",
        manifest.parent().expect("manifest has a folder").display()
    );
    target_dir.join("wasm32-wasip2").join("release")
}
