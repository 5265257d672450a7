//! `keel up` executes due jobs, dead-letters what retrying cannot fix, leaves
//! future jobs queued, and stops cleanly on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use crate::harness::{Keel, artifacts};

pub fn count(keel: &Keel, state: &str) -> usize {
    keel.json(&["jobs", "list", "--state", state])
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn up_runs_due_jobs_and_stops_on_sigterm() {
    let keel = Keel::new();
    keel.install_test_plugin(artifacts::WRITER_DIR, &[]);
    let schedule = |input: &str| {
        let v = keel.run_json("test-writer", Some(input));
        assert_eq!(v["outcome"], "ok", "{v}");
        v["summary"].as_str().unwrap().to_string()
    };
    let good = schedule(r#"{"op":"schedule","input":{"op":"create","text":"from a job"}}"#);
    let bad = schedule(r#"{"op":"schedule","input":{"op":"explode"}}"#);
    let later = schedule(
        r#"{"op":"schedule","input":{"op":"create","text":"later"},"at":"2099-01-01T00:00:00Z"}"#,
    );

    let up = start(&keel);
    let mut settled = false;
    for _ in 0..300 {
        std::thread::sleep(Duration::from_millis(50));
        if count(&keel, "done") == 1 && count(&keel, "dead") == 1 {
            settled = true;
            break;
        }
    }
    let (stdout, stderr) = stop(up);
    assert!(settled, "jobs did not settle\n{stderr}");
    assert!(stdout.contains("1 done, 0 to retry, 1 dead"), "{stdout}");

    let jobs = keel.json(&["jobs", "list"]);
    let state_of = |id: &str| {
        jobs.as_array()
            .unwrap()
            .iter()
            .find(|j| j["id"] == id)
            .map(|j| j["state"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(state_of(&good), "done");
    assert_eq!(state_of(&bad), "dead");
    assert_eq!(state_of(&later), "queued");
    let dead = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == bad.as_str())
        .unwrap();
    assert_eq!(dead["attempts"], 1, "invalid input is not retried");
    assert!(
        dead["last_error"].as_str().unwrap().contains("op must be"),
        "{dead}"
    );

    // The job's record carries the job in its provenance.
    let items = keel.records("test/item");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["body"]["text"], "from a job");
    let shown = keel.json(&[
        "records",
        "show",
        items[0]["id"].as_str().unwrap(),
        "--history",
    ]);
    let trigger: serde_json::Value =
        serde_json::from_str(shown["history"][0]["trigger"].as_str().unwrap()).unwrap();
    assert_eq!(trigger["kind"], "schedule");
    assert_eq!(trigger["job"], good.as_str());
}

/// Runs `keel up --idle-ms 100` plus `args` until `done` holds and no job
/// is queued or leased (failing the test after 20 s), then stops it with
/// SIGTERM; returns its stdout and stderr.
pub fn up_until(keel: &Keel, args: &[&str], done: impl Fn(&Keel) -> bool) -> (String, String) {
    let mut command = vec!["up", "--idle-ms", "100"];
    command.extend_from_slice(args);
    let up = keel
        .command(&command)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut settled = false;
    for _ in 0..400 {
        std::thread::sleep(Duration::from_millis(50));
        if done(keel) && count(keel, "queued") == 0 && count(keel, "leased") == 0 {
            settled = true;
            break;
        }
    }
    let (stdout, stderr) = stop(up);
    assert!(settled, "keel up did not settle\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// `keel up` with a short idle poll, its output captured.
pub fn start(keel: &Keel) -> std::process::Child {
    keel.command(&["up", "--idle-ms", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// SIGTERM, then the exit must be clean; returns stdout and stderr.
pub fn stop(up: std::process::Child) -> (String, String) {
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &up.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = up.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "keel up failed: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

#[test]
fn connector_syncs_on_its_interval_and_the_agent_wakes_on_new_records() {
    let keel = Keel::new();
    let notes = keel.folder("notes");
    crate::harness::write_files(
        &notes,
        &[
            ("a.md", "# A\n- [ ] first\n"),
            ("b.txt", "TODO: second\n"),
            ("c.md", "nothing to do\n"),
        ],
    );
    keel.install_files(&notes);
    let todo = crate::harness::plugin_dir("todo");
    keel.ok(&["plugin", "install", todo.to_str().unwrap()]);

    up_until(&keel, &[], |k| k.records("core/task").len() == 2);
    let jobs = keel.json(&["jobs", "list", "--limit", "1000"]);
    let jobs = jobs.as_array().unwrap();
    let by = |plugin: &str, cause: &str| {
        jobs.iter()
            .filter(|j| j["plugin"] == plugin && j["cause"] == cause)
            .count()
    };
    // One sync at start; one todo run per ingested note (three documents).
    assert_eq!(by("files", "interval"), 1, "{jobs:?}");
    assert_eq!(by("todo", "event"), 3, "{jobs:?}");
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{jobs:?}");
    // The todo agent's own task records woke nobody.
    assert_eq!(jobs.len(), 4);
    keel.ok(&["audit", "verify"]);
}

#[test]
fn a_plugin_that_cannot_start_dead_letters_its_job_and_the_worker_goes_on() {
    let keel = Keel::new();
    keel.install_test_plugin(artifacts::WRITER_DIR, &[]);
    let v = keel.run_json(
        "test-writer",
        Some(r#"{"op":"schedule","input":{"op":"create","text":"x"}}"#),
    );
    assert_eq!(v["outcome"], "ok", "{v}");
    std::fs::remove_file(keel.home().join("plugins/test-writer/component.wasm")).unwrap();
    let up = start(&keel);
    for _ in 0..300 {
        std::thread::sleep(Duration::from_millis(50));
        if count(&keel, "dead") == 1 {
            break;
        }
    }
    let (stdout, stderr) = stop(up);
    assert!(
        stdout.contains("0 done, 0 to retry, 1 dead"),
        "{stdout}\n{stderr}"
    );
    let dead = &keel.json(&["jobs", "list", "--state", "dead"])[0];
    let error = dead["last_error"].as_str().unwrap();
    assert!(
        error.contains("could not start") && error.contains("reinstall it"),
        "{error}"
    );
    // It waits for the operator.
    let items = keel.json(&["review", "list"]);
    assert_eq!(items[0]["kind"], "dead-job");
}

#[test]
fn a_plugin_limited_to_one_run_at_once_never_overlaps_under_two_workers() {
    let keel = Keel::new();
    let dir = keel.variant(
        std::path::Path::new(artifacts::WRITER_DIR),
        "single",
        &[("memory_mb = 32", "memory_mb = 32\nconcurrency = 1")],
        "",
    );
    keel.ok(&["plugin", "install", dir.to_str().unwrap()]);
    for i in 0..4 {
        let input = format!(
            r#"{{"op":"schedule","input":{{"op":"create","text":"slow {i}","sleep_ms":200}}}}"#
        );
        assert_eq!(keel.run_json("test-writer", Some(&input))["outcome"], "ok");
    }
    up_until(&keel, &["--workers", "2"], |k| count(k, "done") == 4);
    // The four job runs, in start order, each ended before the next began.
    let runs: Vec<(String, String)> = keel
        .db()
        .prepare(
            "SELECT started_at, ended_at FROM runs WHERE job_id IS NOT NULL ORDER BY started_at",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(runs.len(), 4);
    for pair in runs.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "runs overlap: {runs:?}");
    }
}
