//! Builds the hostile and helper test plugins in `tests/plugins` once per
//! test run and writes their paths into a generated module.

#[path = "../../host/guest_build.rs"]
mod guest_build;

use std::fmt::Write;
use std::path::Path;

fn main() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = here
        .parent()
        .and_then(Path::parent)
        .expect("tests/artifacts sits two levels down");
    let plugins = repo.join("tests").join("plugins");
    let out = guest_build::build_guests(repo, &plugins.join("Cargo.toml"));
    let mut code = String::new();
    let mut names: Vec<String> = std::fs::read_dir(&plugins)
        .expect("tests/plugins exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("keel.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let wasm = out.join(format!("keel_test_{}.wasm", name.replace('-', "_")));
        assert!(
            wasm.exists(),
            "guest build did not produce {}",
            wasm.display()
        );
        let konst = name.to_uppercase().replace('-', "_");
        writeln!(
            code,
            "/// The `{name}` test plugin's folder (holds its keel.toml)."
        )
        .unwrap();
        writeln!(
            code,
            "pub const {konst}_DIR: &str = {:?};",
            plugins.join(&name).display().to_string()
        )
        .unwrap();
        writeln!(code, "/// The `{name}` test plugin's component.").unwrap();
        writeln!(
            code,
            "pub const {konst}_WASM: &str = {:?};",
            wasm.display().to_string()
        )
        .unwrap();
    }
    writeln!(code, "/// The first-party plugins' folder.").unwrap();
    writeln!(
        code,
        "pub const PLUGINS_DIR: &str = {:?};",
        repo.join("plugins").display().to_string()
    )
    .unwrap();
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("artifacts.rs");
    std::fs::write(dest, code).expect("write artifacts.rs");
}
