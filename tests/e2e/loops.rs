//! Loop safety under `keel up`: a plugin woken by its own writes is not run
//! and the operator hears of it; a cascade between plugins stops at the
//! depth limit and waits in the review queue with its causation chain.

use std::path::Path;

use crate::harness::{Keel, artifacts};
use crate::up::{count, up_until};

/// `keel up --max-depth DEPTH` until `stopped` jobs are stopped.
fn settle(keel: &Keel, depth: &str, stopped: usize) -> String {
    up_until(keel, &["--max-depth", depth], |k| {
        count(k, "stopped") == stopped
    })
    .0
}

fn writer_variant(keel: &Keel, id: &str, writes: &str, wakes_on: &str) -> String {
    let dir = keel.variant(
        Path::new(artifacts::WRITER_DIR),
        id,
        &[
            ("id = \"test-writer\"", &format!("id = \"{id}\"")),
            ("read = [\"test/item\"]", "read = [\"test/*\"]"),
            ("write = [\"test/item\"]", "write = [\"test/*\"]"),
        ],
        &format!("[[triggers]]\non = \"record.created\"\nkinds = [\"{wakes_on}\"]\n"),
    );
    let config = format!("echo-kind={writes}");
    keel.ok(&[
        "plugin",
        "install",
        dir.to_str().unwrap(),
        "--config",
        &config,
    ]);
    id.to_string()
}

#[test]
fn a_plugin_woken_by_its_own_writes_is_stopped_for_review() {
    let keel = Keel::new();
    writer_variant(&keel, "echo", "test/item", "test/item");
    let seed = keel.run_json("echo", Some(r#"{"op":"create","text":"seed"}"#));
    assert_eq!(seed["outcome"], "ok", "{seed}");

    settle(&keel, "8", 1);
    let items = keel.json(&["review", "list"]);
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["kind"], "stopped-cascade");
    assert_eq!(items[0]["plugin"], "echo");
    let summary = items[0]["summary"].as_str().unwrap();
    assert!(
        summary.contains("echo would wake itself on its own writes")
            && summary.contains(seed["run"].as_str().unwrap()),
        "{summary}"
    );
    assert_eq!(items[0]["provenance"]["run"], seed["run"]);
    // Nothing ran: the seed is the only record.
    assert_eq!(keel.records("test/item").len(), 1);
    assert_eq!(count(&keel, "done"), 0);
}

#[test]
fn a_cascade_between_plugins_stops_at_the_depth_limit() {
    let keel = Keel::new();
    writer_variant(&keel, "ping", "test/ping", "test/pong");
    writer_variant(&keel, "pong", "test/pong", "test/ping");
    let seed = keel.run_json(
        "ping",
        Some(r#"{"op":"create","text":"seed","kind":"test/ping"}"#),
    );
    assert_eq!(seed["outcome"], "ok", "{seed}");
    // ping's seed wakes pong (1), whose echo wakes ping (2), then pong (3);
    // ping's next wake-up would be hop 4.
    let stdout = settle(&keel, "3", 1);
    assert!(
        stdout.contains("3 done, 0 to retry, 0 dead, 1 stopped"),
        "{stdout}"
    );
    let items = keel.json(&["review", "list"]);
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["kind"], "stopped-cascade");
    assert_eq!(items[0]["plugin"], "ping");
    let summary = items[0]["summary"].as_str().unwrap();
    assert!(
        summary.contains(
            "a cascade 4 hops deep, past the limit of 3 (woken by pong <- ping <- pong <- ping)"
        ),
        "{summary}"
    );
    assert_eq!(keel.records("test/ping").len(), 2);
    assert_eq!(keel.records("test/pong").len(), 2);

    // Approving runs it as the start of a new chain, which stops again at
    // the limit.
    let id = items[0]["id"].as_str().unwrap().to_string();
    keel.ok(&["review", "approve", &id]);
    settle(&keel, "3", 1);
    let items = keel.json(&["review", "list"]);
    assert_eq!(items.as_array().unwrap().len(), 1, "{items}");
    assert_ne!(items[0]["id"], id.as_str());
    assert_eq!(keel.records("test/ping").len(), 4);
    assert_eq!(keel.records("test/pong").len(), 4);
    keel.ok(&["audit", "verify"]);
}
