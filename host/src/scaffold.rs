//! `keel new`: a plugin project to start from, per language — a manifest,
//! the WIT, the handler, a build script and a test that builds, installs
//! and runs it in a fresh home. The templates are in `scaffold/`; a Rust
//! project also gets the Rust SDK this keel carries ([`sdk`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

mod sdk;

/// The languages `keel new` writes projects in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
    C,
}

/// The contract, as this keel speaks it.
const HOST_WIT: &str = include_str!("../../wit/host.wit");
/// The componentize-py pin of the Python toolchain keel is tested with.
const GUEST_PYTHON: &str = include_str!("../../scripts/guest-python.txt");
/// The JavaScript toolchain keel is tested with, pinned to the byte.
const GUEST_JS_LOCK: &str = include_str!("../../scripts/guest-js/package-lock.json");

/// The C tools' pins (`NAME@VERSION` lines) keel is tested with.
const GUEST_C: &str = include_str!("../../scripts/guest-c.txt");

/// `(path in the project, template, executable)`.
type File = (&'static str, &'static str, bool);

const COMMON: &[File] = &[
    (
        "keel.toml",
        include_str!("scaffold/common/keel.toml"),
        false,
    ),
    ("test.sh", include_str!("scaffold/common/test.sh"), true),
    (
        ".gitignore",
        include_str!("scaffold/common/gitignore"),
        false,
    ),
];
const PYTHON: &[File] = &[
    ("app.py", include_str!("scaffold/python/app.py"), false),
    ("build.sh", include_str!("scaffold/python/build.sh"), true),
    (
        "wit/world.wit",
        include_str!("scaffold/common/world.wit"),
        false,
    ),
];
const JS: &[File] = &[
    ("app.js", include_str!("scaffold/js/app.js"), false),
    ("build.sh", include_str!("scaffold/js/build.sh"), true),
    (
        "wit/world.wit",
        include_str!("scaffold/common/world.wit"),
        false,
    ),
];
const C: &[File] = &[
    ("app.c", include_str!("scaffold/c/app.c"), false),
    ("keel_json.h", include_str!("scaffold/c/keel_json.h"), false),
    ("build.sh", include_str!("scaffold/c/build.sh"), true),
];
const RUST: &[File] = &[
    (
        "Cargo.toml",
        include_str!("scaffold/rust/Cargo.toml"),
        false,
    ),
    ("src/lib.rs", include_str!("scaffold/rust/lib.rs"), false),
    ("build.sh", include_str!("scaffold/rust/build.sh"), true),
];

/// The version componentize-py is pinned to in `scripts/guest-python.txt`.
fn componentize_py_version() -> &'static str {
    GUEST_PYTHON
        .lines()
        .find_map(|l| l.trim().strip_prefix("componentize-py=="))
        .and_then(|rest| rest.split([' ', '\\', ';']).next())
        .unwrap_or("0.25.1")
}

/// The version of the C tool `name` pinned in `scripts/guest-c.txt`.
fn c_tool_version(name: &str) -> &'static str {
    GUEST_C
        .lines()
        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix('@'))
        .unwrap_or("")
}

/// The project's `package.json`: jco exactly as keel's own toolchain has it.
fn package_json(name: &str) -> String {
    let jco = serde_json::from_str::<serde_json::Value>(GUEST_JS_LOCK)
        .ok()
        .and_then(|lock| {
            lock["packages"][""]["dependencies"]["@bytecodealliance/jco"]
                .as_str()
                .map(String::from)
        })
        .unwrap_or_else(|| "1.34.0".into());
    let value = serde_json::json!({
        "name": name,
        "private": true,
        "type": "module",
        "scripts": { "build": "./build.sh", "test": "./test.sh" },
        "dependencies": { "@bytecodealliance/jco": jco },
    });
    format!("{:#}\n", value)
}

/// The project's `package-lock.json`: keel's own, under the project's name.
fn package_lock(name: &str) -> anyhow::Result<String> {
    let mut lock: serde_json::Value =
        serde_json::from_str(GUEST_JS_LOCK).context("keel's JavaScript lockfile is not JSON")?;
    lock["name"] = name.into();
    lock["packages"][""]["name"] = name.into();
    Ok(format!("{:#}\n", lock))
}

fn fill(template: &str, name: &str, sdk: &str) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{crate}}", &name.replace('-', "_"))
        .replace("{{sdk}}", sdk)
        .replace("{{componentize_py}}", componentize_py_version())
        .replace("{{wit_bindgen}}", c_tool_version("wit-bindgen-cli"))
        .replace("{{wasm_tools}}", c_tool_version("wasm-tools"))
}

/// Writes a new agent project `name` in `lang` as `parent/name` and
/// returns its folder. A Rust project depends on the SDK at `sdk` (keel's
/// `sdk` folder) when given, else on the copy written into it. Nothing is
/// left behind when it fails.
pub fn new_agent(
    parent: &Path,
    name: &str,
    lang: Lang,
    sdk: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    if !crate::manifest::valid_id(name) {
        bail!(
            "`{name}` cannot be a plugin id; use a-z, 0-9 and `-`, starting with a letter (at most 64)"
        );
    }
    let dest = parent.join(name);
    if dest.exists() {
        bail!(
            "{} already exists; pick another name or remove it",
            dest.display()
        );
    }
    let sdk = match (lang, sdk) {
        (Lang::Rust, Some(sdk)) => Some(given_sdk(sdk)?),
        _ => None,
    };
    write_staged(parent, name, &dest, &files(name, lang, sdk.as_deref())?)?;
    Ok(dest)
}

/// The path a Rust project's Cargo.toml names for keel's `sdk` folder
/// given with `--sdk`.
fn given_sdk(sdk: &Path) -> anyhow::Result<String> {
    if !sdk.join("agent/Cargo.toml").exists() {
        bail!(
            "{} is not keel's sdk folder (it has no agent/Cargo.toml); pass --sdk PATH to it",
            sdk.display()
        );
    }
    Ok(sdk
        .canonicalize()
        .unwrap_or_else(|_| sdk.to_path_buf())
        .display()
        .to_string()
        .replace('\\', "/"))
}

/// `(path in the project, contents, executable)`.
type Output = (String, Vec<u8>, bool);

/// The project's files: the templates filled in, and what the language's
/// toolchain needs beside them. `sdk` is the Rust SDK given with `--sdk`.
fn files(name: &str, lang: Lang, sdk: Option<&str>) -> anyhow::Result<Vec<Output>> {
    let sdk_path = match lang {
        Lang::Rust => sdk.unwrap_or(sdk::DIR),
        _ => "",
    };
    let mut files: Vec<Output> = COMMON
        .iter()
        .chain(match lang {
            Lang::Rust => RUST,
            Lang::Python => PYTHON,
            Lang::Js => JS,
            Lang::C => C,
        })
        .map(|(path, text, exec)| (path.to_string(), fill(text, name, sdk_path).into(), *exec))
        .collect();
    match lang {
        // The SDK this keel carries, unless another was given, and the WIT
        // it binds.
        Lang::Rust if sdk.is_none() => {
            for (path, text) in sdk::FILES {
                files.push((
                    format!("{}/{path}", sdk::DIR),
                    text.as_bytes().to_vec(),
                    false,
                ));
            }
            files.push((sdk::WIT.into(), HOST_WIT.into(), false));
        }
        Lang::Rust => {}
        // C's bindings import only what the code calls: keel's own world.
        Lang::C => {
            files.push(("wit/host.wit".into(), HOST_WIT.into(), false));
            files.push((
                "wasi_snapshot_preview1.reactor.wasm".into(),
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER
                    .to_vec(),
                false,
            ));
        }
        Lang::Python | Lang::Js => {
            files.push(("wit/deps/keel-host/host.wit".into(), HOST_WIT.into(), false))
        }
    }
    if lang == Lang::Js {
        files.push(("package.json".into(), package_json(name).into(), false));
        files.push((
            "package-lock.json".into(),
            package_lock(name)?.into(),
            false,
        ));
    }
    files.push((
        "README.md".into(),
        readme(name, lang, sdk.is_none()).into(),
        false,
    ));
    Ok(files)
}

/// Writes `files` in a staging folder beside `dest`, then renames it to
/// `dest`, so a failure leaves nothing half-made.
fn write_staged(parent: &Path, name: &str, dest: &Path, files: &[Output]) -> anyhow::Result<()> {
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let stage = tempfile::Builder::new()
        .prefix(&format!(".{name}-"))
        .tempdir_in(parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    for (path, text, exec) in files {
        let file = stage.path().join(path);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
        if *exec {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    let staged = stage.keep();
    if let Err(e) = std::fs::rename(&staged, dest) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(e).with_context(|| format!("cannot create {}", dest.display()));
    }
    Ok(())
}

/// The project's README; `sdk_inside` when the Rust SDK was written into it.
fn readme(name: &str, lang: Lang, sdk_inside: bool) -> String {
    let (handler, toolchain) = match lang {
        Lang::Rust => (
            "src/lib.rs",
            "cargo with the wasm32-wasip2 target (build.sh adds it with rustup)",
        ),
        Lang::Python => (
            "app.py",
            "componentize-py (pip install componentize-py, or COMPONENTIZE_PY=/path/to/it)",
        ),
        Lang::Js => (
            "app.js",
            "Node.js 20 and npm; build.sh installs jco from package-lock.json",
        ),
        Lang::C => (
            "app.c",
            "Debian's clang 14, wit-bindgen and wasm-tools (build.sh says how to install each)",
        ),
    };
    let wit = match lang {
        Lang::Rust if sdk_inside => {
            "The Rust SDK (keel-agent) brings the WIT and imports only what the code uses. `keel new` wrote the SDK of the keel that made the project into `keel-sdk/`, with the WIT it binds in `wit/host.wit`; keep both with the project, or point `Cargo.toml` at another copy of keel's `sdk` folder."
        }
        Lang::Rust => {
            "The Rust SDK (keel-agent) brings the WIT and imports only what the code uses."
        }
        Lang::C => {
            "The bindings are generated for keel's own `agent` world in `wit/host.wit`, and the component imports only the host functions the code calls; keel refuses to install one that calls beyond what keel.toml grants, so grow keel.toml with the code. `keel_json.h` reads and writes the JSON of inputs and bodies; `wasi_snapshot_preview1.reactor.wasm` is the WASI adapter of the wasmtime keel runs on."
        }
        Lang::Python | Lang::Js => {
            "`wit/world.wit` imports only the interfaces keel.toml grants; keel refuses to install a component that imports more, so add an import when you add a capability."
        }
    };
    format!(
        "# {name}\n\n\
         A keel agent: given `{{\"title\": TITLE, \"text\": TEXT}}`, it keeps one\n\
         `core/note` per title (identity `(\"{name}\", TITLE)`).\n\n\
         - `{handler}`: the handler.\n\
         - `keel.toml`: what it may read, write and call, and its limits.\n\
         - `./build.sh`: builds `build/{}.wasm` with {toolchain}.\n\
         - `./test.sh`: builds, installs into a fresh keel home, runs it twice and\n  \
           checks it kept one note (`KEEL=/path/to/keel` if keel is not on the PATH).\n\n\
         {wit}\n\n\
         ```sh\n\
         ./build.sh\n\
         keel plugin install . --yes\n\
         keel run {name} --input '{{\"title\": \"Hello\", \"text\": \"first note\"}}'\n\
         keel audit --plugin {name}\n\
         ```\n",
        name.replace('-', "_")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled_in_every_language() {
        let dir = tempfile::tempdir().unwrap();
        for (lang, name) in [
            (Lang::Rust, "my-rust"),
            (Lang::Python, "my-py"),
            (Lang::Js, "my-js"),
            (Lang::C, "my-c"),
        ] {
            let made = new_agent(dir.path(), name, lang, None).unwrap();
            for entry in walk(&made) {
                if entry.extension().is_some_and(|x| x == "wasm") {
                    continue;
                }
                let text = std::fs::read_to_string(&entry).unwrap();
                for placeholder in [
                    "{{name}}",
                    "{{crate}}",
                    "{{sdk}}",
                    "{{componentize_py}}",
                    "{{wit_bindgen}}",
                    "{{wasm_tools}}",
                ] {
                    assert!(
                        !text.contains(placeholder),
                        "{} keeps {placeholder}",
                        entry.display()
                    );
                }
            }
            let manifest = std::fs::read_to_string(made.join("keel.toml")).unwrap();
            crate::manifest::Manifest::parse(&manifest, "keel.toml")
                .unwrap_or_else(|e| panic!("{name}'s keel.toml: {e}"));
        }
        let lock = std::fs::read_to_string(dir.path().join("my-js/package-lock.json")).unwrap();
        assert!(lock.contains("\"name\": \"my-js\""));
        for version in [
            componentize_py_version(),
            c_tool_version("wit-bindgen-cli"),
            c_tool_version("wasm-tools"),
        ] {
            assert!(version.split('.').count() == 3, "{version:?}");
        }
    }

    #[test]
    fn a_rust_project_carries_the_sdk_and_its_wit_unless_one_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let made = new_agent(dir.path(), "carried", Lang::Rust, None).unwrap();
        for file in [
            "keel-sdk/Cargo.toml",
            "keel-sdk/agent/Cargo.toml",
            "wit/host.wit",
        ] {
            assert!(made.join(file).exists(), "no {file}");
        }
        let cargo = std::fs::read_to_string(made.join("Cargo.toml")).unwrap();
        assert!(cargo.contains(r#"path = "keel-sdk/agent""#), "{cargo}");

        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
        let made = new_agent(dir.path(), "given", Lang::Rust, Some(&sdk)).unwrap();
        assert!(!made.join("keel-sdk").exists());
        let cargo = std::fs::read_to_string(made.join("Cargo.toml")).unwrap();
        let sdk = sdk.canonicalize().unwrap();
        assert!(
            cargo.contains(&format!("{}/agent", sdk.display())),
            "{cargo}"
        );
    }

    #[test]
    fn a_bad_name_or_an_existing_folder_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let err = new_agent(dir.path(), "My Agent", Lang::Python, None).unwrap_err();
        assert!(err.to_string().contains("cannot be a plugin id"), "{err}");
        std::fs::create_dir(dir.path().join("taken")).unwrap();
        let err = new_agent(dir.path(), "taken", Lang::Js, None).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        let err = new_agent(dir.path(), "rusty", Lang::Rust, Some(dir.path())).unwrap_err();
        assert!(
            err.to_string().contains("is not keel's sdk folder"),
            "{err}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the folder made by the test: {left:?}");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }
}
