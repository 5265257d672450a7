//! A plugin gets exactly its grant: what it may not read stays unread
//! (bodies, kinds, existence), identities belong to their source, and it
//! cannot exhaust the host: run memory, writes and scheduled jobs are
//! bounded, and reaching a quota puts the plugin up for review. Each test
//! is one finding of the security review, played by the `test-probe`
//! plugin; the host serves a normal plugin afterwards.

use serde_json::Value;

use crate::harness::{Keel, artifacts, write_files};

/// A home with the writer (which writes and reads `test/item`) and the
/// probe (which may write `test/item` but reads only `probe/*`).
fn keel_with_probe() -> Keel {
    let keel = Keel::new();
    keel.install_test_plugin(artifacts::WRITER_DIR, &[]);
    keel.install_test_plugin(artifacts::PROBE_DIR, &[]);
    keel
}

/// The probe's answer to `input`: its run's summary, parsed.
fn probe(keel: &Keel, input: &str) -> Value {
    let v = keel.run_json("test-probe", Some(input));
    assert_eq!(v["outcome"], "ok", "{v}");
    serde_json::from_str(v["summary"].as_str().unwrap()).unwrap()
}

/// A `test/item` the writer made, by identity (test, TEXT): its id.
fn item(keel: &Keel, text: &str) -> String {
    let input = format!(r#"{{"op":"create","text":"{text}"}}"#);
    let v = keel.run_json("test-writer", Some(&input));
    assert_eq!(v["outcome"], "ok", "{v}");
    v["summary"].as_str().unwrap().to_string()
}

fn still_serves(keel: &Keel) {
    let v = keel.run_json("test-writer", Some(r#"{"op":"create","text":"after"}"#));
    assert_eq!(v["outcome"], "ok", "{v}");
    keel.ok(&["audit", "verify"]);
}

#[test]
fn h2_a_write_grant_does_not_read_by_find_or_create() {
    let keel = keel_with_probe();
    let secret = item(&keel, "secret");
    // find: refused, without naming the kind.
    let found = probe(&keel, r#"{"op":"find","source":"test","id":"secret"}"#);
    assert_eq!(found["err"], "denied", "{found}");
    assert_eq!(
        found["message"],
        format!("reading record {secret} is not granted")
    );
    // create with the existing identity: that it exists, its id, no body.
    let created = probe(
        &keel,
        r#"{"op":"create","kind":"test/item","source":"test","id":"secret"}"#,
    );
    assert_eq!(created["ok"]["existed"], true, "{created}");
    assert_eq!(created["ok"]["record"]["id"], secret.as_str());
    assert_eq!(created["ok"]["record"]["body"], "{}");
    assert_eq!(created["ok"]["record"]["created_by"], "");
    // Another kind under that identity: a conflict that does not name it.
    let other = probe(
        &keel,
        r#"{"op":"create","kind":"probe/note","source":"test","id":"secret"}"#,
    );
    assert_eq!(other["err"], "conflict", "{other}");
    assert_eq!(
        other["message"],
        "identity (test, secret) belongs to a record of another kind"
    );
    // The record is as the writer left it, and every attempt is audited.
    let body = keel.records("test/item")[0]["body"].clone();
    assert_eq!(body["text"], "secret", "{body}");
    let denied: Vec<Value> = keel
        .audit(&["--plugin", "test-probe"])
        .into_iter()
        .filter(|e| e["outcome"] == "denied")
        .collect();
    assert_eq!(denied.len(), 1, "{denied:?}");
    still_serves(&keel);
}

#[test]
fn low_oracles_denials_links_and_sources_reveal_nothing() {
    let keel = keel_with_probe();
    let secret = item(&keel, "secret");
    let got = probe(&keel, &format!(r#"{{"op":"get","id":"{secret}"}}"#));
    assert_eq!(got["err"], "denied");
    assert!(
        !got["message"].as_str().unwrap().contains("test/item"),
        "{got}"
    );
    // A source it may not read is refused like one that does not exist.
    let unreadable = probe(&keel, &format!(r#"{{"op":"source","id":"{secret}"}}"#));
    let missing = probe(
        &keel,
        r#"{"op":"source","id":"0190aaaa-0000-7000-8000-000000000000"}"#,
    );
    assert_eq!(unreadable["err"], "invalid", "{unreadable}");
    assert_eq!(
        unreadable["message"]
            .as_str()
            .unwrap()
            .replace(&secret, "ID"),
        missing["message"]
            .as_str()
            .unwrap()
            .replace("0190aaaa-0000-7000-8000-000000000000", "ID")
    );
    // It may link its note to a kind it writes, but its links leave out
    // the record it may not read.
    let linked = probe(&keel, &format!(r#"{{"op":"link","to":"{secret}"}}"#));
    assert_eq!(linked["ok"], Value::Null, "{linked}");
    let note = keel.records("probe/note")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let links = probe(&keel, &format!(r#"{{"op":"links","id":"{note}"}}"#));
    assert_eq!(links["ok"], serde_json::json!([]), "{links}");
    // The operator still sees the link.
    let shown = keel.json(&["records", "show", &note]);
    assert_eq!(shown["links"].as_array().unwrap().len(), 1, "{shown}");
    still_serves(&keel);
}

#[test]
fn m6_identity_squatting_is_refused_and_the_connector_still_syncs() {
    let keel = keel_with_probe();
    let notes = keel.folder("notes");
    keel.install_files(&notes);
    let squat = probe(
        &keel,
        r#"{"op":"create","kind":"probe/note","source":"files:notes","id":"later.md"}"#,
    );
    assert_eq!(squat["err"], "denied", "{squat}");
    assert_eq!(
        squat["message"],
        "identity source `files:notes` is not test-probe's; a plugin claims identities under `test-probe`, `test-probe:NAME` or a source listed in capabilities.identities"
    );
    write_files(
        &notes,
        &[("later.md", "# Later\nwritten after the attempt\n")],
    );
    let v = keel.run_json("files", None);
    assert_eq!(v["outcome"], "ok", "{v}");
    assert_eq!(v["sync"]["created"], 1, "{v}");
    still_serves(&keel);
}

#[test]
fn h1_run_working_memory_is_bounded_and_counted_as_the_runs_memory() {
    let keel = keel_with_probe();
    let v = keel.run_json("test-probe", Some(r#"{"op":"run-memory"}"#));
    assert_eq!(v["outcome"], "ok", "{v}");
    let summary: Value = serde_json::from_str(v["summary"].as_str().unwrap()).unwrap();
    // 8 MiB of keys and 64 KiB values: 127 fit.
    assert_eq!(summary["kept"], 127, "{summary}");
    assert_eq!(summary["err"]["err"], "limit", "{summary}");
    assert!(
        summary["err"]["message"]
            .as_str()
            .unwrap()
            .contains("over its 8388608-byte limit"),
        "{summary}"
    );
    assert!(v["memory_peak"].as_u64().unwrap() > 8 << 20, "{v}");
    still_serves(&keel);
}

#[test]
fn m8_write_quotas_stop_a_flood_and_put_the_plugin_up_for_review() {
    let keel = keel_with_probe();
    let first = probe(&keel, r#"{"op":"writes","n":60}"#);
    assert_eq!(first["made"], 50, "{first}");
    assert_eq!(first["last"]["err"], "limit");
    assert_eq!(
        first["last"]["message"],
        "test-probe@0.1.0 made its 50 writes for this run (limits.writes_per_run); the rest waits for its next run"
    );
    let second = probe(&keel, r#"{"op":"writes","n":60}"#);
    assert_eq!(second["made"], 50, "{second}");
    // The day allows 120: the third run gets the last 20.
    let third = probe(&keel, r#"{"op":"writes","n":60}"#);
    assert_eq!(third["made"], 20, "{third}");
    assert_eq!(
        third["last"]["message"],
        "test-probe@0.1.0 made its 120 writes for today (limits.writes_per_day); it may write again after 00:00 UTC"
    );
    assert_eq!(keel.records("probe/note").len(), 120);
    // Each run is marked with the quota it reached.
    let runs = keel.json(&["runs", "list", "--plugin", "test-probe"]);
    let quotas: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["quota"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        quotas,
        [
            "writes_per_day 120",
            "writes_per_run 50",
            "writes_per_run 50"
        ]
    );
    // One review item for the plugin, naming the last quota it reached.
    let items: Vec<Value> = keel
        .json(&["review", "list"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "quota")
        .cloned()
        .collect();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["plugin"], "test-probe");
    assert!(
        items[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("reached writes_per_day 120"),
        "{items:?}"
    );
    let id = items[0]["id"].as_str().unwrap();
    keel.ok(&["review", "approve", id]);
    let left = keel.json(&["review", "list"]);
    assert!(
        !left
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["kind"] == "quota"),
        "{left}"
    );
    // Refused writes are audited as `limit`; other plugins write on.
    let limited = keel
        .audit(&["--plugin", "test-probe"])
        .into_iter()
        .filter(|e| e["outcome"] == "limit")
        .count();
    assert_eq!(limited, 10 + 10 + 40);
    still_serves(&keel);
}

#[test]
fn m8_a_past_time_is_now_and_a_runs_fan_out_is_capped() {
    let keel = keel_with_probe();
    let jobs = probe(
        &keel,
        r#"{"op":"schedule","n":5,"at":"1970-01-01T00:00:00Z"}"#,
    );
    let jobs = jobs.as_array().unwrap();
    assert!(jobs[..3].iter().all(|j| j["ok"].is_string()), "{jobs:?}");
    for j in &jobs[3..] {
        assert_eq!(j["err"], "limit", "{j}");
        assert_eq!(
            j["message"],
            "test-probe@0.1.0 scheduled its 3 jobs for this run (limits.jobs_per_run)"
        );
    }
    let listed = keel.json(&["jobs", "list"]);
    let queued: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["plugin"] == "test-probe")
        .collect();
    assert_eq!(queued.len(), 3, "{listed}");
    for j in queued {
        assert!(j["run_at"].as_str().unwrap() > "2026", "{j}");
    }
    still_serves(&keel);
}

#[test]
fn m9_escapes_in_a_mail_reach_the_terminal_shown_not_obeyed() {
    use base64_free::encode;
    let keel = Keel::new();
    let notes = keel.folder("notes");
    keel.install_files(&notes);
    let subject = "Invoice\u{1b}[2K\rPAID\u{1b}]52;c;ZXZpbA==\u{7}\u{1b}[31m";
    let mail = format!(
        "From: a@example.com\r\nTo: me@example.com\r\nSubject: =?utf-8?B?{}?=\r\nMessage-ID: <m1@example.com>\r\n\r\nhello\r\n",
        encode(subject.as_bytes())
    );
    write_files(&notes, &[("evil\u{1b}[2K.eml", mail.as_str())]);
    let v = keel.run_json("files", None);
    assert_eq!(v["outcome"], "ok", "{v}");
    let raw = |s: &str| s.chars().any(|c| c.is_control() && c != '\n');
    // Text output shows the escapes as escapes...
    let listed = keel
        .ok(&["records", "list", "--kind", "core/message"])
        .stdout;
    assert!(!raw(&listed), "{listed:?}");
    assert!(listed.contains("Invoice\\u{1b}[2K\\u{d}PAID"), "{listed}");
    let audit = keel.ok(&["audit", "--plugin", "files"]).stdout;
    assert!(!raw(&audit), "{audit:?}");
    assert!(audit.contains("evil\\u{1b}[2K.eml"), "{audit}");
    // ...and --json stays exact.
    let records = keel.records("core/message");
    assert_eq!(records[0]["body"]["subject"], subject);
}

/// Base64 for the test's encoded-word, without a dependency.
mod base64_free {
    pub fn encode(bytes: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
