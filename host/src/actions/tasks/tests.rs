//! Capability tests of claims, without Wasm.

use std::sync::{Arc, Barrier};

use super::*;
use crate::actions;
use crate::testing::Fixture;

type Agent = Fixture;

impl Agent {
    fn with(id: &str, actions: &[&str]) -> Agent {
        Fixture::plugin(id, &["core/task"], actions, "")
    }
}

fn worker(id: &str) -> Agent {
    Agent::with(id, &["create", "claim", "complete"])
}

fn new_task(s: &mut Store, title: &str) -> String {
    let planner = Agent::with("planner", &["create"]);
    let body = json!({"title": title, "state": "open"}).to_string();
    actions::create(s, planner.caller(), TASK, &body, None, &Default::default())
        .unwrap()
        .record
        .id
}

fn body(s: &Store, id: &str) -> Value {
    serde_json::from_str(&records::get(s.conn(), id).unwrap().unwrap().body).unwrap()
}

#[test]
fn one_claim_wins_a_race_of_eight() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    let task = new_task(&mut Store::open(&path).unwrap(), "race");
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (path, task, barrier) = (path.clone(), task.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut s = Store::open(&path).unwrap();
                let me = worker(&format!("executor-{i}"));
                barrier.wait();
                claim(&mut s, me.caller(), &task, 60_000)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    crate::testing::assert_one_winner(&results);
    let s = Store::open(&path).unwrap();
    let b = body(&s, &task);
    assert_eq!(b["state"], "claimed");
    assert_eq!(b["claims"], 1);
    // Seven refused claims and one allowed, all audited.
    let claims: Vec<String> = crate::store::audit::list(s.conn(), &Default::default())
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "claim")
        .map(|e| e.outcome)
        .collect();
    assert_eq!(claims.iter().filter(|o| *o == "allowed").count(), 1);
    assert_eq!(claims.iter().filter(|o| *o == "conflict").count(), 7);
}

#[test]
fn only_the_holder_completes_or_releases() {
    let mut s = Store::open_in_memory().unwrap();
    let task = new_task(&mut s, "write the report");
    let (a, b) = (worker("a"), worker("b"));
    let err = complete(
        &mut s,
        a.caller(),
        &task,
        End::Done,
        "{}",
        &Default::default(),
    )
    .unwrap_err();
    assert!(
        err.message().contains("not claimed; claim it first"),
        "{err:?}"
    );
    claim(&mut s, a.caller(), &task, 60_000).unwrap();
    let err = claim(&mut s, b.caller(), &task, 60_000).unwrap_err();
    assert!(err.message().contains("is claimed by a until"), "{err:?}");
    let err = release(&mut s, b.caller(), &task).unwrap_err();
    assert!(err.message().contains("claimed by a, not b"), "{err:?}");
    release(&mut s, a.caller(), &task).unwrap();
    assert_eq!(body(&s, &task)["state"], "open");

    claim(&mut s, b.caller(), &task, 60_000).unwrap();
    let opts = WriteOptions {
        note: Some("wrote it".into()),
        ..Default::default()
    };
    let done = complete(
        &mut s,
        b.caller(),
        &task,
        End::Done,
        r#"{"pages":3}"#,
        &opts,
    )
    .unwrap();
    let v: Value = serde_json::from_str(&done.body).unwrap();
    assert_eq!(
        (
            v["state"].as_str(),
            v["result"]["pages"].as_i64(),
            v.get("claim")
        ),
        (Some("done"), Some(3), None)
    );
    assert_eq!(v["ended_by"], "b");
    // A done task cannot be claimed again.
    let err = claim(&mut s, a.caller(), &task, 60_000).unwrap_err();
    assert!(
        err.message().contains("is done; only open tasks"),
        "{err:?}"
    );
    // Every step is a version: created, claimed, released, claimed, done.
    let history = records::history(s.conn(), &task).unwrap();
    assert_eq!(history.len(), 5);
    assert_eq!(history[4].note.as_deref(), Some("wrote it"));
    // Without the grant, nothing.
    let nobody = Agent::with("nobody", &["create"]);
    let err = claim(&mut s, nobody.caller(), &task, 1000).unwrap_err();
    assert!(matches!(err, CallError::Denied(_)), "{err:?}");
    // Not a task, bad ttl.
    let err = claim(&mut s, a.caller(), &task, 0).unwrap_err();
    assert!(matches!(err, CallError::Invalid(_)), "{err:?}");
}

/// Moves task `id`'s claim into the past, as if time had passed.
fn expire(s: &Store, id: &str) {
    s.conn()
        .execute(
            "UPDATE records SET body = json_set(body, '$.claim.until', '2000-01-01T00:00:00.000Z') WHERE id = ?1",
            [id],
        )
        .unwrap();
}

#[test]
fn expired_claims_reopen_then_escalate_and_lost_runs_close() {
    let mut s = Store::open_in_memory().unwrap();
    let task = new_task(&mut s, "flaky");
    let a = worker("a");
    // An expired claim may be taken by anyone, even before the supervisor.
    claim(&mut s, a.caller(), &task, 60_000).unwrap();
    expire(&s, &task);
    let err = complete(
        &mut s,
        a.caller(),
        &task,
        End::Done,
        "{}",
        &Default::default(),
    )
    .unwrap_err();
    assert!(err.message().contains("expired"), "{err:?}");
    claim(&mut s, worker("b").caller(), &task, 60_000).unwrap();
    expire(&s, &task);
    let now = Utc::now();
    assert_eq!(supervise(&mut s, now).unwrap().reopened, 1);
    assert_eq!(body(&s, &task)["state"], "open");
    assert_eq!(supervise(&mut s, now).unwrap(), Supervised::default());
    // The third claim that expires blocks it for the operator.
    claim(&mut s, a.caller(), &task, 60_000).unwrap();
    expire(&s, &task);
    let pass = supervise(&mut s, now).unwrap();
    assert_eq!((pass.reopened, pass.escalated), (0, 1));
    let b = body(&s, &task);
    assert_eq!(b["state"], "blocked");
    assert!(
        b["escalated"]
            .as_str()
            .unwrap()
            .starts_with("3 claims expired"),
        "{b}"
    );
    let items = crate::review::list(s.conn()).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].kind, "blocked-task");
    crate::review::decide(&mut s, &task, &crate::review::Decision::Approve).unwrap();
    let b = body(&s, &task);
    assert_eq!(
        (b["state"].as_str(), b["claims"].as_i64()),
        (Some("open"), Some(0))
    );
    assert!(b.get("escalated").is_none());

    // A run that started long ago and never ended.
    s.conn()
        .execute(
            "INSERT INTO runs (id, plugin, plugin_version, digest, export, trigger_json, started_at, outcome)
             VALUES ('old', 'gone', '0.1.0', 'sha256:00', 'handle', '{}', '2000-01-01T00:00:00.000Z', 'running'),
                    ('new', 'gone', '0.1.0', 'sha256:00', 'handle', '{}', ?1, 'running')",
            [stamp(now)],
        )
        .unwrap();
    assert_eq!(supervise(&mut s, now).unwrap().lost_runs, 1);
    let outcome: String = s
        .conn()
        .query_row("SELECT outcome FROM runs WHERE id = 'old'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(outcome, "lost");
    assert_eq!(crate::store::audit::verify(s.conn()).unwrap().broken, None);
}

/// M4: `complete` was a write beside the write path's checks. Sources must
/// exist and be few, the note is bounded, the confidence is a confidence,
/// and an unsure result waits for review like any other write.
#[test]
fn m4_complete_checks_sources() {
    let mut s = Store::open_in_memory().unwrap();
    let task = new_task(&mut s, "file the invoice");
    let me = worker("a");
    claim(&mut s, me.caller(), &task, 60_000).unwrap();
    let before = records::get(s.conn(), &task).unwrap().unwrap().version;
    let refusals = [
        (
            WriteOptions {
                sources: vec!["no-such-record".into()],
                ..Default::default()
            },
            "source record no-such-record does not exist",
        ),
        (
            WriteOptions {
                sources: vec![task.clone(); crate::limits::MAX_SOURCES + 1],
                ..Default::default()
            },
            "sources given; at most",
        ),
        (
            WriteOptions {
                note: Some("n".repeat(crate::limits::MAX_NOTE_BYTES + 1)),
                ..Default::default()
            },
            "note",
        ),
        (
            WriteOptions {
                confidence: Some(1.5),
                ..Default::default()
            },
            "confidence 1.5 is outside 0.0..=1.0",
        ),
    ];
    for (opts, says) in refusals {
        let err = complete(&mut s, me.caller(), &task, End::Done, "{}", &opts).unwrap_err();
        assert!(err.message().contains(says), "{says}: {err:?}");
        // Nothing was written: the task is still the claimed version.
        let now = records::get(s.conn(), &task).unwrap().unwrap();
        assert_eq!(now.version, before);
        assert_eq!(body(&s, &task)["state"], "claimed");
    }
    // A real source is kept; an unsure result waits for review under the
    // default gate.
    let source = new_task(&mut s, "the invoice itself");
    let opts = WriteOptions {
        sources: vec![source.clone()],
        confidence: Some(0.6),
        ..Default::default()
    };
    let done = complete(&mut s, me.caller(), &task, End::Done, "{}", &opts).unwrap();
    let history = records::history(s.conn(), &task).unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.version, done.version);
    assert_eq!(last.sources, vec![source]);
    assert_eq!(last.review.as_deref(), Some("pending"));
    // And the store still takes the next call.
    let next = new_task(&mut s, "next");
    claim(&mut s, me.caller(), &next, 60_000).unwrap();
}
