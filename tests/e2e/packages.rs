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
    operator.ok(&["trust", "add", &public, "--name", "me", "--for", "todo"]);
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
    operator.ok(&["trust", "add", public.trim(), "--name", "me", "--any"]);

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

/// `keel plugin list --json` as it is now, for "nothing changed" checks.
fn listed(keel: &Keel) -> serde_json::Value {
    keel.json(&["plugin", "list"])
}

/// H3, as measured: `keel plugin update` of one plugin whose source now
/// holds another plugin (at a lower version) installed that other plugin
/// over the installed one. Now refused; both plugins untouched and running.
#[test]
fn h3_update_refuses_another_plugins_package() {
    let keel = Keel::new();
    let todo = plugin_dir("todo");
    keel.ok(&["plugin", "install", todo.to_str().unwrap()]);
    let writer = Path::new(crate::harness::artifacts::WRITER_DIR);
    let dir = keel.variant(writer, "writer", &[], "");
    keel.ok(&["plugin", "install", dir.to_str().unwrap()]);
    let before = listed(&keel);
    // The writer's folder now holds todo@0.0.1.
    let swap = keel.variant(
        &todo,
        "swap",
        &[("version = \"0.1.0\"", "version = \"0.0.1\"")],
        "",
    );
    std::fs::copy(swap.join("keel.toml"), dir.join("keel.toml")).unwrap();
    let out = keel.fails(&["plugin", "update", "test-writer", "--yes"]);
    let from = dir.canonicalize().unwrap();
    assert!(
        out.stderr.contains(&format!(
            "{} now holds todo@0.0.1, not test-writer; nothing was updated",
            from.display()
        )),
        "{}",
        out.stderr
    );
    assert_eq!(listed(&keel), before);
    // Both still run, as they were.
    let ran = keel.run_json("test-writer", Some(r#"{"op":"create","text":"still me"}"#));
    assert_eq!(ran["outcome"], "ok", "{ran}");
    keel.ok(&["run", "todo"]);
    let lock = std::fs::read_to_string(keel.home().join("keel.lock")).unwrap();
    assert!(!lock.contains("0.0.1"), "{lock}");
    keel.ok(&["audit", "verify"]);
}

/// H3: an update to a lower version is the operator's explicit choice.
#[test]
fn h3_downgrade_refused_without_flag() {
    let keel = Keel::new();
    let writer = Path::new(crate::harness::artifacts::WRITER_DIR);
    let bump = [("version = \"0.1.0\"", "version = \"0.2.0\"")];
    let dir = keel.variant(writer, "writer", &bump, "");
    keel.ok(&["plugin", "install", dir.to_str().unwrap()]);
    let before = listed(&keel);
    let older = keel.variant(writer, "older", &[], "");
    std::fs::copy(older.join("keel.toml"), dir.join("keel.toml")).unwrap();
    let out = keel.fails(&["plugin", "update", "test-writer", "--yes"]);
    assert!(
        out.stderr.contains(
            "holds test-writer@0.1.0, older than the installed test-writer@0.2.0; nothing was updated (pass --allow-downgrade to go back to it)"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(listed(&keel), before);
    let ran = keel.run_json("test-writer", Some(r#"{"op":"create","text":"0.2.0"}"#));
    assert_eq!(ran["outcome"], "ok", "{ran}");

    let out = keel.ok(&["plugin", "update", "test-writer", "--allow-downgrade"]);
    assert!(
        out.stdout
            .contains("updated test-writer@0.2.0 -> test-writer@0.1.0"),
        "{}",
        out.stdout
    );
    assert_eq!(listed(&keel)[0]["version"], "0.1.0");
}

/// Signs a packed `todo` with the author's key `me`; returns the package
/// and the public key.
fn signed_todo(author: &Keel) -> (std::path::PathBuf, String) {
    let public = author.ok(&["key", "generate", "--name", "me"]).stdout;
    let (package, _) = pack_todo(author, "todo.keel");
    author.ok(&["plugin", "sign", package.to_str().unwrap(), "--key", "me"]);
    (package, public.trim().to_string())
}

/// H3: a trusted key is trusted for the plugins the operator named, and
/// its signatures show the operator's name for it, not the package's.
#[test]
fn h3_key_trusted_for_other_plugin_refused() {
    let author = Keel::new();
    let (package, public) = signed_todo(&author);
    let operator = Keel::new();
    let out = operator.fails(&["trust", "add", &public, "--name", "alice"]);
    assert!(
        out.stderr
            .contains("say which plugins alice may sign: --for ID,ID, or --any for every plugin"),
        "{}",
        out.stderr
    );
    operator.ok(&["trust", "add", &public, "--name", "alice", "--for", "files"]);
    refused(
        &operator,
        &package,
        &[],
        &format!(
            "todo@0.1.0: the package is signed by alice ({public}), which is trusted only for files; if they may ship todo too, `keel trust remove alice` then `keel trust add {public} --name alice --for files,todo`; nothing was installed"
        ),
    );
    // The home still installs and runs what the key is trusted for.
    let notes = operator.folder("notes");
    operator.install_files(&notes);
    operator.ok(&["run", "files"]);

    operator.ok(&["trust", "remove", "alice"]);
    operator.ok(&[
        "trust",
        "add",
        &public,
        "--name",
        "alice",
        "--for",
        "files,todo",
    ]);
    let trusted = operator.json(&["trust", "list"]);
    assert_eq!(trusted[0]["for"], serde_json::json!(["files", "todo"]));
    let out = operator.ok(&["plugin", "install", package.to_str().unwrap()]);
    // The package calls its signer `me`; the operator calls the key alice.
    let shown = format!("alice ({public})");
    assert!(
        out.stdout.contains(&format!("signed by {shown}")),
        "{}",
        out.stdout
    );
    let todo = listed(&operator)
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "todo")
        .cloned()
        .unwrap();
    assert_eq!(todo["signer"], shown.as_str());
    let lock = std::fs::read_to_string(operator.home().join("keel.lock")).unwrap();
    assert!(lock.contains(&format!("signer = \"{shown}\"")), "{lock}");
    assert!(last_install(&operator).contains(&format!("signed by {shown}")));
    let plain = operator.ok(&["plugin", "list"]).stdout;
    assert!(plain.contains(&shown), "{plain}");
    operator.ok(&["run", "todo"]);
}

/// H3: a key trusted before trust was scoped keeps working for any plugin,
/// and every install it signs says how to narrow it.
#[test]
fn h3_key_trusted_before_scopes_counts_for_any_plugin_with_a_notice() {
    let author = Keel::new();
    let (package, public) = signed_todo(&author);
    let operator = Keel::new();
    operator.ok(&["trust", "add", &public, "--name", "old", "--any"]);
    // As a home from before scopes has it.
    operator
        .db()
        .execute("UPDATE trusted_keys SET plugins = NULL", [])
        .unwrap();
    let list = operator.ok(&["trust", "list"]).stdout;
    assert!(
        list.contains("for any plugin (trusted before keys were scoped)"),
        "{list}"
    );
    let out = operator.ok(&["plugin", "install", package.to_str().unwrap()]);
    assert!(
        out.stderr.contains(&format!(
            "key old was trusted before keys were scoped to plugins, so it counts as trusted for any plugin; to narrow it, `keel trust remove old` then `keel trust add {public} --name old --for ID,ID`"
        )),
        "{}",
        out.stderr
    );
}

/// H3: what the operator chose at install (denials, the review gate, the
/// folder it came from, absolute) holds through updates; an update that
/// adds a trigger asks again.
#[test]
fn h3_operator_choices_outlive_updates_and_new_triggers_ask() {
    let keel = Keel::new();
    let writer = Path::new(crate::harness::artifacts::WRITER_DIR);
    keel.variant(writer, "writer", &[], "");
    // Installed by a relative path: stored absolute.
    let out = keel
        .command(&[
            "plugin",
            "install",
            "writer",
            "--deny",
            "action:send",
            "--review-below",
            "0.7",
        ])
        .current_dir(keel.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = keel.dir.path().join("writer").canonicalize().unwrap();
    assert_eq!(listed(&keel)[0]["source"], format!("dir:{}", dir.display()));

    let bumped = keel.variant(
        writer,
        "v2",
        &[("version = \"0.1.0\"", "version = \"0.2.0\"")],
        "",
    );
    std::fs::copy(bumped.join("keel.toml"), dir.join("keel.toml")).unwrap();
    // Run from elsewhere: the stored source is absolute.
    let out = keel.ok(&["plugin", "update", "test-writer"]);
    assert!(
        out.stderr.contains("still denied: action:send"),
        "{}",
        out.stderr
    );
    let row = keel.json(&["plugin", "inspect", "test-writer"]);
    assert_eq!(row["version"], "0.2.0");
    let actions = row["grant"]["capabilities"]["actions"].as_array().unwrap();
    assert!(!actions.contains(&"send".into()), "{actions:?}");
    assert_eq!(row["grant"]["review_below"], 0.7);
    let sent = keel.run_json(
        "test-writer",
        Some(r#"{"op":"send","message":{"to":"a@b.c"},"confidence":1}"#),
    );
    assert_eq!(sent["error"], "denied", "{sent}");
    let lock = std::fs::read_to_string(keel.home().join("keel.lock")).unwrap();
    assert!(lock.contains("denied = [\"action:send\"]"), "{lock}");
    assert!(lock.contains("review_below = \"0.7\""), "{lock}");

    // 0.3.0 also wakes every hour and takes more fuel: asked again.
    let hourly = keel.variant(
        writer,
        "v3",
        &[
            ("version = \"0.1.0\"", "version = \"0.3.0\""),
            ("memory_mb = 32", "memory_mb = 48"),
        ],
        "\n[[triggers]]\nevery = \"1h\"\n",
    );
    std::fs::copy(hourly.join("keel.toml"), dir.join("keel.toml")).unwrap();
    let out = keel.fails(&["plugin", "update", "test-writer"]);
    for line in [
        "+ triggers: every 1h",
        "+ limits: 48 MiB",
        "- limits: 32 MiB",
    ] {
        assert!(out.stderr.contains(line), "{line}: {}", out.stderr);
    }
    assert!(
        out.stderr.contains("pass --yes to grant it"),
        "{}",
        out.stderr
    );
    assert_eq!(listed(&keel)[0]["version"], "0.2.0");
    keel.ok(&["plugin", "update", "test-writer", "--yes"]);
    assert_eq!(listed(&keel)[0]["version"], "0.3.0");
    keel.ok(&["audit", "verify"]);

    // A home from before records `dir:.`: the update refuses to read
    // whatever folder it runs in.
    keel.db()
        .execute("UPDATE plugins SET source = 'dir:.'", [])
        .unwrap();
    let out = keel.fails(&["plugin", "update", "test-writer", "--yes"]);
    assert!(
        out.stderr
            .contains("test-writer@0.3.0 was recorded as installed from the relative path `.`"),
        "{}",
        out.stderr
    );
    assert_eq!(listed(&keel)[0]["version"], "0.3.0");
}
