//! Capability tests of the write path and the audit chain, without Wasm.

use std::sync::{Arc, Barrier};

use super::*;
use crate::actions::{self, Caller, WriteOptions};
use crate::grant::Grant;
use crate::manifest::Policy;
use crate::records;
use crate::testing::Fixture;

fn grant(kinds: &[&str], actions: &[&str]) -> Grant {
    Fixture::new(kinds, actions).grant
}

fn actor() -> Actor {
    Fixture::new(&[], &[]).actor
}

fn count(store: &Store, table: &str) -> i64 {
    store
        .conn()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn create_writes_record_version_event_and_audit_together() {
    let mut s = Store::open_in_memory().unwrap();
    let fx = Fixture::new(&["core/note"], &["create"]);
    let c = fx.caller();
    let created = actions::create(
        &mut s,
        c,
        "core/note",
        r#"{"title":"x"}"#,
        None,
        &WriteOptions::default(),
    )
    .unwrap();
    assert!(!created.existed);
    assert_eq!(created.record.version, 1);
    assert_eq!(created.record.created_by, "t@0.1.0");
    for table in ["records", "versions", "events", "audit"] {
        assert_eq!(count(&s, table), 1, "{table}");
    }
}

#[test]
fn identity_makes_create_idempotent() {
    let mut s = Store::open_in_memory().unwrap();
    let fx = Fixture::new(&["core/document"], &["create"]);
    let c = fx.caller();
    let id = Some(("t:notes", "a.md"));
    let first = actions::create(
        &mut s,
        c,
        "core/document",
        "{}",
        id,
        &WriteOptions::default(),
    )
    .unwrap();
    let again = actions::create(
        &mut s,
        c,
        "core/document",
        r#"{"x":1}"#,
        id,
        &WriteOptions::default(),
    )
    .unwrap();
    assert!(again.existed);
    assert_eq!(again.record, first.record);
    assert_eq!(count(&s, "records"), 1);
    // Same identity, other kind: a conflict, nothing written.
    let g2 = grant(&["core/document", "core/note"], &["create"]);
    let c2 = Caller { grant: &g2, ..c };
    let err =
        actions::create(&mut s, c2, "core/note", "{}", id, &WriteOptions::default()).unwrap_err();
    assert!(matches!(err, CallError::Conflict(_)), "{err:?}");
    assert_eq!(count(&s, "records"), 1);
}

#[test]
fn stale_update_is_a_conflict_and_changes_nothing() {
    let mut s = Store::open_in_memory().unwrap();
    let fx = Fixture::new(&["core/note"], &["create", "update"]);
    let c = fx.caller();
    let r = actions::create(
        &mut s,
        c,
        "core/note",
        r#"{"v":1}"#,
        None,
        &WriteOptions::default(),
    )
    .unwrap()
    .record;
    let r2 = actions::update(&mut s, c, &r.id, 1, r#"{"v":2}"#, &WriteOptions::default()).unwrap();
    assert_eq!(r2.version, 2);
    let err =
        actions::update(&mut s, c, &r.id, 1, r#"{"v":3}"#, &WriteOptions::default()).unwrap_err();
    assert!(matches!(err, CallError::Conflict(_)), "{err:?}");
    let now = records::get(s.conn(), &r.id).unwrap().unwrap();
    assert_eq!((now.version, now.body.as_str()), (2, r#"{"v":2}"#));
    assert_eq!(records::history(s.conn(), &r.id).unwrap().len(), 2);
    let last = audit::list(s.conn(), &audit::Filter::default())
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (last.action.as_str(), last.outcome.as_str()),
        ("update", "conflict")
    );
}

#[test]
fn idempotency_key_replays_the_first_result() {
    let mut s = Store::open_in_memory().unwrap();
    let fx = Fixture::new(&["core/note"], &["create"]);
    let c = fx.caller();
    let opts = WriteOptions {
        idempotency_key: Some("k1".into()),
        ..WriteOptions::default()
    };
    let one = actions::create(&mut s, c, "core/note", "{}", None, &opts).unwrap();
    let two = actions::create(&mut s, c, "core/note", "{}", None, &opts).unwrap();
    assert_eq!(one, two);
    assert_eq!(count(&s, "records"), 1);
}

#[test]
fn denied_write_is_audited_and_writes_nothing() {
    let mut s = Store::open_in_memory().unwrap();
    let fx = Fixture::new(&["core/note"], &["create"]);
    let c = fx.caller();
    let err = actions::create(
        &mut s,
        c,
        "core/contact",
        "{}",
        None,
        &WriteOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        CallError::Denied("writing records of kind `core/contact` is not granted".into())
    );
    assert_eq!(count(&s, "records"), 0);
    let entries = audit::list(s.conn(), &audit::Filter::default()).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].outcome, "denied");
    assert!(
        entries[0].detail.contains("core/contact"),
        "{}",
        entries[0].detail
    );
}

#[test]
fn send_below_threshold_needs_review() {
    let mut s = Store::open_in_memory().unwrap();
    let a = actor();
    let mut g = grant(&["core/note"], &["send"]);
    g.capabilities.send = vec!["email".into()];
    // The operator lets every send out; the manifest's 0.8 is stricter.
    g.review_below = crate::manifest::ReviewGate::Below(0.0);
    let p = Policy { review_below: 0.8 };
    let c = Caller {
        actor: &a,
        grant: &g,
        policy: &p,
    };
    let low = WriteOptions {
        confidence: Some(0.5),
        ..WriteOptions::default()
    };
    let high = WriteOptions {
        confidence: Some(0.9),
        ..WriteOptions::default()
    };
    assert_eq!(
        actions::send(&mut s, c, "email", "{}", &low).unwrap().state,
        "needs-review"
    );
    assert_eq!(
        actions::send(&mut s, c, "email", "{}", &high)
            .unwrap()
            .state,
        "queued"
    );
    let err = actions::send(&mut s, c, "sms", "{}", &high).unwrap_err();
    assert!(matches!(err, CallError::Denied(_)));
}

#[test]
fn verify_names_an_edited_row() {
    let mut s = Store::open_in_memory().unwrap();
    let fx = Fixture::new(&["core/note"], &["create"]);
    let c = fx.caller();
    for _ in 0..5 {
        actions::create(&mut s, c, "core/note", "{}", None, &WriteOptions::default()).unwrap();
    }
    assert_eq!(audit::verify(s.conn()).unwrap().broken, None);
    // Triggers refuse the edit; someone holding the file drops them first.
    s.conn()
        .execute_batch(
            "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;
             UPDATE audit SET outcome = 'denied' WHERE seq = 3",
        )
        .unwrap();
    let broken = audit::verify(s.conn()).unwrap().broken.unwrap();
    assert_eq!(broken.seq, 3);
    s.conn()
        .execute("DELETE FROM audit WHERE seq = 3", [])
        .unwrap();
    assert_eq!(audit::verify(s.conn()).unwrap().broken.unwrap().seq, 3);
}

#[test]
fn concurrent_updates_have_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    let mut s = Store::open(&path).unwrap();
    let fx = Fixture::new(&["core/note"], &["create", "update"]);
    let c = fx.caller();
    let id = actions::create(&mut s, c, "core/note", "{}", None, &WriteOptions::default())
        .unwrap()
        .record
        .id;
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (path, id, barrier) = (path.clone(), id.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut s = Store::open(&path).unwrap();
                let fx = Fixture::new(&["core/note"], &["create", "update"]);
                let c = fx.caller();
                barrier.wait();
                actions::update(
                    &mut s,
                    c,
                    &id,
                    1,
                    &format!(r#"{{"by":{i}}}"#),
                    &WriteOptions::default(),
                )
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    crate::testing::assert_one_winner(&results);
    let s = Store::open(&path).unwrap();
    assert_eq!(records::get(s.conn(), &id).unwrap().unwrap().version, 2);
    assert_eq!(audit::verify(s.conn()).unwrap().broken, None);
}

#[test]
fn grouped_calls_stay_all_or_nothing_and_commit_on_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    let mut s = Store::open(&path).unwrap();
    let fx = Fixture::new(&["core/note"], &["create", "update"]);
    let c = fx.caller();
    s.begin_group();
    let r = actions::create(
        &mut s,
        c,
        "core/note",
        r#"{"n":1}"#,
        None,
        &WriteOptions::default(),
    )
    .unwrap()
    .record;
    // A failing call in the group undoes only its own rows.
    let err = actions::update(&mut s, c, &r.id, 7, "{}", &WriteOptions::default()).unwrap_err();
    assert!(matches!(err, CallError::Conflict(_)));
    let err = actions::create(
        &mut s,
        c,
        "core/note",
        "[1]",
        None,
        &WriteOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, CallError::Invalid(_)));
    // Another connection sees nothing until the group commits.
    let other = Store::open(&path).unwrap();
    assert_eq!(count(&other, "records"), 0);
    s.flush().unwrap();
    assert_eq!(count(&other, "records"), 1);
    assert_eq!(count(&other, "versions"), 1);
    let outcomes: Vec<String> = audit::list(other.conn(), &audit::Filter::default())
        .unwrap()
        .into_iter()
        .map(|e| e.outcome)
        .collect();
    assert_eq!(outcomes, ["allowed", "conflict", "invalid"]);
    actions::create(&mut s, c, "core/note", "{}", None, &WriteOptions::default()).unwrap();
    s.end_group().unwrap();
    assert_eq!(count(&other, "records"), 2);
    assert_eq!(audit::verify(other.conn()).unwrap().broken, None);
}

#[test]
fn oversized_inputs_are_refused_and_audited() {
    let mut s = Store::open_in_memory().unwrap();
    let fx = Fixture::new(&["core/note"], &["create", "link"]);
    let c = fx.caller();
    let long = "x".repeat(crate::limits::MAX_NAME_BYTES + 1);
    let err = actions::create(&mut s, c, &long, "{}", None, &WriteOptions::default()).unwrap_err();
    assert!(matches!(err, CallError::Limit(_)), "{err:?}");
    let err = actions::link(&mut s, c, &long, "b", "about").unwrap_err();
    assert!(matches!(err, CallError::Limit(_)), "{err:?}");
    let entries = audit::list(s.conn(), &audit::Filter::default()).unwrap();
    let seen: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.action.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(seen, [("create", "limit"), ("link", "limit")]);
    assert_eq!(count(&s, "records"), 0);
}
