//! The first slice end to end: the files connector ingests a folder, the
//! todo agent makes tasks, the audit trail and history say who did what.

use std::collections::HashSet;

use crate::harness::{Keel, plugin_dir, write_files};

const NOTES: &[(&str, &str)] = &[
    (
        "plan.md",
        "# Plan\n\n- [ ] call the printer\nTODO: pay rent\n- [x] done already\n",
    ),
    ("sub/idea.txt", "an idea\nno tasks here\n"),
    (
        "mail.eml",
        "Message-ID: <m1@example>\nFrom: Ann <ann@example>\nTo: me@example\nSubject: Lunch\nDate: Tue, 3 Mar 2026 18:02:11 +0000\n\nTODO bring the contract\n",
    ),
    ("ignored.bin", "not a note"),
];

fn setup() -> (Keel, std::path::PathBuf) {
    let keel = Keel::new();
    let notes = keel.folder("notes");
    write_files(&notes, NOTES);
    keel.install_files(&notes);
    keel.ok(&["plugin", "install", plugin_dir("todo").to_str().unwrap()]);
    (keel, notes)
}

#[test]
fn ingest_tasks_audit_and_history() {
    let (keel, notes) = setup();

    let run = keel.run_json("files", None);
    assert_eq!(run["outcome"], "ok", "{run}");
    assert_eq!(run["sync"]["created"], 3, "{run}");

    let docs = keel.records("core/document");
    let mails = keel.records("core/message");
    assert_eq!((docs.len(), mails.len()), (2, 1));
    for r in docs.iter().chain(&mails) {
        for field in ["id", "kind", "version", "created_by"] {
            assert!(!r[field].is_null(), "{field} missing in {r}");
        }
        assert_eq!(r["created_by"], "files@0.1.0");
    }
    assert_eq!(mails[0]["body"]["subject"], "Lunch");

    let run = keel.run_json("todo", None);
    assert_eq!(run["outcome"], "ok", "{run}");
    let tasks = keel.records("core/task");
    let titles: HashSet<String> = tasks
        .iter()
        .map(|t| t["body"]["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tasks.len(), 3, "{titles:?}");
    assert!(
        titles.iter().any(|t| t.contains("call the printer")),
        "{titles:?}"
    );
    assert!(titles.iter().any(|t| t.contains("pay rent")), "{titles:?}");
    assert!(
        titles.iter().any(|t| t.contains("bring the contract")),
        "{titles:?}"
    );

    // Each task links derived-from its note, with provenance naming the run.
    let task = &tasks[0];
    let id = task["id"].as_str().unwrap();
    let shown = keel.json(&["records", "show", id, "--history"]);
    let link = &shown["links"][0];
    assert_eq!(link["rel"], "derived-from");
    assert_eq!(link["from"], id);
    let source = link["to"].as_str().unwrap();
    assert_eq!(shown["history"][0]["actor"], "todo@0.1.0");
    assert_eq!(shown["history"][0]["sources"][0], source);
    assert_eq!(shown["history"][0]["run"], run["run"]);

    // The audit trail of the task names the plugin, action and run.
    let trail = keel.audit(&["--record", id]);
    let create = trail
        .iter()
        .find(|e| e["action"] == "create")
        .expect("a create entry");
    assert_eq!(create["plugin"], "todo");
    assert_eq!(create["outcome"], "allowed");
    assert_eq!(create["run"], run["run"]);
    assert!(create["digest"].as_str().unwrap().starts_with("sha256:"));

    // Reruns write nothing new.
    let again = keel.run_json("files", None);
    assert_eq!(again["sync"]["created"], 0, "{again}");
    assert_eq!(again["sync"]["unchanged"], 3, "{again}");
    keel.run_json("todo", None);
    assert_eq!(keel.records("core/task").len(), 3);

    // A changed file becomes version 2; its new TODO one more task.
    let plan = notes.join("plan.md");
    let text = std::fs::read_to_string(&plan).unwrap() + "- [ ] order boxes\n";
    std::fs::write(&plan, text).unwrap();
    let changed = keel.run_json("files", None);
    assert_eq!(changed["sync"]["updated"], 1, "{changed}");
    let doc = keel
        .records("core/document")
        .into_iter()
        .find(|d| d["body"]["path"] == "plan.md")
        .unwrap();
    assert_eq!(doc["version"], 2);
    let history = keel.json(&["records", "show", doc["id"].as_str().unwrap(), "--history"]);
    assert_eq!(history["history"].as_array().unwrap().len(), 2);
    keel.run_json("todo", None);
    assert_eq!(keel.records("core/task").len(), 4);

    keel.ok(&["audit", "verify"]);
}

#[test]
fn hand_edited_audit_row_is_named_by_verify() {
    let (keel, _notes) = setup();
    keel.run_json("files", None);
    let ok = keel.ok(&["audit", "verify"]);
    assert!(ok.stdout.contains("intact"), "{}", ok.stdout);
    // The store refuses the edit; someone holding the file lifts that first.
    let refused = keel
        .db()
        .execute(
            "UPDATE audit SET detail = 'nothing to see' WHERE seq = 4",
            [],
        )
        .unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
    keel.db()
        .execute_batch(
            "DROP TRIGGER audit_no_update;
             UPDATE audit SET detail = 'nothing to see' WHERE seq = 4",
        )
        .unwrap();
    let bad = keel.fails(&["audit", "verify"]);
    assert!(
        bad.stderr.contains("audit entry 4 does not verify"),
        "{}",
        bad.stderr
    );
}

#[test]
fn kill_during_ingestion_then_rerun_loses_and_duplicates_nothing() {
    let keel = Keel::new();
    let notes = keel.folder("many");
    let total = 1500;
    for i in 0..total {
        std::fs::write(
            notes.join(format!("note-{i:05}.md")),
            format!("# Note {i}\n\nTODO item {i}\n"),
        )
        .unwrap();
    }
    keel.install_files(&notes);

    let mut child = keel.command(&["run", "files"]).spawn().unwrap();
    // Wait (bounded) until part of the folder is in, then kill -9.
    let db_path = keel.home().join("keel.db");
    let mut seen = 0;
    for _ in 0..600 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let conn = rusqlite::Connection::open(&db_path).unwrap();
        seen = conn
            .query_row("SELECT count(*) FROM records", [], |r| r.get::<_, i64>(0))
            .unwrap_or(0);
        if seen >= 50 {
            break;
        }
    }
    assert!(seen >= 50, "ingestion never started");
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = keel.records("core/document").len();
    assert!(
        partial < total,
        "the run finished before it was killed ({partial})"
    );

    let rerun = keel.run_json("files", None);
    assert_eq!(rerun["outcome"], "ok", "{rerun}");
    let docs = keel.records("core/document");
    assert_eq!(docs.len(), total);
    let paths: HashSet<&str> = docs
        .iter()
        .map(|d| d["body"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), total, "duplicate records");
    assert!(docs.iter().all(|d| d["version"] == 1));
    keel.ok(&["audit", "verify"]);
}
