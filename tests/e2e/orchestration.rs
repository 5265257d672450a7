//! A goal flows through `keel up`: the planner turns it into tasks, two
//! executors race for the ones they can do (each task is claimed once), the
//! drafted email waits for review, and once approved the channel delivers
//! it.

use std::path::Path;

use serde_json::Value;

use crate::harness::{Keel, plugin_dir};
use crate::up::up_until;

fn tasks(keel: &Keel) -> Vec<Value> {
    keel.records("core/task")
}

fn task<'a>(all: &'a [Value], title_start: &str) -> &'a Value {
    all.iter()
        .find(|t| {
            t["body"]["title"]
                .as_str()
                .unwrap()
                .starts_with(title_start)
        })
        .unwrap_or_else(|| panic!("no task `{title_start}` in {all:?}"))
}

/// `keel up` until `done` holds.
fn settle(keel: &Keel, done: impl Fn(&Keel) -> bool) {
    up_until(keel, &[], done);
}

#[test]
fn a_goal_becomes_tasks_executors_do_once_and_the_email_waits_for_review() {
    let keel = Keel::new();
    for name in ["planner", "executor"] {
        keel.ok(&["plugin", "install", plugin_dir(name).to_str().unwrap()]);
    }
    let second = keel.variant(
        &plugin_dir("executor"),
        "executor-2",
        &[("id = \"executor\"", "id = \"executor-2\"")],
        "",
    );
    keel.ok(&["plugin", "install", second.to_str().unwrap()]);
    let outbox = keel.install_outbox(&[]);

    let goal = "- note: collect the agenda\n- email: ann@example.com confirm the room for Monday\n- book a table";
    let input = serde_json::json!({ "goal": goal }).to_string();
    let planned = keel.run_json("planner", Some(&input));
    assert_eq!(planned["outcome"], "ok", "{planned}");
    assert_eq!(
        planned["summary"],
        "3 tasks planned (2 for executors), 0 already planned"
    );
    // Planning the same goal again adds nothing.
    let again = keel.run_json("planner", Some(&input));
    assert_eq!(
        again["summary"],
        "0 tasks planned (2 for executors), 3 already planned"
    );

    let skilled_done = |k: &Keel| {
        let all = tasks(k);
        ["collect", "ann@"]
            .iter()
            .all(|t| task(&all, t)["body"]["state"] == "done")
    };
    settle(&keel, skilled_done);
    let all = tasks(&keel);
    assert_eq!(all.len(), 3);
    assert_eq!(task(&all, "book")["body"]["state"], "open");
    let note_task = task(&all, "collect");
    let email_task = task(&all, "ann@");
    // Each task was claimed exactly once, by one of the two executors.
    let trail = keel.audit(&[]);
    for t in [note_task, email_task] {
        let id = t["id"].as_str().unwrap();
        let claims: Vec<&Value> = trail
            .iter()
            .filter(|e| e["action"] == "claim" && e["record_id"] == id && e["outcome"] == "allowed")
            .collect();
        assert_eq!(claims.len(), 1, "{id}: {claims:?}");
        let by = t["body"]["ended_by"].as_str().unwrap();
        assert_eq!(claims[0]["plugin"], by);
        assert!(by == "executor" || by == "executor-2", "{by}");
    }
    let notes = keel.records("core/note");
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["body"]["type"], "result");
    assert_eq!(note_task["body"]["result"]["note"], notes[0]["id"]);

    // The email waits for the operator; nothing is delivered yet.
    let items = keel.json(&["review", "list"]);
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["kind"], "send");
    assert_eq!(items[0]["provenance"]["sources"][0], email_task["id"]);
    assert_eq!(email_task["body"]["result"]["outbox"], items[0]["id"]);
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 0);

    let id = items[0]["id"].as_str().unwrap().to_string();
    keel.ok(&["review", "approve", &id]);
    let eml = outbox.join(format!("keel-send-{id}.eml"));
    let delivered = |_: &Keel| Path::new(&eml).exists();
    settle(&keel, delivered);
    let text = std::fs::read_to_string(&eml).unwrap();
    assert!(
        text.contains("Subject: confirm the room for Monday"),
        "{text}"
    );
    assert!(text.contains("To: <ann@example.com>"), "{text}");
    keel.ok(&["audit", "verify"]);
}

#[test]
fn a_goal_of_one_line_is_planned_by_the_large_tier_recalling_memories() {
    let _turn = crate::models::local_chat_turn();
    let keel = Keel::new();
    keel.ok(&["plugin", "install", plugin_dir("planner").to_str().unwrap()]);
    keel.install_test_plugin(crate::harness::artifacts::ASKER_DIR, &[]);
    std::fs::write(
        keel.home().join("models.toml"),
        crate::models::local_provider(),
    )
    .unwrap();
    // Something known beforehand that bears on the goal.
    let memory = keel.run_json(
        "test-asker",
        Some(
            &serde_json::json!({ "op": "remember",
                "text": "The spring catalogue launch needs new product photos and a printer quote" })
            .to_string(),
        ),
    );
    let memory: Value = serde_json::from_str(memory["summary"].as_str().unwrap()).unwrap();
    let memory_id = memory["id"].as_str().unwrap();

    let input = serde_json::json!({ "goal": "prepare the spring catalogue launch" }).to_string();
    let planned = keel.run_json("planner", Some(&input));
    assert_eq!(planned["outcome"], "ok", "{planned}");
    let all = tasks(&keel);
    assert!((2..=6).contains(&all.len()), "{all:?}");
    for t in &all {
        let id = t["id"].as_str().unwrap();
        let shown = keel.json(&["records", "show", id, "--history"]);
        let note = shown["history"][0]["note"].as_str().unwrap_or_default();
        assert!(
            note.contains("planned by local/smollm2-135m-instruct")
                && note.contains(&format!("recalling memories {memory_id}")),
            "{shown}"
        );
        assert_eq!(shown["history"][0]["actor"], "planner@0.1.0");
    }
    // The model is metered to the planner; planning again (the answer is
    // cached at temperature 0) adds no task.
    let again = keel.run_json("planner", Some(&input));
    assert_eq!(again["outcome"], "ok", "{again}");
    assert_eq!(tasks(&keel).len(), all.len());
    let usage = keel.json(&["usage", "--plugin", "planner"]);
    let hits: i64 = usage
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["cache_hits"].as_i64().unwrap())
        .sum();
    assert_eq!(hits, 1, "{usage}");
}
