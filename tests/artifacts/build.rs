//! Builds the hostile and helper test plugins in `tests/plugins` (Rust),
//! `tests/plugins-py` (Python, with componentize-py from
//! `scripts/setup --python-guest`), `tests/plugins-js` (JavaScript, with
//! jco from `scripts/setup --js-guest`) and `tests/plugins-c` (C, with
//! Debian's clang, wit-bindgen and wasm-tools from `scripts/setup
//! --c-guest`) once per test run and
//! writes their paths into a generated module.

#[path = "../../host/guest_build.rs"]
mod guest_build;

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    let venv = toolchain(
        repo,
        "componentize-py",
        &["guest-python.txt"],
        "--python-guest",
    );
    let jco = toolchain(
        repo,
        "jco",
        &["guest-js/package.json", "guest-js/package-lock.json"],
        "--js-guest",
    );
    let componentize_py = venv.join("bin").join("componentize-py");
    let jco = jco.join("node_modules").join(".bin").join("jco");
    writeln!(
        code,
        "/// componentize-py, as `scripts/setup --python-guest` installed it."
    )
    .unwrap();
    writeln!(
        code,
        "pub const COMPONENTIZE_PY: &str = {:?};",
        componentize_py.display().to_string()
    )
    .unwrap();
    let c_tools = toolchain(repo, "c-tools", &["guest-c.txt"], "--c-guest").join("bin");
    writeln!(
        code,
        "/// wit-bindgen and wasm-tools, as `scripts/setup --c-guest` installed them."
    )
    .unwrap();
    writeln!(
        code,
        "pub const C_TOOLS: &str = {:?};",
        c_tools.display().to_string()
    )
    .unwrap();
    let python = python_guests(repo, &componentize_py);
    let js = js_guests(repo, &jco);
    let c = c_guests(repo, &c_tools);
    for (lang, guests) in [("Python", python), ("JavaScript", js), ("C", c)] {
        for (name, dir) in guests {
            let konst = name.to_uppercase().replace('-', "_");
            writeln!(
                code,
                "/// The `{name}` {lang} test plugin's folder (holds its keel.toml)."
            )
            .unwrap();
            writeln!(
                code,
                "pub const {konst}_DIR: &str = {:?};",
                dir.display().to_string()
            )
            .unwrap();
        }
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

/// The cache folder of a toolchain set up by `scripts/setup FLAG`, named
/// `PREFIX-HASH` by the first 12 hex digits of the sha256 of `pins`.
fn toolchain(repo: &Path, prefix: &str, pins: &[&str], flag: &str) -> PathBuf {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    for pin in pins {
        let path = repo.join("scripts").join(pin);
        println!("cargo:rerun-if-changed={}", path.display());
        hasher.update(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    }
    let hash = hex::encode(hasher.finalize());
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache")
        });
    let dir = cache.join("keel").join(format!("{prefix}-{}", &hash[..12]));
    assert!(
        dir.join("ready").exists(),
        "the {prefix} plugin toolchain is missing; install it with `scripts/setup {flag}`"
    );
    dir
}

/// Builds each plugin folder in `folders` that holds `module` with
/// `build(name, folder, wasm)` into `target/wasm/OUT/NAME.wasm`; their names
/// and folders.
fn guests(
    repo: &Path,
    folders: &[&str],
    module: &str,
    out: &str,
    build: impl Fn(&str, &Path, &Path),
) -> Vec<(String, PathBuf)> {
    println!("cargo:rerun-if-changed={}", repo.join("wit").display());
    let out = repo.join("target").join("wasm").join(out);
    std::fs::create_dir_all(&out).expect("create the guests' output folder");
    let mut built = Vec::new();
    for folder in folders {
        let plugins = repo.join(folder);
        println!("cargo:rerun-if-changed={}", plugins.display());
        for name in plugin_names(&plugins) {
            let dir = plugins.join(&name);
            if !dir.join(module).exists() {
                continue;
            }
            println!("cargo:rerun-if-changed={}", dir.join(module).display());
            let wasm = out.join(format!("{}.wasm", name.replace('-', "_")));
            build(&name, &dir, &wasm);
            built.push((name, dir));
        }
    }
    built
}

/// Runs `command` in `dir`, which builds the plugin there.
fn run(mut command: Command, dir: &Path) {
    let status = command
        .current_dir(dir)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        status.success(),
        "could not build {}: {command:?}",
        dir.display()
    );
}

/// Each Python plugin (module `app.py`) in `tests/plugins-py` and the
/// first-party `plugins`, built with componentize-py.
fn python_guests(repo: &Path, tool: &Path) -> Vec<(String, PathBuf)> {
    guests(
        repo,
        &["tests/plugins-py", "plugins"],
        "app.py",
        "python",
        |name, dir, wasm| {
            let mut c = Command::new(tool);
            c.args(["-d", "wit", "-w", name, "componentize", "app", "-o"])
                .arg(wasm);
            run(c, dir);
        },
    )
}

/// Each JavaScript plugin (module `app.js`) in `tests/plugins-js` and the
/// first-party `plugins`, built with jco; `wasi:http` (for `fetch`) only
/// for a plugin whose manifest asks for endpoints, since keel refuses the
/// import from any other.
fn js_guests(repo: &Path, jco: &Path) -> Vec<(String, PathBuf)> {
    guests(
        repo,
        &["tests/plugins-js", "plugins"],
        "app.js",
        "js",
        |name, dir, wasm| {
            let mut c = Command::new(jco);
            c.args([
                "componentize",
                "app.js",
                "--wit",
                "wit",
                "--world-name",
                name,
            ])
            .args(["-d", "fetch-event"]);
            let manifest = std::fs::read_to_string(dir.join("keel.toml")).unwrap_or_default();
            if !manifest.contains("[capabilities.endpoints]") {
                c.args(["-d", "http"]);
            }
            c.arg("-o").arg(wasm);
            run(c, dir);
        },
    )
}

/// Each C plugin (sources `*.c`, `app.c` among them) in `tests/plugins-c`
/// and the first-party `plugins`, built as a `keel new --lang c` project's
/// build.sh builds it: bindings for its manifest's world in `wit/` by
/// wit-bindgen, Debian's clang, then a component with the WASI reactor
/// adapter by wasm-tools (`tools`, from `scripts/setup --c-guest`). Its
/// bindings and core module stay in `target/wasm/c/NAME/`.
fn c_guests(repo: &Path, tools: &Path) -> Vec<(String, PathBuf)> {
    let clang = Command::new(CLANG).arg("--version").output();
    assert!(
        clang.is_ok_and(|o| o.status.success()),
        "the C plugin toolchain is missing; install it with `scripts/setup --c-guest`"
    );
    let adapter = repo.join("target/wasm/c/wasi_snapshot_preview1.reactor.wasm");
    std::fs::create_dir_all(adapter.parent().unwrap()).expect("create the C output folder");
    std::fs::write(
        &adapter,
        wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
    )
    .expect("write the WASI reactor adapter");
    guests(
        repo,
        &["tests/plugins-c", "plugins"],
        "app.c",
        "c",
        |_, dir, wasm| {
            let work = wasm.with_extension("");
            std::fs::create_dir_all(&work).expect("create the C plugin's build folder");
            let world = manifest_world(dir);
            let mut bindings = Command::new(tools.join("wit-bindgen"));
            bindings
                .args(["c", "wit", "--world", &world, "--out-dir"])
                .arg(&work);
            run(bindings, dir);
            let mut sources: Vec<PathBuf> = std::fs::read_dir(dir)
                .expect("read the C plugin's folder")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "c"))
                .collect();
            sources.sort();
            let generated = world.replace('-', "_");
            let core = work.join("core.wasm");
            let mut compile = Command::new(CLANG);
            compile
                .args(C_FLAGS)
                .arg("-I")
                .arg(&work)
                .args(&sources)
                .arg(work.join(format!("{generated}.c")))
                .arg(work.join(format!("{generated}_component_type.o")))
                .arg("-o")
                .arg(&core);
            run(compile, dir);
            let mut component = Command::new(tools.join("wasm-tools"));
            component
                .args(["component", "new"])
                .arg(&core)
                .arg("--adapt")
                .arg(format!("wasi_snapshot_preview1={}", adapter.display()))
                .arg("-o")
                .arg(wasm);
            run(component, dir);
        },
    )
}

/// The compiler and its flags for a C plugin: a WASI reactor (no `main`,
/// the host calls its exports), warnings as errors, small, no debug info.
const CLANG: &str = "clang-14";
const C_FLAGS: &[&str] = &[
    "--target=wasm32-wasi",
    "-mexec-model=reactor",
    "-Os",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wl,--strip-debug",
];

/// The world `dir/keel.toml` names.
fn manifest_world(dir: &Path) -> String {
    let manifest = std::fs::read_to_string(dir.join("keel.toml")).expect("read keel.toml");
    let manifest: toml::Table = toml::from_str(&manifest).expect("keel.toml is TOML");
    manifest["plugin"]["world"]
        .as_str()
        .expect("keel.toml names its world")
        .to_string()
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
