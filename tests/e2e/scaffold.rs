//! `keel new`: the project it writes in each language builds, installs and
//! passes its own test, as its author would run it.

use std::path::Path;
use std::process::Command;

use crate::harness::{artifacts, bin};

/// Makes `name` in `lang` with `keel new` and runs its `./test.sh`.
fn new_project_passes_its_test(lang: &str, name: &str, env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let made = Command::new(bin())
        .args(["new", "agent", name, "--lang", lang, "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "keel new --lang {lang}: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let project = dir.path().join(name);
    for file in ["keel.toml", "build.sh", "test.sh", "README.md"] {
        assert!(project.join(file).exists(), "{lang}: no {file}");
    }
    let test = Command::new(project.join("test.sh"))
        .env("KEEL", bin())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&test.stdout);
    assert!(
        test.status.success(),
        "{lang}: ./test.sh failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "ok: {name} built, installed, ran twice and kept one note"
        )),
        "{lang}: {stdout}"
    );
}

#[test]
fn a_new_python_agent_builds_and_passes_its_test() {
    new_project_passes_its_test(
        "python",
        "hello-py",
        &[("COMPONENTIZE_PY", artifacts::COMPONENTIZE_PY)],
    );
}

#[test]
fn a_new_javascript_agent_builds_and_passes_its_test() {
    // Its build.sh runs `npm ci` from the lockfile keel wrote.
    new_project_passes_its_test("js", "hello-js", &[]);
}

#[test]
fn a_new_c_agent_builds_and_passes_its_test() {
    let tools = Path::new(artifacts::C_TOOLS);
    let wit_bindgen = tools.join("wit-bindgen").display().to_string();
    let wasm_tools = tools.join("wasm-tools").display().to_string();
    new_project_passes_its_test(
        "c",
        "hello-c",
        &[("WIT_BINDGEN", &wit_bindgen), ("WASM_TOOLS", &wasm_tools)],
    );
}

#[test]
fn a_new_rust_agent_builds_and_passes_its_test() {
    // The plugins' target folder, so the SDK's dependencies build once.
    let target = Path::new(artifacts::PLUGINS_DIR)
        .join("../target/wasm")
        .display()
        .to_string();
    new_project_passes_its_test("rust", "hello-rs", &[("CARGO_TARGET_DIR", &target)]);
}

#[test]
fn keel_new_refuses_a_bad_name_and_an_existing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        Command::new(bin())
            .args(["new", "agent", name, "--lang", "python", "--dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let bad = run("Bad_Name");
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("cannot be a plugin id"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(run("fine").status.success());
    let again = run("fine");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}
