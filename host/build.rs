//! Builds the first-party plugins so `keel demo` and `keel bench` carry them.

#[path = "guest_build.rs"]
mod guest_build;

use std::path::Path;

fn main() {
    let host = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = host.parent().expect("host/ sits in the repository");
    let out = guest_build::build_guests(repo, &repo.join("plugins").join("Cargo.toml"));
    for name in [
        "files",
        "todo",
        "bench",
        "outbox_file",
        "planner",
        "executor",
        "triage",
    ] {
        let wasm = out.join(format!("keel_plugin_{name}.wasm"));
        assert!(
            wasm.exists(),
            "guest build did not produce {}",
            wasm.display()
        );
        println!(
            "cargo:rustc-env=KEEL_PLUGIN_{}_WASM={}",
            name.to_uppercase(),
            wasm.display()
        );
    }
}
