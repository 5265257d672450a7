//! Someone with the home's files: a rewritten or cut audit chain found by a
//! signed checkpoint, an edited version body found by `audit verify`,
//! garbage in the compiled cache recompiled instead of run, and a home
//! open to other users closed up. After each, the host still runs plugins.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::harness::{Keel, artifacts};

/// A home with the writer installed and a few records written.
fn busy() -> Keel {
    let keel = Keel::new();
    keel.install_test_plugin(artifacts::WRITER_DIR, &[]);
    for text in ["one", "two", "three"] {
        let input = format!(r#"{{"op":"create","text":"{text}"}}"#);
        assert_eq!(keel.run_json("test-writer", Some(&input))["outcome"], "ok");
    }
    keel
}

/// `keel audit checkpoint` into the test folder; returns the file.
fn checkpoint(keel: &Keel) -> std::path::PathBuf {
    keel.ok(&["key", "generate", "--name", "me"]);
    let file = keel.folder("elsewhere").join("cp.json");
    let made = keel.ok(&[
        "audit",
        "checkpoint",
        "--key",
        "me",
        "--out",
        file.to_str().unwrap(),
        "--print",
    ]);
    let printed: serde_json::Value = serde_json::from_str(made.stdout.lines().last().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {}", made.stdout));
    assert_eq!(printed["format"], "keel-audit-checkpoint/1");
    assert!(printed["count"].as_i64().unwrap() >= 4, "{printed}");
    file
}

/// The hash an entry carries, computed as keel does: what an attacker who
/// read the source would do.
fn entry_hash(row: &[serde_json::Value], version_hash: Option<String>) -> String {
    let mut fields = row.to_vec();
    if let Some(v) = version_hash {
        fields.push(serde_json::Value::String(v));
    }
    hex::encode(Sha256::digest(
        serde_json::Value::Array(fields).to_string().as_bytes(),
    ))
}

/// Rewrites entry `seq`'s detail and recomputes every later hash, with the
/// triggers lifted first.
fn rewrite_from(keel: &Keel, seq: i64) {
    let db = keel.db();
    db.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .unwrap();
    db.execute(
        "UPDATE audit SET detail = 'nothing to see' WHERE seq = ?1",
        [seq],
    )
    .unwrap();
    let mut stmt = db
        .prepare(
            "SELECT seq, at, run_id, plugin, plugin_version, digest, action, record_id,
                    record_version, outcome, detail, version_hash, hash
             FROM audit ORDER BY seq",
        )
        .unwrap();
    type Row = (
        i64,
        String,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
        Option<i64>,
        String,
        String,
        Option<String>,
        String,
    );
    let rows: Vec<Row> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut prev = String::new();
    for r in rows {
        if r.0 < seq {
            prev = r.12;
            continue;
        }
        let fields =
            serde_json::json!([prev, r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10]);
        let hash = entry_hash(fields.as_array().unwrap(), r.11);
        db.execute(
            "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![prev, hash, r.0],
        )
        .unwrap();
        prev = hash;
    }
}

/// The sequence number of the audit log's last entry.
fn last_seq(keel: &Keel) -> i64 {
    keel.db()
        .query_row("SELECT max(seq) FROM audit", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn m1_rewritten_chain_is_detected_by_checkpoint() {
    let keel = busy();
    let file = checkpoint(&keel);
    let count = last_seq(&keel);
    // Triggers refuse the plain edit.
    let refused = keel
        .db()
        .execute("UPDATE audit SET detail = 'x' WHERE seq = 3", [])
        .unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
    rewrite_from(&keel, 3);
    // The chain agrees with itself again...
    let alone = keel.ok(&["audit", "verify"]);
    assert!(alone.stdout.contains("intact"), "{}", alone.stdout);
    // ...but not with the checkpoint kept elsewhere.
    let bad = keel.fails(&["audit", "verify", "--checkpoint", file.to_str().unwrap()]);
    assert!(
        bad.stderr
            .contains(&format!("audit entry {count} does not verify")),
        "{}",
        bad.stderr
    );
    assert!(bad.stderr.contains("rewritten"), "{}", bad.stderr);
    // A checkpoint edited to match the rewritten chain has a bad signature.
    let mut forged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let head: String = keel
        .db()
        .query_row("SELECT hash FROM audit WHERE seq = ?1", [count], |r| {
            r.get(0)
        })
        .unwrap();
    forged["hash"] = head.into();
    let forged_file = file.with_file_name("forged.json");
    std::fs::write(&forged_file, forged.to_string()).unwrap();
    let bad = keel.fails(&[
        "audit",
        "verify",
        "--checkpoint",
        forged_file.to_str().unwrap(),
    ]);
    assert!(
        bad.stderr.contains("signature does not verify"),
        "{}",
        bad.stderr
    );
    // The host still serves.
    let v = keel.run_json("test-writer", Some(r#"{"op":"create","text":"after"}"#));
    assert_eq!(v["outcome"], "ok", "{v}");
}

#[test]
fn m1_truncated_chain_is_detected_by_checkpoint() {
    let keel = busy();
    let file = checkpoint(&keel);
    let count = last_seq(&keel);
    let refused = keel
        .db()
        .execute("DELETE FROM audit WHERE seq = ?1", [count])
        .unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
    keel.db()
        .execute_batch(&format!(
            "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = {count}"
        ))
        .unwrap();
    keel.ok(&["audit", "verify"]);
    let bad = keel.fails(&["audit", "verify", "--checkpoint", file.to_str().unwrap()]);
    assert!(
        bad.stderr.contains(&format!(
            "the log ends at entry {} but the checkpoint",
            count - 1
        )),
        "{}",
        bad.stderr
    );
    let v = keel.run_json("test-writer", Some(r#"{"op":"create","text":"after"}"#));
    assert_eq!(v["outcome"], "ok", "{v}");
}

#[test]
fn m1_edited_version_body_is_detected() {
    let keel = busy();
    let (id, seq): (String, i64) = keel
        .db()
        .query_row(
            "SELECT record_id, seq FROM audit WHERE action = 'create' AND outcome = 'allowed'
             AND version_hash IS NOT NULL ORDER BY seq LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    keel.db()
        .execute(
            "UPDATE versions SET body = '{\"text\":\"forged\"}' WHERE record_id = ?1 AND version = 1",
            [&id],
        )
        .unwrap();
    let bad = keel.fails(&["audit", "verify"]);
    assert!(
        bad.stderr.contains(&format!(
            "audit entry {seq} does not verify: version 1 of record {id}"
        )),
        "{}",
        bad.stderr
    );
}

#[test]
fn m3_garbage_in_compiled_cache_is_recompiled_and_runs() {
    let keel = busy();
    let cache = keel.home().join("cache");
    let compiled: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert!(!compiled.is_empty());
    for p in &compiled {
        std::fs::write(p, b"not what keel wrote").unwrap();
    }
    let v = keel.run_json("test-writer", Some(r#"{"op":"create","text":"after"}"#));
    assert_eq!(v["outcome"], "ok", "{v}");
    // Compiled again and stored again with keel's MAC.
    assert!(
        compiled
            .iter()
            .any(|p| std::fs::read(p).unwrap() != b"not what keel wrote")
    );
    // A component file changed after install is refused, not compiled.
    let component = keel.home().join("plugins/test-writer/component.wasm");
    let mut bytes = std::fs::read(&component).unwrap();
    bytes.extend_from_slice(b"\0");
    std::fs::write(&component, bytes).unwrap();
    let ran = keel.run(&[
        "run",
        "test-writer",
        "--input",
        r#"{"op":"create","text":"x"}"#,
    ]);
    assert_ne!(ran.status, 0);
    assert!(ran.stderr.contains("not the sha256:"), "{}", ran.stderr);
}

#[cfg(unix)]
#[test]
fn m3_home_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let keel = busy();
    let home = keel.home();
    assert_eq!(mode(&home), 0o700);
    for f in ["keel.db", "cache.key", "keel.lock"] {
        assert_eq!(mode(&home.join(f)), 0o600, "{f}");
    }
    // A home left open (as an earlier keel made it) is closed on open.
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(home.join("keel.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let plugin = home.join("plugins/test-writer");
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let listed = keel.ok(&["plugin", "list"]);
    assert!(
        listed.stderr.contains("was readable by other users"),
        "{}",
        listed.stderr
    );
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join("keel.db")), 0o600);
    assert_eq!(mode(&plugin), 0o700);
    assert_eq!(mode(&plugin.join("component.wasm")), 0o600);
    let again = keel.ok(&["plugin", "list"]);
    assert!(!again.stderr.contains("notice"), "{}", again.stderr);
    // The secrets key can live outside the home.
    let outside = keel.folder("keys").join("secrets.key");
    let mut set = keel.command(&["secret", "set", "lab"]);
    set.env("KEEL_SECRETS_KEY_FILE", &outside)
        .stdin(std::process::Stdio::piped());
    let mut child = set.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"sk-1\n").unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert_eq!(mode(&outside), 0o600);
    assert!(!home.join("secrets.key").exists());
    let v = keel.run_json("test-writer", Some(r#"{"op":"create","text":"after"}"#));
    assert_eq!(v["outcome"], "ok", "{v}");
}
