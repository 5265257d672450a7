//! Plugins written in other languages run with the same grants, limits and
//! audit as Rust ones: one scenario, the writer (see
//! `tests/plugins/rs-writer`), written in Rust, Python, JavaScript and C,
//! and held to the same records, audit entries, denials and errors.

use serde_json::{Value, json};

use crate::harness::{Keel, artifacts};

/// Each language's writer: its name in the body it writes, its folder, its
/// plugin id.
const WRITERS: &[(&str, &str, &str)] = &[
    ("rust", artifacts::RS_WRITER_DIR, "test-rs-writer"),
    ("python", artifacts::PY_WRITER_DIR, "test-py-writer"),
    ("javascript", artifacts::JS_WRITER_DIR, "test-js-writer"),
    ("c", artifacts::C_WRITER_DIR, "test-c-writer"),
];

/// What one writer did in a fresh home, in terms that do not depend on ids
/// or times, so the languages can be compared.
fn scenario(lang: &str, dir: &str, plugin: &str) -> Value {
    let keel = Keel::new();
    keel.install_test_plugin(dir, &[]);
    let summary = |ran: &Value| -> Value {
        assert_eq!(ran["outcome"], "ok", "{lang}: {ran}");
        serde_json::from_str(ran["summary"].as_str().unwrap()).unwrap()
    };
    let first = summary(&keel.run_json(plugin, Some(r#"{"text":"hello"}"#)));
    let items = keel.records("test/item");
    assert_eq!(items.len(), 1, "{lang}: {items:?}");
    let item = &items[0];
    assert_eq!(item["id"], first["created"], "{lang}");
    let shown = keel.json(&["records", "show", item["id"].as_str().unwrap(), "--history"]);
    let history: Vec<Value> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| json!({ "version": v["version"], "body": v["body"], "note": v["note"] }))
        .collect();
    // The same identity again: the existing record, nothing new.
    let again = summary(&keel.run_json(plugin, Some(r#"{"text":"hello"}"#)));
    assert_eq!(again["created"], first["created"], "{lang}");
    assert_eq!(keel.records("test/item").len(), 1, "{lang}");
    assert!(keel.records("test/secret").is_empty(), "{lang}");
    let bad = keel.run_json(plugin, Some(r#"{"text": 5}"#));
    let not_object = keel.run_json(plugin, Some("[1]"));
    let audit: Vec<Value> = keel
        .audit(&["--plugin", plugin])
        .iter()
        .map(|e| {
            let detail = e["detail"].as_str().unwrap_or_default();
            json!({
                "action": e["action"],
                "outcome": e["outcome"],
                "denied_for": detail.contains("`test/secret` is not granted"),
            })
        })
        .collect();
    keel.ok(&["audit", "verify"]);
    let label = format!("{plugin}@0.1.0");
    assert_eq!(item["created_by"], label.as_str(), "{lang}");
    assert_eq!(item["updated_by"], label.as_str(), "{lang}");
    json!({
        "first": { "existed": first["existed"], "version": first["version"], "undeclared": first["undeclared"] },
        "again": { "existed": again["existed"], "version": again["version"], "undeclared": again["undeclared"] },
        "body": item["body"],
        "history": history,
        "bad": { "outcome": bad["outcome"], "error": bad["error"] },
        "not_object": { "outcome": not_object["outcome"], "error": not_object["error"] },
        "audit": audit,
    })
}

#[test]
fn the_writer_behaves_the_same_in_rust_python_javascript_and_c() {
    let mut seen = Vec::new();
    for (lang, dir, plugin) in WRITERS {
        let got = scenario(lang, dir, plugin);
        // What every language must do, named once.
        assert_eq!(
            got["first"],
            json!({ "existed": false, "version": 2, "undeclared": "denied" }),
            "{lang}: {got}"
        );
        assert_eq!(
            got["again"],
            json!({ "existed": true, "version": 2, "undeclared": "denied" }),
            "{lang}: {got}"
        );
        assert_eq!(
            got["body"],
            json!({ "text": "hello", "lang": lang }),
            "{lang}"
        );
        let note = format!("{lang}-writer");
        assert_eq!(
            got["history"],
            json!([
                { "version": 1, "body": { "text": "hello" }, "note": note },
                { "version": 2, "body": { "text": "hello", "lang": lang }, "note": note },
            ]),
            "{lang}: {got}"
        );
        for case in ["bad", "not_object"] {
            assert_eq!(
                got[case],
                json!({ "outcome": "error", "error": "invalid" }),
                "{lang} {case}: {got}"
            );
        }
        let audit = got["audit"].as_array().unwrap();
        let denied: Vec<&Value> = audit.iter().filter(|e| e["outcome"] == "denied").collect();
        assert_eq!(denied.len(), 2, "{lang}: one denial per run: {audit:?}");
        assert!(
            denied
                .iter()
                .all(|e| e["action"] == "create" && e["denied_for"] == true),
            "{lang}: {audit:?}"
        );
        assert!(
            audit
                .iter()
                .any(|e| e["action"] == "update" && e["outcome"] == "allowed"),
            "{lang}: {audit:?}"
        );
        seen.push((lang, got));
    }
    // And the same as each other, audit trail included (the body's `lang`
    // aside).
    let strip = |v: &Value| {
        let mut v = v.clone();
        v["body"]["lang"] = Value::Null;
        v["history"][1]["body"]["lang"] = Value::Null;
        v["history"][0]["note"] = Value::Null;
        v["history"][1]["note"] = Value::Null;
        v
    };
    let (first_lang, first) = &seen[0];
    for (lang, got) in &seen[1..] {
        assert_eq!(strip(got), strip(first), "{lang} differs from {first_lang}");
    }
}

#[test]
fn a_python_connector_brings_a_feed_in_once_and_follows_its_changes() {
    let keel = Keel::new();
    let feed = keel.folder("feed");
    let put = |items: &str| std::fs::write(feed.join("items.json"), items).unwrap();
    put(r#"[{"id": "a", "text": "one"}, {"id": "b", "text": "two"}]"#);
    let bind = format!("feed={}", feed.display());
    keel.install_test_plugin(artifacts::PY_FEED_DIR, &["--dir", &bind]);
    let sync = |expect: Value| {
        let ran = keel.run_json("test-py-feed", None);
        assert_eq!(ran["outcome"], "ok", "{ran}");
        assert_eq!(ran["sync"], expect, "{ran}");
    };
    let texts = || -> Vec<Value> {
        let mut t: Vec<Value> = keel
            .records("test/item")
            .iter()
            .map(|r| {
                assert_eq!(r["created_by"], "test-py-feed@0.1.0", "{r}");
                r["body"]["text"].clone()
            })
            .collect();
        t.sort_by_key(|v| v.to_string());
        t
    };
    sync(json!({ "created": 2, "updated": 0, "unchanged": 0 }));
    assert_eq!(texts(), [json!("one"), json!("two")]);
    // The file as it was: the cursor says so, and no action is called.
    let calls = || keel.audit(&["--plugin", "test-py-feed"]).len();
    let before = calls();
    sync(json!({ "created": 0, "updated": 0, "unchanged": 2 }));
    assert_eq!(calls(), before, "an unchanged feed calls no action");
    put(
        r#"[{"id": "a", "text": "one"}, {"id": "b", "text": "two, edited"}, {"id": "c", "text": "three"}]"#,
    );
    sync(json!({ "created": 1, "updated": 1, "unchanged": 1 }));
    assert_eq!(
        texts(),
        [json!("one"), json!("three"), json!("two, edited")]
    );
    let edited = keel
        .records("test/item")
        .into_iter()
        .find(|r| r["body"]["text"] == "two, edited")
        .unwrap();
    let shown = keel.json(&[
        "records",
        "show",
        edited["id"].as_str().unwrap(),
        "--history",
    ]);
    let versions: Vec<(Value, Value)> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["body"]["text"].clone(), v["note"].clone()))
        .collect();
    assert_eq!(
        versions,
        [
            (json!("two"), json!("from the feed")),
            (json!("two, edited"), json!("from the feed"))
        ]
    );
    // A broken or missing feed is the plugin's error and writes nothing.
    put("[{\"id\": 1}]");
    let bad = keel.run_json("test-py-feed", None);
    assert_eq!(
        (&bad["outcome"], &bad["error"]),
        (&json!("error"), &json!("invalid")),
        "{bad}"
    );
    assert!(
        bad["detail"]
            .as_str()
            .unwrap()
            .contains("must be a list of"),
        "{bad}"
    );
    std::fs::remove_file(feed.join("items.json")).unwrap();
    let missing = keel.run_json("test-py-feed", None);
    assert_eq!(missing["error"], "not-found", "{missing}");
    assert_eq!(keel.records("test/item").len(), 3);
    keel.ok(&["audit", "verify"]);
}

/// A mail file as the files connector reads it.
fn eml(from: &str, to: &str, subject: &str, days_ago: i64) -> String {
    let date = chrono::Utc::now() - chrono::Duration::days(days_ago);
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {}\r\nMessage-ID: <{}@example.com>\r\n\r\nHello.\r\n",
        date.to_rfc2822(),
        subject.replace(' ', "-").to_lowercase() + &days_ago.to_string()
    )
}

/// The links from `id` of relation `rel`, as target ids, sorted.
fn linked(keel: &Keel, id: &str, rel: &str) -> Vec<String> {
    let shown = keel.json(&["records", "show", id]);
    let mut to: Vec<String> = shown["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["rel"] == rel && l["from"] == id)
        .map(|l| l["to"].as_str().unwrap().to_string())
        .collect();
    to.sort();
    to
}

#[test]
fn the_python_digest_lists_the_days_records_and_links_each() {
    let keel = Keel::new();
    let notes = keel.folder("notes");
    crate::harness::write_files(
        &notes,
        &[
            ("plan.md", "# Spring plan\nTODO: book the venue\n"),
            (
                "ann.eml",
                &eml("Ann <ann@example.com>", "me@example.com", "Invoice 42", 0),
            ),
        ],
    );
    keel.install_files(&notes);
    keel.ok(&["plugin", "install", artifacts::DIGEST_DIR]);
    keel.run_json("files", None);
    let today = chrono::Utc::now().date_naive().to_string();
    let day = format!(r#"{{"day":"{today}"}}"#);
    let ran = keel.run_json("digest", Some(&day));
    assert_eq!(ran["outcome"], "ok", "{ran}");
    let notes_made = keel.records("core/note");
    assert_eq!(notes_made.len(), 1, "{notes_made:?}");
    let digest = &notes_made[0];
    assert_eq!(digest["body"]["type"], "digest");
    assert_eq!(digest["body"]["title"], format!("Digest for {today}"));
    let text = digest["body"]["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            "New on {today}: 1 messages, 1 documents, 0 tasks."
        )),
        "{text}"
    );
    assert!(
        text.contains("- Invoice 42 — from Ann <ann@example.com>"),
        "{text}"
    );
    assert!(text.contains("- Spring plan"), "{text}");
    let mut sources: Vec<String> = keel
        .records("core/message")
        .iter()
        .chain(keel.records("core/document").iter())
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    sources.sort();
    let id = digest["id"].as_str().unwrap();
    assert_eq!(linked(&keel, id, "derived-from"), sources);
    let shown = keel.json(&["records", "show", id, "--history"]);
    let mut provenance: Vec<String> =
        serde_json::from_value(shown["history"][0]["sources"].clone()).unwrap();
    provenance.sort();
    assert_eq!(provenance, sources);
    assert_eq!(shown["created_by"], "digest@0.1.0");

    // Nothing new: nothing written. Something new: the next version.
    let again = keel.run_json("digest", Some(&day));
    assert!(
        again["summary"].as_str().unwrap().contains("is up to date"),
        "{again}"
    );
    std::fs::write(notes.join("later.md"), "# Later idea\n").unwrap();
    keel.run_json("files", None);
    let ran = keel.run_json("digest", Some(&day));
    assert!(
        ran["summary"].as_str().unwrap().contains("version 2"),
        "{ran}"
    );
    let digest = keel.json(&["records", "show", id]);
    assert!(
        digest["body"]["text"]
            .as_str()
            .unwrap()
            .contains("1 messages, 2 documents"),
        "{digest}"
    );
    assert_eq!(linked(&keel, id, "derived-from").len(), 3);

    let quiet = keel.run_json("digest", Some(r#"{"day":"1999-01-01"}"#));
    assert_eq!(quiet["summary"], "nothing new on 1999-01-01", "{quiet}");
    for bad in [r#"{"day":"2026-13-01"}"#, r#"{"day":"tomorrow"}"#, "[1]"] {
        let ran = keel.run_json("digest", Some(bad));
        assert_eq!(ran["error"], "invalid", "{bad}: {ran}");
    }
    assert_eq!(keel.records("core/note").len(), 1);
    keel.ok(&["audit", "verify"]);
}

#[test]
fn the_javascript_followup_reminds_once_of_each_unanswered_thread() {
    let keel = Keel::new();
    let mail = keel.folder("mail");
    crate::harness::write_files(
        &mail,
        &[
            // Answered the next day: no reminder.
            (
                "ann.eml",
                &eml("Ann <ann@example.com>", "me@example.com", "Invoice 42", 10),
            ),
            (
                "re-ann.eml",
                &eml(
                    "me@example.com",
                    "Ann <ann@example.com>",
                    "Re: Invoice 42",
                    9,
                ),
            ),
            // Waiting five days: a reminder.
            (
                "bob.eml",
                &eml(
                    "Bob <bob@example.com>",
                    "me@example.com",
                    "Quote request",
                    5,
                ),
            ),
            // Waiting one day: not yet.
            (
                "carol.eml",
                &eml("carol@example.com", "me@example.com", "Lunch", 1),
            ),
            // The operator's own mail waits for nobody.
            (
                "mine.eml",
                &eml("me@example.com", "dave@example.com", "Contract", 10),
            ),
        ],
    );
    keel.install_files(&mail);
    keel.ok(&[
        "plugin",
        "install",
        artifacts::FOLLOWUP_DIR,
        "--config",
        "me=Me <me@example.com>",
    ]);
    keel.run_json("files", None);
    assert_eq!(keel.records("core/message").len(), 5);

    let ran = keel.run_json("followup", None);
    assert_eq!(ran["outcome"], "ok", "{ran}");
    assert!(
        ran["summary"]
            .as_str()
            .unwrap()
            .starts_with("1 new reminders"),
        "{ran}"
    );
    let tasks = keel.records("core/task");
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let title = tasks[0]["body"]["title"].as_str().unwrap();
    assert!(
        title.starts_with("Follow up: Quote request (from Bob <bob@example.com>, 5 days"),
        "{title}"
    );
    let bob = keel
        .records("core/message")
        .into_iter()
        .find(|m| m["body"]["subject"] == "Quote request")
        .unwrap();
    let task = tasks[0]["id"].as_str().unwrap();
    assert_eq!(
        linked(&keel, task, "derived-from"),
        [bob["id"].as_str().unwrap()]
    );
    assert_eq!(tasks[0]["body"]["source"], bob["id"]);

    // Again: the same thread gets no second reminder.
    let again = keel.run_json("followup", None);
    assert!(
        again["summary"]
            .as_str()
            .unwrap()
            .starts_with("0 new reminders"),
        "{again}"
    );
    // With no grace period the one-day-old mail is due too.
    let now = keel.run_json("followup", Some(r#"{"days": 0}"#));
    assert!(
        now["summary"]
            .as_str()
            .unwrap()
            .starts_with("1 new reminders"),
        "{now}"
    );
    assert_eq!(keel.records("core/task").len(), 2);
    for bad in [r#"{"days": "soon"}"#, r#"{"now": "yesterday"}"#, "[1]"] {
        let ran = keel.run_json("followup", Some(bad));
        assert_eq!(ran["error"], "invalid", "{bad}: {ran}");
    }
    keel.ok(&["audit", "verify"]);
}
