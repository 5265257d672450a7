//! Sends leave through a channel plugin: queued and approved sends are
//! delivered once each by `outbox-file`, rejected ones never, edited ones
//! with the operator's text, and a delivery retried after a crash does not
//! write the message twice.

use std::path::Path;

use serde_json::{Value, json};

use crate::harness::{Keel, artifacts, plugin_dir};
use crate::up::up_until;

/// Queues a send through the test writer; returns its outbox id and state.
fn send(keel: &Keel, subject: &str, confidence: f64) -> (String, String) {
    let input = json!({
        "op": "send",
        "confidence": confidence,
        "message": {"to": "ann@example.com", "subject": subject, "text": format!("body of {subject}")},
    })
    .to_string();
    let v = keel.run_json("test-writer", Some(&input));
    assert_eq!(v["outcome"], "ok", "{v}");
    let summary = v["summary"].as_str().unwrap();
    let (id, state) = summary.split_once(' ').unwrap();
    (id.to_string(), state.to_string())
}

fn eml_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn outbox_state(keel: &Keel, id: &str) -> String {
    keel.db()
        .query_row("SELECT state FROM outbox WHERE id = ?1", [id], |r| r.get(0))
        .unwrap()
}

/// Runs `keel up` until `files` files are in the outbox folder.
fn deliver(keel: &Keel, outbox: &Path, files: usize) {
    up_until(keel, &[], |_| eml_files(outbox).len() == files);
}

#[test]
fn approved_sends_are_delivered_once_rejected_never_edited_as_edited() {
    let keel = Keel::new();
    // The operator lets the writer's sure sends (0.9 and up) out unreviewed.
    keel.install_test_plugin(artifacts::WRITER_DIR, &["--review-below", "0.9"]);
    let outbox = keel.install_outbox(&["--config", "from=keel@example.com"]);

    let (sure, state) = send(&keel, "sure", 0.95);
    assert_eq!(state, "SendState::Queued");
    let (approved, _) = send(&keel, "approve me", 0.3);
    let (edited, _) = send(&keel, "edit me", 0.3);
    let (rejected, state) = send(&keel, "reject me", 0.3);
    assert_eq!(state, "SendState::NeedsReview");
    let new_text = json!({"to": ["ann@example.com", "bob@example.com"], "subject": "edited", "text": "the operator's words"}).to_string();
    keel.ok(&["review", "edit", &edited, "--message", &new_text]);
    keel.ok(&["review", "approve", &approved]);
    keel.ok(&["review", "approve", &edited]);
    keel.ok(&["review", "reject", &rejected]);

    deliver(&keel, &outbox, 3);
    let want: Vec<String> = {
        let mut v: Vec<String> = [&sure, &approved, &edited]
            .iter()
            .map(|id| format!("keel-send-{id}.eml"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(eml_files(&outbox), want);
    for id in [&sure, &approved, &edited] {
        assert_eq!(outbox_state(&keel, id), "delivered");
    }
    assert_eq!(outbox_state(&keel, &rejected), "rejected");

    let eml = std::fs::read_to_string(outbox.join(format!("keel-send-{edited}.eml"))).unwrap();
    assert!(eml.contains("Subject: edited"), "{eml}");
    assert!(eml.contains("the operator's words"), "{eml}");
    assert!(eml.contains("bob@example.com"), "{eml}");
    assert!(eml.contains("From: <keel@example.com>"), "{eml}");
    assert!(
        eml.contains(&format!("Message-ID: <keel-send-{edited}@keel>")),
        "{eml}"
    );
    assert!(!eml.contains("body of edit me"), "{eml}");

    // Each delivery is audited as the channel's `deliver`, with its receipt.
    let trail = keel.audit(&["--plugin", "outbox-file"]);
    let delivered: Vec<&Value> = trail.iter().filter(|e| e["action"] == "deliver").collect();
    assert_eq!(delivered.len(), 3, "{trail:?}");
    let entry = delivered
        .iter()
        .find(|e| e["detail"].as_str().unwrap().contains(&edited))
        .unwrap();
    assert_eq!(entry["outcome"], "allowed");
    assert_eq!(
        entry["detail"],
        format!("outbox {edited} via email: delivered, receipt <keel-send-{edited}@keel>")
    );
    let jobs = keel.json(&["jobs", "list"]);
    let deliveries = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["cause"] == "delivery")
        .count();
    assert_eq!(deliveries, 3);

    // A crash after the file was written but before keel recorded it: the
    // send is still `approved` and its job's worker is gone. The retried
    // delivery carries the same key, so the channel writes nothing new.
    let db = keel.db();
    db.execute(
        "UPDATE outbox SET state = 'approved', delivered_at = NULL, receipt = NULL WHERE id = ?1",
        [&approved],
    )
    .unwrap();
    db.execute(
        "UPDATE jobs SET state = 'leased', lease_owner = 'worker-gone', lease_until = '2000-01-01T00:00:00.000Z'
         WHERE id = (SELECT delivery_job FROM outbox WHERE id = ?1)",
        [&approved],
    )
    .unwrap();
    let before = std::fs::read(outbox.join(format!("keel-send-{approved}.eml"))).unwrap();
    deliver(&keel, &outbox, 3);
    assert_eq!(outbox_state(&keel, &approved), "delivered");
    let after = std::fs::read(outbox.join(format!("keel-send-{approved}.eml"))).unwrap();
    assert_eq!(before, after, "the message was written again");
    let again = keel
        .audit(&["--plugin", "outbox-file"])
        .into_iter()
        .filter(|e| e["action"] == "deliver")
        .count();
    assert_eq!(again, 4);
    let last = keel.audit(&["--plugin", "outbox-file"]);
    let last = last.iter().rfind(|e| e["action"] == "deliver").unwrap();
    assert!(
        last["detail"]
            .as_str()
            .unwrap()
            .ends_with("(delivered before)"),
        "{last}"
    );
    keel.ok(&["audit", "verify"]);
}

#[test]
fn a_channel_cannot_be_served_twice_or_run_by_hand() {
    let keel = Keel::new();
    let outbox = keel.install_outbox(&[]);
    let bind = format!("outbox={}", outbox.display());
    let channel = plugin_dir("outbox-file");
    let out = keel.fails(&["run", "outbox-file"]);
    assert!(
        out.stderr.contains("is a channel; `keel up` delivers"),
        "{}",
        out.stderr
    );
    // A second plugin serving `email` is refused and nothing is installed.
    let other = keel.folder("other");
    let manifest = std::fs::read_to_string(channel.join("keel.toml"))
        .unwrap()
        .replace("id = \"outbox-file\"", "id = \"mailer\"")
        .replace(
            "../../target",
            &format!("{}/../../target", channel.display()),
        );
    std::fs::write(other.join("keel.toml"), manifest).unwrap();
    let out = keel.fails(&["plugin", "install", other.to_str().unwrap(), "--dir", &bind]);
    assert!(
        out.stderr
            .contains("channel `email` is already served by outbox-file@0.1.0"),
        "{}",
        out.stderr
    );
    let list = keel.json(&["plugin", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}
