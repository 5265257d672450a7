//! Checkpointed syncs and connector sync state, through the real `files`
//! connector: a backlog larger than one run's deadline completes across
//! runs, a sync killed with `kill -9` goes on from its last checkpoint,
//! `keel up` queues the next sync at once while a connector has more to
//! do, an unchanged folder resyncs without a write, and sync state and
//! checkpoints past their bounds are refused with a clear error.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Keel, artifacts, plugin_dir};

/// Notes in the backlog tests: enough that a debug build on two cores
/// needs several runs of [`SHORT_DEADLINE_MS`], few enough to stay quick.
const BACKLOG: usize = 4_000;
/// The files connector's deadline in the backlog tests.
const SHORT_DEADLINE_MS: u64 = 1_500;
/// The most files a sync stopped by its deadline reads again: those whose
/// records were kept and whose states were still in `files`' batch of 32.
const REDONE_AFTER_DEADLINE: i64 = 32;
/// The most files a sync killed with `kill -9` reads again: those of its
/// last uncommitted group (at most 1,000 calls, two per file).
const REDONE_AFTER_KILL: i64 = 500;

/// Writes `n` notes under `dir`, 500 to a folder.
fn write_notes(dir: &Path, n: usize) {
    for i in 0..n {
        let sub = dir.join(format!("d{:03}", i / 500));
        if i % 500 == 0 {
            std::fs::create_dir_all(&sub).unwrap();
        }
        std::fs::write(
            sub.join(format!("n{i:06}.md")),
            format!("# note {i}\nbody {i}\n"),
        )
        .unwrap();
    }
}

/// Sets every file under `dir` as last modified an hour ago, as a folder
/// is between syncs (a time within seconds of a sync is not trusted).
fn age(dir: &Path) {
    let then = std::time::SystemTime::now() - Duration::from_secs(3600);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            age(&path);
        } else {
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(then).unwrap();
        }
    }
}

/// Installs `files` with `notes` bound and its deadline set to `ms`.
fn install_files_with_deadline(keel: &Keel, notes: &Path, ms: u64) {
    let dir = keel.variant(
        &plugin_dir("files"),
        "files-short",
        &[("timeout_ms = 60_000", &format!("timeout_ms = {ms}"))],
        "",
    );
    let bind = format!("notes={}", notes.display());
    keel.ok(&["plugin", "install", dir.to_str().unwrap(), "--dir", &bind]);
}

fn count(keel: &Keel, sql: &str) -> i64 {
    keel.db().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Runs `files` until a run ends `ok`; every report.
fn sync_until_done(keel: &Keel, most: usize) -> Vec<Value> {
    let mut reports = Vec::new();
    for _ in 0..most {
        let report = keel.run_json("files", None);
        let done = report["outcome"] == "ok";
        reports.push(report);
        if done {
            return reports;
        }
    }
    panic!("files did not finish in {most} runs: {reports:#?}");
}

/// Every note is one record of one version, and the creates the runs
/// made (including the ones answered `existed`) redo at most `redone`
/// files per interruption.
fn assert_ingested_once(keel: &Keel, n: usize, interruptions: i64, redone: i64) {
    let n = i64::try_from(n).unwrap();
    assert_eq!(
        count(
            keel,
            "SELECT count(*) FROM records WHERE kind = 'core/document'"
        ),
        n
    );
    assert_eq!(
        count(
            keel,
            "SELECT count(DISTINCT json_extract(body, '$.path')) FROM records WHERE kind = 'core/document'"
        ),
        n,
        "a note became two records"
    );
    assert_eq!(
        count(
            keel,
            "SELECT count(*) FROM versions v JOIN records r ON r.id = v.record_id WHERE r.kind = 'core/document'"
        ),
        n,
        "a note was written twice"
    );
    let creates = count(
        keel,
        "SELECT count(*) FROM audit WHERE plugin = 'files' AND action = 'create'",
    );
    assert!(
        creates <= n + redone * interruptions,
        "{creates} creates for {n} notes and {interruptions} interruptions: committed work was redone"
    );
    assert_eq!(
        count(
            keel,
            "SELECT count(*) FROM sync_state WHERE plugin = 'files'"
        ),
        n,
        "every note has its state"
    );
}

#[test]
fn a_backlog_larger_than_one_deadline_completes_across_runs_with_no_duplicates() {
    let keel = Keel::new();
    let notes = keel.folder("notes");
    write_notes(&notes, BACKLOG);
    install_files_with_deadline(&keel, &notes, SHORT_DEADLINE_MS);
    let reports = sync_until_done(&keel, 100);
    let (last, cut) = reports.split_last().unwrap();
    assert!(
        !cut.is_empty(),
        "one run took it all; raise BACKLOG: {last}"
    );
    for report in cut {
        assert_eq!(report["outcome"], "deadline", "{report}");
        assert_eq!(report["more"], true, "{report}");
        let detail = report["detail"].as_str().unwrap();
        assert!(
            detail.contains("checkpoints; the next sync goes on"),
            "{detail}"
        );
    }
    assert_eq!(last.get("more"), None, "{last}");
    let interruptions = i64::try_from(cut.len()).unwrap();
    assert_ingested_once(&keel, BACKLOG, interruptions, REDONE_AFTER_DEADLINE);
    // The runs together did about the work of one: no file was read twice
    // but a state batch's worth per stop; what a run redoes is passing, by
    // their state, the files after its last checkpoint (about 1.25x in
    // ten runs of a debug build).
    let fuel: u64 = reports
        .iter()
        .map(|r| r["fuel_consumed"].as_u64().unwrap())
        .sum();
    let one = Keel::new();
    let again = one.folder("notes");
    write_notes(&again, BACKLOG);
    one.install_files(&again);
    let whole = one.run_json("files", None);
    assert_eq!(whole["outcome"], "ok", "{whole}");
    assert_eq!(whole["sync"]["created"], BACKLOG);
    let whole_fuel = whole["fuel_consumed"].as_u64().unwrap();
    assert!(
        fuel < whole_fuel + whole_fuel / 2,
        "{} runs used {fuel} fuel, one uninterrupted run {whole_fuel}",
        reports.len()
    );
    // The last cursor is a small position, whatever the folder's size.
    let cursor: String = keel
        .db()
        .query_row("SELECT cursor FROM plugins WHERE id = 'files'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(cursor.len() < 64, "{cursor}");
}

#[test]
fn a_sync_killed_after_a_checkpoint_goes_on_from_it() {
    let keel = Keel::new();
    let notes = keel.folder("notes");
    write_notes(&notes, BACKLOG);
    keel.install_files(&notes);
    let mut child = keel
        .command(&["run", "files"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cursor = |keel: &Keel| -> Option<String> {
        keel.db()
            .query_row("SELECT cursor FROM plugins WHERE id = 'files'", [], |r| {
                r.get(0)
            })
            .unwrap()
    };
    let started = Instant::now();
    while cursor(&keel).is_none_or(|c| !c.contains("after")) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint came"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sync ended before a checkpoint"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // The checkpoint came with every record before it.
    let at: Value = serde_json::from_str(&cursor(&keel).unwrap()).unwrap();
    let after = at["after"].as_str().unwrap().to_string();
    let before = count(
        &keel,
        &format!(
            "SELECT count(*) FROM records WHERE kind = 'core/document' AND json_extract(body, '$.path') <= '{after}'"
        ),
    );
    let expected = (0..BACKLOG)
        .filter(|i| format!("d{:03}/n{i:06}.md", i / 500) <= after)
        .count();
    assert_eq!(
        before,
        i64::try_from(expected).unwrap(),
        "checkpoint at {after}"
    );
    assert!(expected < BACKLOG, "the kill came after the sync was done");

    let reports = sync_until_done(&keel, 3);
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let created = reports[0]["sync"]["created"].as_u64().unwrap();
    assert!(
        created <= u64::try_from(BACKLOG - expected).unwrap(),
        "{created} created after the kill, though {expected} of {BACKLOG} were checkpointed"
    );
    assert_ingested_once(&keel, BACKLOG, 1, REDONE_AFTER_KILL);
    // The interrupted run is closed as lost by the next `keel up`'s
    // supervisor; its checkpoint is in the audit log meanwhile.
    assert!(
        count(
            &keel,
            "SELECT count(*) FROM audit WHERE action = 'checkpoint'"
        ) >= 1
    );
}

#[test]
fn files_resync_with_nothing_changed_writes_nothing_and_sees_edits_and_deletions() {
    let keel = Keel::new();
    let notes = keel.folder("notes");
    write_notes(&notes, 300);
    std::fs::write(notes.join("skip.bin"), "not a note").unwrap();
    age(&notes);
    keel.install_files(&notes);
    let first = keel.run_json("files", None);
    assert_eq!(first["sync"]["created"], 300, "{first}");
    let audit = count(&keel, "SELECT count(*) FROM audit");
    let state = count(&keel, "SELECT count(*) FROM sync_state");
    let cursor = |keel: &Keel| -> String {
        keel.db()
            .query_row("SELECT cursor FROM plugins WHERE id = 'files'", [], |r| {
                r.get(0)
            })
            .unwrap()
    };
    let before = cursor(&keel);

    let again = keel.run_json("files", None);
    assert_eq!(again["sync"]["created"], 0, "{again}");
    assert_eq!(again["sync"]["updated"], 0, "{again}");
    assert_eq!(again["sync"]["unchanged"], 300, "{again}");
    assert_eq!(
        count(&keel, "SELECT count(*) FROM audit"),
        audit,
        "a resync wrote to the audit log"
    );
    assert_eq!(count(&keel, "SELECT count(*) FROM versions"), 300);
    assert_eq!(count(&keel, "SELECT count(*) FROM sync_state"), state);
    assert_eq!(cursor(&keel), before);

    // An edit of the same size right after a sync is still seen (its time
    // is too fresh to vouch for it); a deleted note's state goes, its
    // record stays.
    let edited = notes.join("d000/n000007.md");
    std::fs::write(&edited, "# note 7\nBODY 7\n").unwrap();
    std::fs::remove_file(notes.join("d000/n000008.md")).unwrap();
    let third = keel.run_json("files", None);
    assert_eq!(third["sync"]["updated"], 1, "{third}");
    assert_eq!(third["sync"]["unchanged"], 298, "{third}");
    assert_eq!(count(&keel, "SELECT count(*) FROM sync_state"), 299);
    assert_eq!(
        count(
            &keel,
            "SELECT count(*) FROM sync_state WHERE key = 'path:d000/n000008.md'"
        ),
        0
    );
    assert_eq!(
        count(
            &keel,
            "SELECT count(*) FROM records WHERE kind = 'core/document'"
        ),
        300
    );
    let body: String = keel
        .db()
        .query_row(
            "SELECT body FROM records WHERE json_extract(body, '$.path') = 'd000/n000007.md'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(body.contains("BODY 7"), "{body}");
}

#[test]
fn keel_up_queues_the_next_sync_at_once_while_a_connector_has_more_to_do() {
    let keel = Keel::new();
    keel.install_test_plugin(artifacts::SYNCER_DIR, &["--config", "op=more"]);
    let notes = keel.folder("notes");
    write_notes(&notes, BACKLOG);
    install_files_with_deadline(&keel, &notes, SHORT_DEADLINE_MS);
    let up = keel
        .command(&["up", "--idle-ms", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let done = |keel: &Keel| {
        count(
            keel,
            "SELECT count(*) FROM records WHERE kind = 'core/document'",
        ) == i64::try_from(BACKLOG).unwrap()
            && count(
                keel,
                "SELECT count(*) FROM records WHERE kind = 'test/item'",
            ) == 3
            && count(
                keel,
                "SELECT count(*) FROM jobs WHERE state IN ('queued', 'leased')",
            ) == 0
    };
    let started = Instant::now();
    while !done(&keel) && started.elapsed() < Duration::from_secs(180) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, stderr) = crate::up::stop(up);
    assert!(
        done(&keel),
        "the backlogs did not finish under keel up\n{stderr}"
    );
    // Each follow-up came from a run with more to do, at once: both
    // connectors' interval triggers are 15 minutes or more apart.
    let more = |plugin: &str| {
        count(
            &keel,
            &format!(
                "SELECT count(*) FROM jobs WHERE plugin = '{plugin}' AND cause = 'more' AND state = 'done'"
            ),
        )
    };
    assert_eq!(
        more("test-syncer"),
        2,
        "two syncs said more, the third did not"
    );
    assert!(
        more("files") >= 1,
        "files was stopped by its deadline at least once"
    );
    assert_eq!(
        count(&keel, "SELECT count(*) FROM jobs WHERE state = 'dead'"),
        0
    );
    assert_eq!(
        count(
            &keel,
            "SELECT count(*) FROM jobs WHERE cause = 'more' AND depth <> 0"
        ),
        0,
        "a follow-up is no cascade"
    );
    assert_ingested_once(&keel, BACKLOG, more("files"), REDONE_AFTER_DEADLINE);
}

#[test]
fn keel_run_says_a_connector_has_more_to_do() {
    let keel = Keel::new();
    keel.install_test_plugin(artifacts::SYNCER_DIR, &["--config", "op=more"]);
    let ran = keel.ok(&["run", "test-syncer"]);
    assert!(
        ran.stdout
            .contains("has more to do: run `keel run test-syncer` again"),
        "{}",
        ran.stdout
    );
    assert_eq!(keel.run_json("test-syncer", None)["more"], true);
    let third = keel.run_json("test-syncer", None);
    assert_eq!(third.get("more"), None, "{third}");
}

#[test]
fn sync_state_and_checkpoints_past_their_bounds_are_refused_with_a_clear_error() {
    let keel = Keel::new();
    keel.install_test_plugin(artifacts::SYNCER_DIR, &["--config", "op=limits"]);
    let report = keel.run_json("test-syncer", None);
    assert_eq!(report["outcome"], "ok", "{report}");
    let answers: Vec<(String, String)> = keel
        .records("test/item")
        .iter()
        .map(|r| {
            let body = &r["body"];
            (
                body["try"].as_str().unwrap().to_string(),
                body["answer"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let answer = |name: &str| -> &str {
        &answers
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name}: {answers:?}"))
            .1
    };
    for (name, expected) in [
        (
            "empty-key",
            "Error::Invalid(\"a sync-state key is empty; name each item",
        ),
        (
            "long-key",
            "Error::Limit(\"a sync-state key is 4097 bytes; the limit is 4096",
        ),
        (
            "big-value",
            "Error::Limit(\"a sync-state value is 65537 bytes; the limit is 65536",
        ),
        (
            "many-keys",
            "Error::Limit(\"sync-state.get names 1001 keys, over the 1000 one call may; split it",
        ),
        (
            "zero-page",
            "Error::Invalid(\"a sync-state scan asked for 0 entries",
        ),
        (
            "big-cursor",
            "Error::Limit(\"the cursor is 4194305 bytes, over the 4194304-byte limit; keep per-item state in sync-state",
        ),
        ("within", "ok"),
        ("checkpoint", "ok"),
    ] {
        assert!(
            answer(name).starts_with(expected),
            "{name}: {}",
            answer(name)
        );
    }
    // Refusals are audited; the one checkpoint within bounds too.
    let refused = count(
        &keel,
        "SELECT count(*) FROM audit WHERE plugin = 'test-syncer' AND outcome <> 'allowed'",
    );
    assert_eq!(refused, 6);
    assert_eq!(
        count(
            &keel,
            "SELECT count(*) FROM audit WHERE action = 'checkpoint' AND outcome = 'allowed'"
        ),
        1
    );
    // An agent has no sync to checkpoint.
    keel.install_test_plugin(artifacts::WRITER_DIR, &[]);
    let agent = keel.run_json("test-writer", Some(r#"{"op":"checkpoint"}"#));
    let summary = agent["summary"].as_str().unwrap();
    assert!(
        summary.contains("Error::Denied(\"checkpoint is only for a connector's sync, and test-writer@0.1.0 is running `handle`"),
        "{summary}"
    );
}
