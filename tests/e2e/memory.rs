//! Memory through the host: working memory per run and per plugin (with
//! expiry), long-term memories with sources, superseding, and hybrid recall
//! (words and meaning, with the local embedder) filtered by what the caller
//! may read.

use std::path::Path;

use serde_json::{Value, json};

use crate::harness::Keel;

fn ask(keel: &Keel, plugin: &str, input: Value) -> Value {
    let ran = keel.run_json(plugin, Some(&input.to_string()));
    assert_eq!(ran["outcome"], "ok", "{ran}");
    serde_json::from_str(ran["summary"].as_str().unwrap()).unwrap_or(Value::Null)
}

fn texts(recalled: &Value) -> Vec<String> {
    recalled
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn memories_are_recalled_by_meaning_and_words_and_superseded_not_changed() {
    let keel = Keel::new();
    let asker = Path::new(crate::harness::artifacts::ASKER_DIR);
    keel.install_test_plugin(asker.to_str().unwrap(), &[]);
    keel.install_test_plugin(crate::harness::artifacts::WRITER_DIR, &[]);
    // A second asker that may not read test/item, granted the memories
    // others remember without a source.
    let narrow = keel.variant(
        asker,
        "narrow",
        &[
            ("id = \"test-asker\"", "id = \"test-asker-narrow\""),
            (
                "read = [\"test/answer\", \"test/item\", \"core/note\"]",
                "read = [\"test/answer\", \"core/note\"]",
            ),
            ("memory = true", "memory = true\nshared_memory = true"),
        ],
        "",
    );
    keel.install_test_plugin(narrow.to_str().unwrap(), &[]);
    // And a third that reads as much as the first but shares nothing.
    let own = keel.variant(
        asker,
        "own",
        &[("id = \"test-asker\"", "id = \"test-asker-own\"")],
        "",
    );
    keel.install_test_plugin(own.to_str().unwrap(), &[]);
    std::fs::write(
        keel.home().join("models.toml"),
        format!(
            "[providers.local]\nkind = \"local\"\nembed_model = \"all-minilm-l6-v2\"\ndir = {:?}\n",
            crate::models::local_models().display().to_string()
        ),
    )
    .unwrap();
    let item = keel.run_json(
        "test-writer",
        Some(r#"{"op":"create","text":"meeting notes: Alice prefers mornings"}"#),
    );
    let item = item["summary"].as_str().unwrap().to_string();

    let alice = ask(
        &keel,
        "test-asker",
        json!({ "op": "remember", "text": "Alice prefers to have meetings early in the morning",
                "metadata": { "about": "alice" }, "sources": [item] }),
    );
    assert_eq!(alice["by"], "test-asker@0.1.0");
    for text in [
        "The office wifi password changes on the first day of every month",
        "Bob is allergic to peanuts, so no peanut snacks at lunch",
        "The quarterly tax filing is due at the end of April",
    ] {
        ask(
            &keel,
            "test-asker",
            json!({ "op": "remember", "text": text }),
        );
    }

    // By meaning: no word of the query is in the memory but "Alice".
    let found = ask(
        &keel,
        "test-asker",
        json!({ "op": "recall", "query": "when does Alice like to get together?", "k": 2 }),
    );
    assert_eq!(
        texts(&found)[0],
        "Alice prefers to have meetings early in the morning"
    );
    // By meaning alone.
    let found = ask(
        &keel,
        "test-asker",
        json!({ "op": "recall", "query": "food allergy", "k": 1 }),
    );
    assert!(texts(&found)[0].starts_with("Bob is allergic"), "{found}");
    // By a rare word.
    let found = ask(
        &keel,
        "test-asker",
        json!({ "op": "recall", "query": "wifi", "k": 1 }),
    );
    assert!(texts(&found)[0].starts_with("The office wifi"), "{found}");

    // A correction supersedes; the old memory is kept but not recalled.
    let newer = ask(
        &keel,
        "test-asker",
        json!({ "op": "remember", "text": "Alice now prefers meetings in the afternoon",
                "sources": [item], "supersedes": alice["id"] }),
    );
    let found = ask(
        &keel,
        "test-asker",
        json!({ "op": "recall", "query": "Alice meetings", "k": 4 }),
    );
    let t = texts(&found);
    assert_eq!(t[0], "Alice now prefers meetings in the afternoon");
    assert!(
        !t.iter().any(|x| x.contains("early in the morning")),
        "{t:?}"
    );
    let again = keel.run_json(
        "test-asker",
        Some(&json!({ "op": "remember", "text": "x", "supersedes": alice["id"] }).to_string()),
    );
    assert_eq!(again["error"], "conflict", "{again}");
    assert!(
        again["detail"]
            .as_str()
            .unwrap()
            .contains(newer["id"].as_str().unwrap()),
        "{again}"
    );

    // A plugin that may not read test/item neither sees memories learned
    // from one nor cites one.
    let found = ask(
        &keel,
        "test-asker-narrow",
        json!({ "op": "recall", "query": "Alice meetings", "k": 4 }),
    );
    assert!(
        !texts(&found).iter().any(|x| x.contains("Alice")),
        "{found}"
    );
    assert_eq!(texts(&found).len(), 3);
    // M5: without the shared grant, another plugin sees only memories it
    // may read every source of: here the one learned from the item.
    let found = ask(
        &keel,
        "test-asker-own",
        json!({ "op": "recall", "query": "wifi peanuts tax Alice", "k": 10 }),
    );
    assert_eq!(
        texts(&found),
        ["Alice now prefers meetings in the afternoon"],
        "{found}"
    );
    // And it cannot hide the first asker's memory by superseding it.
    let hijack = keel.run_json(
        "test-asker-own",
        Some(
            &json!({ "op": "remember", "text": "Alice hates mornings", "supersedes": newer["id"] })
                .to_string(),
        ),
    );
    assert_eq!(hijack["error"], "denied", "{hijack}");
    let cited = keel.run_json(
        "test-asker-narrow",
        Some(&json!({ "op": "remember", "text": "y", "sources": [item] }).to_string()),
    );
    // Refused as a missing record is: a source reveals neither its kind
    // nor that it exists.
    assert_eq!(cited["error"], "invalid", "{cited}");
    assert!(
        cited["detail"]
            .as_str()
            .unwrap()
            .contains("does not exist or may not be read"),
        "{cited}"
    );

    // Narrowed by metadata, by source and by who remembered, before
    // ranking: the one memory about Bob even for a query about Alice.
    let found = ask(
        &keel,
        "test-asker",
        json!({ "op": "recall", "query": "Alice meetings", "k": 4,
                "filter": { "metadata": { "about": "bob" } } }),
    );
    assert!(texts(&found).is_empty(), "{found}");
    ask(
        &keel,
        "test-asker",
        json!({ "op": "remember", "text": "Bob books the room on Fridays",
                "metadata": { "about": "bob" } }),
    );
    let found = ask(
        &keel,
        "test-asker",
        json!({ "op": "recall", "query": "Alice meetings", "k": 4,
                "filter": { "metadata": { "about": "bob" }, "by_plugin": "test-asker" } }),
    );
    assert_eq!(texts(&found), ["Bob books the room on Fridays"], "{found}");
    let found = ask(
        &keel,
        "test-asker",
        json!({ "op": "recall", "query": "meetings", "k": 4, "filter": { "source": item } }),
    );
    assert_eq!(
        texts(&found),
        ["Alice now prefers meetings in the afternoon"],
        "{found}"
    );
    let found = ask(
        &keel,
        "test-asker",
        json!({ "op": "recall", "query": "meetings", "k": 4,
                "filter": { "by_plugin": "test-asker-narrow" } }),
    );
    assert!(texts(&found).is_empty(), "{found}");
    let bad = keel.run_json(
        "test-asker",
        Some(
            &json!({ "op": "recall", "query": "x", "k": 1, "filter": { "since": "last week" } })
                .to_string(),
        ),
    );
    assert_eq!(bad["error"], "invalid", "{bad}");
    assert!(
        bad["detail"].as_str().unwrap().contains("RFC 3339"),
        "{bad}"
    );

    // Audited, with the embeddings metered to the plugin that asked.
    let trail = keel.audit(&["--plugin", "test-asker"]);
    let count = |a: &str| trail.iter().filter(|e| e["action"] == a).count();
    assert_eq!(count("memory.remember"), 7);
    assert_eq!(count("memory.recall"), 9);
    let usage = keel.json(&["usage", "--plugin", "test-asker"]);
    assert_eq!(usage[0]["calls"], 14, "{usage}");
    keel.ok(&["audit", "verify"]);
}

#[test]
fn working_memory_lasts_a_run_or_until_it_expires() {
    let keel = Keel::new();
    keel.install_test_plugin(crate::harness::artifacts::ASKER_DIR, &[]);
    let within = ask(
        &keel,
        "test-asker",
        json!({ "op": "run-scope", "scope": "run", "key": "draft", "value": {"step": 2} }),
    );
    assert_eq!(within["value"], json!({"step": 2}));
    let later = ask(
        &keel,
        "test-asker",
        json!({ "op": "get", "scope": "run", "key": "draft" }),
    );
    assert_eq!(later["value"], Value::Null);

    ask(
        &keel,
        "test-asker",
        json!({ "op": "set", "scope": "plugin", "key": "cursor", "value": "abc" }),
    );
    ask(
        &keel,
        "test-asker",
        json!({ "op": "set", "scope": "plugin", "key": "brief", "value": 1, "ttl": 1 }),
    );
    let got = ask(
        &keel,
        "test-asker",
        json!({ "op": "get", "scope": "plugin", "key": "cursor" }),
    );
    assert_eq!(got["value"], "abc");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let gone = ask(
        &keel,
        "test-asker",
        json!({ "op": "get", "scope": "plugin", "key": "brief" }),
    );
    assert_eq!(gone["value"], Value::Null);
    let kept = ask(
        &keel,
        "test-asker",
        json!({ "op": "get", "scope": "plugin", "key": "cursor" }),
    );
    assert_eq!(kept["value"], "abc");

    // Without the grant: denied.
    let bare = keel.variant(
        Path::new(crate::harness::artifacts::ASKER_DIR),
        "bare",
        &[("memory = true", "")],
        "",
    );
    let out = Keel::new().fails(&["plugin", "install", bare.to_str().unwrap()]);
    assert!(
        out.stderr.contains("it declares no memory"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_session_summary_is_a_note_linked_to_what_it_summarizes_and_recalled() {
    let keel = Keel::new();
    keel.install_test_plugin(crate::harness::artifacts::ASKER_DIR, &[]);
    keel.install_test_plugin(crate::harness::artifacts::WRITER_DIR, &[]);
    std::fs::write(
        keel.home().join("models.toml"),
        crate::models::local_provider(),
    )
    .unwrap();
    let mut covered = Vec::new();
    for text in ["call with the linen supplier", "price list for April"] {
        let made = keel.run_json(
            "test-writer",
            Some(&json!({ "op": "create", "text": text }).to_string()),
        );
        covered.push(made["summary"].as_str().unwrap().to_string());
    }
    let made = ask(
        &keel,
        "test-asker",
        json!({ "op": "summarize", "title": "Supplier session",
                "text": "Agreed with the linen supplier on April prices: 4% up, delivery in two weeks",
                "covers": covered }),
    );
    let note = made["note"].as_str().unwrap();
    let shown = keel.json(&["records", "show", note, "--history"]);
    assert_eq!(shown["kind"], "core/note", "{shown}");
    assert_eq!(shown["body"]["type"], "summary", "{shown}");
    assert_eq!(shown["history"][0]["sources"], json!(covered), "{shown}");
    let mut linked: Vec<String> = shown["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["rel"] == "summarizes" && l["from"] == note)
        .map(|l| l["to"].as_str().unwrap().to_string())
        .collect();
    linked.sort();
    let mut expected = covered.clone();
    expected.sort();
    assert_eq!(linked, expected, "{shown}");
    // Recalled by meaning, pointing back to the note.
    let recalled = ask(
        &keel,
        "test-asker",
        json!({ "op": "recall", "query": "what did we agree about prices with the supplier?", "k": 3 }),
    );
    let first = &recalled[0];
    assert_eq!(first["id"], made["memory"], "{recalled}");
    assert_eq!(first["sources"], json!([note]), "{recalled}");
}
