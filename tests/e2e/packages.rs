//! Packages, keys and trust: `keel plugin pack` makes the same bytes from
//! the same folder; installs of a package need a signature by a trusted key
//! (or --allow-unsigned), match a pinned digest, and refuse tampered,
//! corrupt and oversized files, leaving nothing installed.

use std::path::Path;

use crate::harness::{Keel, plugin_dir};

pub fn installed(keel: &Keel) -> usize {
    keel.json(&["plugin", "list"]).as_array().unwrap().len()
}

fn refused(keel: &Keel, package: &Path, extra: &[&str], says: &str) {
    refused_source(keel, package.to_str().unwrap(), extra, says);
}

/// An install of `source` that fails saying `says` and installs nothing.
pub fn refused_source(keel: &Keel, source: &str, extra: &[&str], says: &str) {
    let mut args = vec!["plugin", "install", source];
    args.extend_from_slice(extra);
    let out = keel.fails(&args);
    assert!(
        out.stderr.contains(says),
        "wanted `{says}` in: {}",
        out.stderr
    );
    assert_eq!(installed(keel), 0, "something was installed");
    assert!(
        !keel.home().join("plugins/todo").exists(),
        "a plugin folder was left behind"
    );
}

/// Packs the first-party `todo` plugin into `name` in the author's `out`
/// folder; returns the package path and its digest.
fn pack_todo(author: &Keel, name: &str) -> (std::path::PathBuf, String) {
    let package = author.folder("out").join(name);
    let todo = plugin_dir("todo");
    let packed = author.ok(&[
        "plugin",
        "pack",
        todo.to_str().unwrap(),
        "-o",
        package.to_str().unwrap(),
    ]);
    let digest = packed.stdout.split_whitespace().last().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{}", packed.stdout);
    (package, digest)
}

/// The detail of the operator's last install in `keel`'s audit log.
fn last_install(keel: &Keel) -> String {
    let trail = keel.audit(&["--plugin", "operator"]);
    let install = trail
        .iter()
        .rfind(|e| e["action"] == "plugin.install")
        .unwrap();
    install["detail"].as_str().unwrap().to_string()
}

#[test]
fn packages_install_only_signed_by_a_trusted_key_and_as_pinned() {
    let author = Keel::new();
    let public = author.ok(&["key", "generate", "--name", "me"]).stdout;
    let public = public.trim().to_string();
    assert!(public.starts_with("ed25519:"), "{public}");
    let (package, digest) = pack_todo(&author, "todo.keel");
    // The same folder packs to the same bytes.
    let (again, _) = pack_todo(&author, "again.keel");
    assert_eq!(
        std::fs::read(&package).unwrap(),
        std::fs::read(&again).unwrap()
    );

    let operator = Keel::new();
    refused(
        &operator,
        &package,
        &[],
        "is not signed; sign it with `keel plugin sign`",
    );

    author.ok(&["plugin", "sign", package.to_str().unwrap(), "--key", "me"]);
    refused(&operator, &package, &[], "which is not trusted");
    operator.ok(&["trust", "add", &public, "--name", "me"]);
    refused(
        &operator,
        &package,
        &[
            "--digest",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ],
        "not the pinned sha256:0000",
    );
    operator.ok(&[
        "plugin",
        "install",
        package.to_str().unwrap(),
        "--digest",
        &digest,
    ]);
    let list = operator.json(&["plugin", "list"]);
    assert_eq!(list[0]["id"], "todo");
    assert_eq!(list[0]["signer"], format!("me ({public})"));
    assert_eq!(list[0]["source"], format!("package:{}", package.display()));
    let install = last_install(&operator);
    assert!(
        install.contains(&format!("signed by me ({public})")),
        "{install}"
    );
    operator.ok(&["audit", "verify"]);

    // The lockfile says what is installed, from where, signed by whom,
    // granted what; a removal takes it out.
    let notes = operator.folder("notes");
    operator.install_files(&notes);
    let lock: toml::Value =
        toml::from_str(&std::fs::read_to_string(operator.home().join("keel.lock")).unwrap())
            .unwrap();
    let plugins = lock["plugin"].as_array().unwrap();
    let todo = plugins
        .iter()
        .find(|p| p["id"].as_str() == Some("todo"))
        .unwrap();
    assert_eq!(todo["package_digest"].as_str(), Some(digest.as_str()));
    let signer = format!("me ({public})");
    assert_eq!(todo["signer"].as_str(), Some(signer.as_str()));
    assert_eq!(todo["granted"]["write"][0].as_str(), Some("core/task"));
    let files = plugins
        .iter()
        .find(|p| p["id"].as_str() == Some("files"))
        .unwrap();
    assert!(files["source"].as_str().unwrap().starts_with("dir:"));
    assert_eq!(
        files["dirs"]["notes"]
            .as_str()
            .map(std::path::PathBuf::from),
        Some(notes.canonicalize().unwrap())
    );
    operator.ok(&["plugin", "remove", "todo"]);
    let lock = std::fs::read_to_string(operator.home().join("keel.lock")).unwrap();
    assert!(!lock.contains("id = \"todo\""), "{lock}");
}

#[test]
fn tampered_corrupt_and_oversized_packages_install_nothing() {
    let author = Keel::new();
    let public = author.ok(&["key", "generate", "--name", "me"]).stdout;
    let out_dir = author.folder("out");
    let (package, _) = pack_todo(&author, "todo.keel");
    author.ok(&["plugin", "sign", package.to_str().unwrap(), "--key", "me"]);
    let operator = Keel::new();
    operator.ok(&["trust", "add", public.trim(), "--name", "me"]);

    // One byte of the component changed after signing (the tar header of
    // the component is at 1024 bytes, its data after that).
    let mut bytes = std::fs::read(&package).unwrap();
    let at = 2048 + 100;
    bytes[at] ^= 0xff;
    let tampered = out_dir.join("tampered.keel");
    std::fs::write(&tampered, &bytes).unwrap();
    refused(
        &operator,
        &tampered,
        &[],
        "does not match the package's contents",
    );

    let corrupt = out_dir.join("corrupt.keel");
    std::fs::write(
        &corrupt,
        b"this is not an archive, only some text that goes on and on",
    )
    .unwrap();
    refused(&operator, &corrupt, &[], "keel package");

    // Far over the limit: refused by its size, before it is read.
    let huge = out_dir.join("huge.keel");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(400 * 1024 * 1024)
        .unwrap();
    refused(&operator, &huge, &[], "over the");

    // An unsigned package goes in only with --allow-unsigned, and says so.
    let (plain, _) = pack_todo(&author, "plain.keel");
    operator.ok(&[
        "plugin",
        "install",
        plain.to_str().unwrap(),
        "--allow-unsigned",
    ]);
    let install = last_install(&operator);
    assert!(
        install.contains("unsigned, allowed by --allow-unsigned"),
        "{install}"
    );
}

#[test]
fn an_update_asks_again_when_it_wants_more_and_rolls_back() {
    let keel = Keel::new();
    let writer = Path::new(crate::harness::artifacts::WRITER_DIR);
    let dir = keel.variant(writer, "writer", &[], "");
    keel.ok(&["plugin", "install", dir.to_str().unwrap()]);
    let version = |k: &Keel| k.json(&["plugin", "inspect", "test-writer"])["version"].clone();
    let out = keel.ok(&["plugin", "update", "test-writer"]);
    assert!(out.stdout.contains("is up to date"), "{}", out.stdout);

    // Version 0.2.0 also writes test/other: more than was granted.
    let manifest = std::fs::read_to_string(dir.join("keel.toml"))
        .unwrap()
        .replace("version = \"0.1.0\"", "version = \"0.2.0\"")
        .replace(
            "write = [\"test/item\"]",
            "write = [\"test/item\", \"test/other\"]",
        );
    std::fs::write(dir.join("keel.toml"), manifest).unwrap();
    let out = keel.fails(&["plugin", "update", "test-writer"]);
    assert!(out.stderr.contains("+ write: test/other"), "{}", out.stderr);
    assert!(
        out.stderr.contains("pass --yes to grant it"),
        "{}",
        out.stderr
    );
    assert_eq!(version(&keel), "0.1.0");

    keel.ok(&["plugin", "update", "test-writer", "--yes"]);
    assert_eq!(version(&keel), "0.2.0");
    let lock = std::fs::read_to_string(keel.home().join("keel.lock")).unwrap();
    assert!(lock.contains("version = \"0.2.0\""), "{lock}");

    // Back to 0.1.0 and its grant; the plugin still runs; then forward.
    let out = keel.ok(&["plugin", "rollback", "test-writer"]);
    assert!(
        out.stdout.contains("rolled back to test-writer@0.1.0"),
        "{}",
        out.stdout
    );
    let grant = &keel.json(&["plugin", "inspect", "test-writer"])["grant"]["capabilities"];
    assert_eq!(grant["write"], serde_json::json!(["test/item"]));
    let ran = keel.run_json(
        "test-writer",
        Some(r#"{"op":"create","text":"after rollback"}"#),
    );
    assert_eq!(ran["outcome"], "ok", "{ran}");
    keel.ok(&["plugin", "rollback", "test-writer"]);
    assert_eq!(version(&keel), "0.2.0");
    let ops: Vec<String> = keel
        .audit(&["--plugin", "operator"])
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ops.iter().filter(|a| *a == "plugin.rollback").count(),
        2,
        "{ops:?}"
    );
    keel.ok(&["audit", "verify"]);
}
