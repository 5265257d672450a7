//! The job queue survives its workers: `kill -9` during a burst of 10,000
//! jobs loses and repeats nothing, and a hung worker's job is taken over
//! once its lease expires.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::harness::{Keel, artifacts};
use crate::up::stop;

/// The writer with a 2 s deadline, so its leases last 7 s.
fn install_fast_writer(keel: &Keel) {
    let dir = keel.variant(
        Path::new(artifacts::WRITER_DIR),
        "writer-fast",
        &[("memory_mb = 32", "memory_mb = 32\ntimeout_ms = 2000")],
        "",
    );
    keel.ok(&["plugin", "install", dir.to_str().unwrap()]);
}

fn up(keel: &Keel, workers: &str) -> Child {
    keel.command(&[
        "up",
        "--idle-ms",
        "50",
        "--lease-ms",
        "500",
        "--workers",
        workers,
    ])
    // Warnings only: a pipe nobody reads until the end holds 64 KiB, and
    // thousands of jobs log more than that at info.
    .env("KEEL_LOG", "warn")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

fn jobs_in(keel: &Keel, state: &str) -> i64 {
    keel.db()
        .query_row("SELECT count(*) FROM jobs WHERE state = ?1", [state], |r| {
            r.get(0)
        })
        .unwrap()
}

/// Polls `done` every 50 ms for at most `secs` seconds.
fn wait_for(secs: u64, done: impl Fn() -> bool) -> bool {
    for _ in 0..secs * 20 {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

#[test]
fn kill_9_during_a_burst_of_10000_jobs_loses_and_repeats_nothing() {
    const N: i64 = 10_000;
    let keel = Keel::new();
    // Scheduling 10,000 jobs takes the writer's usual deadline; the jobs
    // then run under the fast one.
    keel.install_test_plugin(artifacts::WRITER_DIR, &[]);
    let burst = keel.run_json("test-writer", Some(r#"{"op":"burst","n":10000}"#));
    assert_eq!(burst["outcome"], "ok", "{burst}");
    install_fast_writer(&keel);
    assert_eq!(jobs_in(&keel, "queued"), N);

    let mut first = up(&keel, "2");
    assert!(
        wait_for(120, || jobs_in(&keel, "done") >= 1000),
        "keel up did not get going"
    );
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let done_before = jobs_in(&keel, "done");
    assert!(done_before < N, "the burst finished before the kill");
    // Jobs the killed workers held stay leased until their lease expires.
    let held: Vec<String> = keel
        .db()
        .prepare("SELECT id FROM jobs WHERE state = 'leased'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();

    let second = up(&keel, "2");
    let finished = wait_for(300, || jobs_in(&keel, "done") == N);
    let (stdout, stderr) = stop(second);
    assert!(
        finished,
        "not every job ran\n{stdout}\n{}",
        &stderr[stderr.len().saturating_sub(3000)..]
    );

    let db = keel.db();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM jobs WHERE state <> 'done'"), 0);
    // Every effect exactly once: one record per job, one version each.
    assert_eq!(
        count("SELECT count(*) FROM records WHERE kind = 'test/item'"),
        N
    );
    assert_eq!(
        count(
            "SELECT count(DISTINCT json_extract(body, '$.text')) FROM records WHERE kind = 'test/item'"
        ),
        N
    );
    assert_eq!(count("SELECT count(*) FROM versions"), N);
    // What the killed workers held ran again.
    for id in &held {
        let attempts: i64 = db
            .query_row("SELECT attempts FROM jobs WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(
            attempts >= 2,
            "job {id} held at the kill ran {attempts} time(s)"
        );
    }
    keel.ok(&["audit", "verify"]);
}

#[test]
fn a_hung_worker_loses_its_job_to_another_after_the_lease() {
    let keel = Keel::new();
    install_fast_writer(&keel);
    let job = keel.run_json(
        "test-writer",
        Some(r#"{"op":"schedule","input":{"op":"create","text":"slow","sleep_ms":1500}}"#),
    );
    assert_eq!(job["outcome"], "ok", "{job}");
    let id = job["summary"].as_str().unwrap().to_string();

    let hung = up(&keel, "1");
    assert!(
        wait_for(30, || jobs_in(&keel, "leased") == 1),
        "the first worker never leased the job"
    );
    signal(&hung, "-STOP");
    let rescuer = up(&keel, "1");
    let rescued = wait_for(60, || jobs_in(&keel, "done") == 1);
    signal(&hung, "-CONT");
    // The hung worker wakes past its run's deadline: its run ends, and it
    // finds the job is no longer its own.
    std::thread::sleep(Duration::from_millis(1500));
    let (_, hung_err) = stop(hung);
    let (_, rescuer_err) = stop(rescuer);
    assert!(rescued, "the job was not taken over\n{rescuer_err}");
    assert!(
        hung_err.contains("after its lease passed to another worker"),
        "{hung_err}"
    );
    let (attempts, owner): (i64, Option<String>) = keel
        .db()
        .query_row(
            "SELECT attempts, lease_owner FROM jobs WHERE id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((attempts, owner), (2, None));
    assert_eq!(keel.records("test/item").len(), 1);
}
