//! Builds the hostile and helper test plugins in `tests/plugins` (Rust) and
//! `tests/plugins-py` (Python, with componentize-py from
//! `scripts/setup --python-guest`) once per test run and writes their paths
//! into a generated module.

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
    for name in plugin_names(&plugins) {
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
    for (name, dir) in python_guests(repo) {
        let konst = name.to_uppercase().replace('-', "_");
        writeln!(
            code,
            "/// The `{name}` Python test plugin's folder (holds its keel.toml)."
        )
        .unwrap();
        writeln!(
            code,
            "pub const {konst}_DIR: &str = {:?};",
            dir.display().to_string()
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

/// Builds each `tests/plugins-py/NAME` (module `app.py`, its own world
/// `NAME` in `wit/`) into `target/wasm/python/NAME.wasm`; their names and
/// folders.
fn python_guests(repo: &Path) -> Vec<(String, std::path::PathBuf)> {
    let plugins = repo.join("tests").join("plugins-py");
    let req = repo.join("scripts").join("guest-python.txt");
    println!("cargo:rerun-if-changed={}", plugins.display());
    println!("cargo:rerun-if-changed={}", req.display());
    println!("cargo:rerun-if-changed={}", repo.join("wit").display());
    let hash = {
        use sha2::Digest as _;
        let bytes = std::fs::read(&req).expect("scripts/guest-python.txt exists");
        hex::encode(sha2::Sha256::digest(bytes))
    };
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache")
        });
    let venv = cache
        .join("keel")
        .join(format!("componentize-py-{}", &hash[..12]));
    let tool = venv.join("bin").join("componentize-py");
    assert!(
        venv.join("ready").exists(),
        "the Python plugin toolchain is missing; install it with `scripts/setup --python-guest`"
    );
    let out = repo.join("target").join("wasm").join("python");
    std::fs::create_dir_all(&out).expect("create target/wasm/python");
    let mut built = Vec::new();
    for name in plugin_names(&plugins) {
        let dir = plugins.join(&name);
        let wasm = out.join(format!("{}.wasm", name.replace('-', "_")));
        let status = std::process::Command::new(&tool)
            .current_dir(&dir)
            .args(["-d", "wit", "-w", &name, "componentize", "app", "-o"])
            .arg(&wasm)
            .status()
            .expect("componentize-py runs");
        assert!(
            status.success(),
            "componentize-py could not build {}",
            dir.display()
        );
        built.push((name, dir));
    }
    built
}

/// The folders in `dir` that hold a plugin (a keel.toml), sorted.
fn plugin_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("keel.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
