//! Install refuses what it cannot trust, with one clear sentence, and leaves
//! nothing behind.

use std::path::Path;

use crate::harness::{Keel, artifacts, manifest_without, plugin_dir};

fn nothing_installed(keel: &Keel) {
    assert_eq!(keel.json(&["plugin", "list"]), serde_json::json!([]));
    let leftovers: Vec<_> = std::fs::read_dir(keel.home().join("plugins"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn with_manifest(keel: &Keel, text: &str) -> String {
    let dir = keel.folder("bad");
    std::fs::write(dir.join("keel.toml"), text).unwrap();
    dir.display().to_string()
}

#[test]
fn malformed_manifest_names_field_and_line() {
    let keel = Keel::new();
    let dir = with_manifest(
        &keel,
        "[plugin]\nid = \"x\"\nversion = \"0.1.0\"\nworld = \"agent\"\n\n[capabilities]\nreed = [\"core/note\"]\n",
    );
    let out = keel.fails(&[
        "plugin",
        "install",
        &dir,
        "--component",
        artifacts::WRITER_WASM,
    ]);
    assert!(out.stderr.contains("keel.toml:7:"), "{}", out.stderr);
    assert!(out.stderr.contains("reed"), "{}", out.stderr);
    nothing_installed(&keel);

    let dir = with_manifest(
        &keel,
        "[plugin]\nid = \"x\"\nversion = \"0.1.0\"\nworld = \"robot\"\n",
    );
    let out = keel.fails(&[
        "plugin",
        "install",
        &dir,
        "--component",
        artifacts::WRITER_WASM,
    ]);
    assert!(out.stderr.contains("keel.toml:4:"), "{}", out.stderr);
    nothing_installed(&keel);
}

#[test]
fn a_core_module_is_not_a_component() {
    let keel = Keel::new();
    let dir = keel.folder("core");
    std::fs::write(dir.join("plugin.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let manifest = manifest_without(Path::new(artifacts::WRITER_DIR), &["component"]);
    std::fs::write(dir.join("keel.toml"), manifest).unwrap();
    let out = keel.fails(&["plugin", "install", dir.to_str().unwrap()]);
    assert!(
        out.stderr
            .contains("is a core WebAssembly module, not a component"),
        "{}",
        out.stderr
    );
    nothing_installed(&keel);

    std::fs::write(dir.join("plugin.wasm"), b"hello, not wasm at all").unwrap();
    let out = keel.fails(&["plugin", "install", dir.to_str().unwrap()]);
    assert!(out.stderr.contains("not WebAssembly"), "{}", out.stderr);
    nothing_installed(&keel);
}

#[test]
fn imports_beyond_the_manifest_are_refused_by_name() {
    let keel = Keel::new();
    // The todo agent calls actions; a manifest granting none must not install it.
    let todo = plugin_dir("todo");
    let original = std::fs::read_to_string(todo.join("keel.toml")).unwrap();
    let component = original
        .lines()
        .find_map(|l| l.trim().strip_prefix("component = "))
        .map(|c| todo.join(c.trim_matches('"')))
        .unwrap();
    let stripped = manifest_without(&todo, &["actions", "component"]);
    let dir = with_manifest(&keel, &stripped);
    let out = keel.fails(&[
        "plugin",
        "install",
        &dir,
        "--component",
        component.to_str().unwrap(),
    ]);
    assert!(
        out.stderr.contains("imports `keel:host/actions@0.1.0`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("declares no actions"), "{}", out.stderr);
    nothing_installed(&keel);
}

#[test]
fn directories_must_be_bound_and_exist() {
    let keel = Keel::new();
    let files = plugin_dir("files");
    let out = keel.fails(&["plugin", "install", files.to_str().unwrap()]);
    assert!(out.stderr.contains("--dir notes=PATH"), "{}", out.stderr);
    let out = keel.fails(&[
        "plugin",
        "install",
        files.to_str().unwrap(),
        "--dir",
        "notes=/does/not/exist",
    ]);
    assert!(
        out.stderr.contains("pass an existing folder"),
        "{}",
        out.stderr
    );
    let out = keel.fails(&[
        "plugin",
        "install",
        files.to_str().unwrap(),
        "--dir",
        "other=/tmp",
    ]);
    assert!(out.stderr.contains("--dir notes=PATH"), "{}", out.stderr);
    nothing_installed(&keel);
}

#[test]
fn list_inspect_remove_and_unknown_plugin() {
    let keel = Keel::new();
    keel.install_test_plugin(artifacts::WRITER_DIR, &[]);
    let list = keel.json(&["plugin", "list"]);
    assert_eq!(list[0]["id"], "test-writer");
    assert!(list[0]["digest"].as_str().unwrap().starts_with("sha256:"));
    let inspect = keel.json(&["plugin", "inspect", "test-writer"]);
    assert_eq!(inspect["grant"]["capabilities"]["write"][0], "test/item");
    let actions = keel.json(&["actions", "list"]);
    let names: Vec<&str> = actions
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "create", "update", "link", "schedule", "send", "claim", "complete"
        ]
    );
    keel.ok(&["plugin", "remove", "test-writer"]);
    let out = keel.fails(&["run", "test-writer"]);
    assert!(
        out.stderr.contains("no plugin `test-writer` is installed"),
        "{}",
        out.stderr
    );
    // Install and removal are audited as the operator.
    let ops = keel.audit(&["--plugin", "operator"]);
    let acts: Vec<&str> = ops.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(acts, ["plugin.install", "plugin.remove"]);
}

#[test]
fn commands_on_a_missing_home_say_how_to_create_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::harness::bin())
        .args(["records", "list", "--home"])
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("keel init --home"), "{err}");
}

#[test]
fn compiled_components_are_cached_and_a_broken_cache_is_recompiled() {
    let keel = Keel::new();
    keel.install_test_plugin(artifacts::WRITER_DIR, &[]);
    let digest = keel.json(&["plugin", "list"])[0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let cached: Vec<_> = std::fs::read_dir(keel.home().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let name = cached[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with(&digest) && name.ends_with(".cwasm"),
        "{name}"
    );
    // A cache file that no longer loads costs a recompile, not a failure.
    std::fs::write(&cached[0], b"garbage").unwrap();
    let v = keel.run_json("test-writer", Some(r#"{"op":"create","text":"x"}"#));
    assert_eq!(v["outcome"], "ok", "{v}");
}

#[test]
fn bad_run_input_is_refused_before_anything_runs() {
    let keel = Keel::new();
    keel.install_test_plugin(artifacts::WRITER_DIR, &[]);
    let out = keel.fails(&["run", "test-writer", "--input", "{not json"]);
    assert!(
        out.stderr
            .contains("--input for test-writer@0.1.0: input is not valid JSON"),
        "{}",
        out.stderr
    );
    let runs: i64 = keel
        .db()
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(runs, 0);
    // A plugin error is the run's outcome, with a non-zero exit.
    let v = keel.run_json("test-writer", Some(r#"{"op":"explode"}"#));
    assert_eq!(v["outcome"], "error", "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("op must be create, update, schedule or send"),
        "{v}"
    );
}

#[test]
fn the_operator_lowers_run_limits_but_never_raises_them() {
    let keel = Keel::new();
    let limited = keel.variant(
        std::path::Path::new(artifacts::WRITER_DIR),
        "limited",
        &[(
            "memory_mb = 32",
            "memory_mb = 32\nconcurrency = 1\nrate = \"60/m\"",
        )],
        "",
    );
    let dir = limited.to_str().unwrap();
    keel.ok(&[
        "plugin",
        "install",
        dir,
        "--concurrency",
        "4",
        "--rate",
        "10/m",
    ]);
    let grant = &keel.json(&["plugin", "inspect", "test-writer"])["grant"];
    assert_eq!(grant["concurrency"], 1, "{grant}");
    assert_eq!(
        grant["rate"],
        serde_json::json!({"per": 10, "every_secs": 60})
    );
    let out = keel.fails(&["plugin", "install", dir, "--rate", "lots"]);
    assert!(
        out.stderr.contains("--rate `lots` is not a rate"),
        "{}",
        out.stderr
    );
    let out = keel.fails(&["plugin", "install", dir, "--concurrency", "0"]);
    assert!(
        out.stderr.contains("--concurrency must be at least 1"),
        "{}",
        out.stderr
    );
}

#[test]
fn install_shows_what_a_plugin_asks_for_and_needs_consent() {
    let keel = Keel::new();
    // Without --yes and without a terminal to ask on: refused, nothing in.
    let out = std::process::Command::new(crate::harness::bin())
        .args(["plugin", "install", artifacts::WRITER_DIR, "--home"])
        .arg(keel.home())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("test-writer@0.1.0 (agent) asks for:"),
        "{stderr}"
    );
    assert!(stderr.contains("  send      email"), "{stderr}");
    assert!(
        stderr.contains("pass --yes to grant what is listed above"),
        "{stderr}"
    );
    assert_eq!(keel.json(&["plugin", "list"]), serde_json::json!([]));

    // Granting less: the denied capability is refused at the call.
    keel.ok(&[
        "plugin",
        "install",
        artifacts::WRITER_DIR,
        "--deny",
        "action:send",
    ]);
    let grant = &keel.json(&["plugin", "inspect", "test-writer"])["grant"]["capabilities"];
    assert!(
        !grant["actions"]
            .as_array()
            .unwrap()
            .contains(&"send".into()),
        "{grant}"
    );
    let sent = keel.run_json(
        "test-writer",
        Some(r#"{"op":"send","message":{"to":"a@b.c"},"confidence":1}"#),
    );
    assert_eq!(sent["error"], "denied", "{sent}");
    let out = keel.fails(&[
        "plugin",
        "install",
        artifacts::WRITER_DIR,
        "--deny",
        "write:core/contact",
    ]);
    assert!(out.stderr.contains("does not ask for it"), "{}", out.stderr);
}

/// `keel run test-writer` sending with `confidence`; the send's state.
fn send_with(keel: &Keel, confidence: f64) -> String {
    let input = serde_json::json!({
        "op": "send",
        "confidence": confidence,
        "message": {"to": "ann@example.com", "text": "hi"},
    })
    .to_string();
    let v = keel.run_json("test-writer", Some(&input));
    assert_eq!(v["outcome"], "ok", "{v}");
    v["summary"].as_str().unwrap().to_string()
}

/// M4: the review gate is the operator's. A new plugin's sends all wait,
/// `confidence 1.0` included; the operator relaxes the gate (audited) and
/// the manifest's own `review_below` can only keep it stricter.
#[test]
fn m4_operator_owns_the_review_gate() {
    let keel = Keel::new();
    let out = keel.ok(&["plugin", "install", artifacts::WRITER_DIR]);
    assert!(
        out.stderr
            .contains("  review    every send waits for review (review-below all, the operator's)"),
        "{}",
        out.stderr
    );
    assert!(send_with(&keel, 1.0).ends_with("NeedsReview"));
    let shown = keel.ok(&["plugin", "policy", "test-writer"]).stdout;
    assert_eq!(
        shown.trim(),
        "test-writer@0.1.0: every send waits for review (review-below all, the operator's)"
    );

    let out = keel.fails(&["plugin", "policy", "test-writer", "--review-below", "1.5"]);
    assert!(out.stderr.contains("outside 0.0..=1.0"), "{}", out.stderr);
    // The writer's manifest asks for 0.8; the operator's 0.5 is looser, so
    // 0.8 is in force.
    let out = keel.ok(&["plugin", "policy", "test-writer", "--review-below", "0.5"]);
    assert!(
        out.stdout.contains(
            "sends below confidence 0.8 (or without one) wait for review (the plugin asks for review below 0.8, stricter than the operator's 0.5)"
        ),
        "{}",
        out.stdout
    );
    let set = keel.audit(&["--plugin", "operator"]);
    let set = set
        .iter()
        .rfind(|e| e["action"] == "plugin.policy")
        .unwrap();
    assert_eq!(set["detail"], "test-writer@0.1.0 review-below all -> 0.5");
    assert!(send_with(&keel, 0.9).ends_with("Queued"));
    assert!(send_with(&keel, 0.6).ends_with("NeedsReview"));
    let policy = keel.json(&["plugin", "policy", "test-writer"]);
    assert_eq!(policy["review_below"], 0.5);
    assert_eq!(policy["in_force"], 0.8);

    // Back to holding everything.
    keel.ok(&["plugin", "policy", "test-writer", "--review-below", "all"]);
    assert!(send_with(&keel, 1.0).ends_with("NeedsReview"));
    let out = keel.fails(&["plugin", "policy", "nobody", "--review-below", "0.5"]);
    assert!(out.stderr.contains("nobody"), "{}", out.stderr);
    keel.ok(&["audit", "verify"]);
}
