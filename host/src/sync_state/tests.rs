use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::home::Home;
use crate::store::Store;
use crate::testing::Fixture;

fn entries(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect()
}

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|k| k.to_string()).collect()
}

#[test]
fn set_get_and_delete_keep_the_usage_in_step() {
    let db = Store::open_in_memory().unwrap();
    let conn = db.conn();
    set(conn, "p", &entries(&[("a", Some("1")), ("b", Some("22"))])).unwrap();
    assert_eq!(usage(conn, "p").unwrap(), (2, 5));
    set(conn, "p", &entries(&[("a", Some("111")), ("c", None)])).unwrap();
    assert_eq!(usage(conn, "p").unwrap(), (2, 7));
    assert_eq!(
        get(conn, "p", &keys(&["a", "b", "c"])).unwrap(),
        vec![Some("111".into()), Some("22".into()), None]
    );
    // Another plugin's state is apart.
    assert_eq!(get(conn, "q", &keys(&["a"])).unwrap(), vec![None]);
    set(conn, "p", &entries(&[("a", None), ("b", None)])).unwrap();
    assert_eq!(usage(conn, "p").unwrap(), (0, 0));
}

#[test]
fn bad_keys_and_batches_are_refused_with_what_to_do() {
    let db = Store::open_in_memory().unwrap();
    let conn = db.conn();
    let e = set(conn, "p", &entries(&[("", Some("x"))])).unwrap_err();
    assert!(
        matches!(e, CallError::Invalid(ref m) if m.contains("empty")),
        "{e:?}"
    );
    let long = "k".repeat(MAX_KEY_BYTES + 1);
    let e = get(conn, "p", &[long]).unwrap_err();
    assert!(matches!(e, CallError::Limit(_)), "{e:?}");
    let big = "v".repeat(MAX_VALUE_BYTES + 1);
    let e = set(conn, "p", &[("k".into(), Some(big))]).unwrap_err();
    assert!(
        matches!(e, CallError::Limit(ref m) if m.contains("value")),
        "{e:?}"
    );
    let many: Vec<String> = (0..=MAX_BATCH).map(|i| format!("k{i}")).collect();
    let e = get(conn, "p", &many).unwrap_err();
    assert!(
        matches!(e, CallError::Limit(ref m) if m.contains("split")),
        "{e:?}"
    );
    assert_eq!(usage(conn, "p").unwrap(), (0, 0));
}

#[test]
fn a_set_past_the_plugins_bound_is_refused_and_undone() {
    let mut db = Store::open_in_memory().unwrap();
    // As if the plugin already held all it may.
    db.in_call(|conn| Ok(add_usage(conn, "p", MAX_PLUGIN_KEYS, 10)?))
        .unwrap();
    let e = db
        .in_call(|conn| set(conn, "p", &entries(&[("new", Some("x"))])))
        .unwrap_err();
    assert!(
        matches!(e, CallError::Limit(ref m) if m.contains("keys")),
        "{e:?}"
    );
    assert_eq!(get(db.conn(), "p", &keys(&["new"])).unwrap(), vec![None]);
    assert_eq!(usage(db.conn(), "p").unwrap(), (MAX_PLUGIN_KEYS, 10));
    // Replacing a key it holds adds none.
    db.in_call(|conn| Ok(add_usage(conn, "q", MAX_PLUGIN_KEYS - 1, 0)?))
        .unwrap();
    db.in_call(|conn| set(conn, "q", &entries(&[("k", Some("1"))])))
        .unwrap();
    db.in_call(|conn| set(conn, "q", &entries(&[("k", Some("2"))])))
        .unwrap();
}

#[test]
fn a_scan_pages_through_one_prefix_in_key_order() {
    let db = Store::open_in_memory().unwrap();
    let conn = db.conn();
    let names = ["f:b", "f:a/x", "f:a", "g:z", "e:q", "f:a-1", "f:c"];
    let batch: Vec<_> = names
        .iter()
        .map(|k| (k.to_string(), Some(format!("v{k}"))))
        .collect();
    set(conn, "p", &batch).unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = scan(conn, "p", "f:", after.as_deref(), 2).unwrap();
        pages += 1;
        seen.extend(page.entries.iter().map(|(k, _)| k.clone()));
        assert!(page.entries.iter().all(|(k, v)| *v == format!("v{k}")));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    // Bytewise order: `-` sorts before `/`.
    assert_eq!(seen, ["f:a", "f:a-1", "f:a/x", "f:b", "f:c"]);
    assert_eq!(pages, 3);
    // `after` before the prefix starts at the prefix.
    let page = scan(conn, "p", "f:", Some("a"), 10).unwrap();
    assert_eq!(page.entries.len(), 5);
    assert_eq!(page.next, None);
    assert!(matches!(
        scan(conn, "p", "", None, 0),
        Err(CallError::Invalid(_))
    ));
}

#[test]
fn only_a_sync_says_more_and_only_after_progress() {
    let mut sync = SyncRun::for_export("sync");
    assert!(!sync.more(Outcome::Deadline), "no checkpoint yet");
    assert!(!sync.more(Outcome::Ok));
    if let SyncRun::Sync { checkpoints, .. } = &mut sync {
        *checkpoints = 2;
    }
    assert!(sync.more(Outcome::Deadline));
    assert!(sync.more(Outcome::Fuel));
    assert!(
        !sync.more(Outcome::Trap),
        "a trap is no progress to go on from"
    );
    assert!(!sync.more(Outcome::Ok), "a finished sync has caught up");
    if let SyncRun::Sync { more_asked, .. } = &mut sync {
        *more_asked = true;
    }
    assert!(sync.more(Outcome::Ok));
    assert!(!SyncRun::for_export("handle").more(Outcome::Ok));
}

/// A run context of plugin `t` over `db`, as the runtime makes one.
fn run_ctx(db: Store, home: &Home) -> RunCtx {
    let fixture = Fixture::new(&["core/note"], &["create"]);
    RunCtx {
        db,
        actor: fixture.actor,
        grant: Arc::new(fixture.grant),
        policy: fixture.policy,
        label: "t@0.1.0".into(),
        home: home.clone(),
        deadline: Instant::now() + Duration::from_secs(60),
        quota: crate::quota::WriteQuota::new("t", "t@0.1.0", &Default::default()),
        caller: None,
        log_lines: 0,
    }
}

fn cursor_of(path: &std::path::Path) -> Option<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    crate::plugins::cursor(&conn, "t").unwrap()
}

#[test]
fn a_checkpoint_commits_the_cursor_with_the_writes_before_it_and_nothing_after() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::init(&dir.path().join("home")).unwrap();
    let path = home.db_path();
    let mut db = home.store().unwrap();
    let manifest = crate::manifest::Manifest::parse(
        "[plugin]\nid = \"t\"\nversion = \"0.1.0\"\nworld = \"connector\"\n",
        "keel.toml",
    )
    .unwrap();
    let fixture = Fixture::new(&[], &[]);
    crate::plugins::upsert(db.conn(), &manifest, "sha256:00", &fixture.grant).unwrap();
    db.begin_group();
    let mut run = run_ctx(db, &home);
    let mut sync = SyncRun::for_export("sync");
    let write = |run: &mut RunCtx, key: &str| {
        run.db
            .in_call(|conn| set(conn, "t", &entries(&[(key, Some("h"))])))
            .unwrap()
    };
    write(&mut run, "before");
    checkpoint(&mut run, &mut sync, "c1").unwrap();
    assert_eq!(sync.checkpoints(), 1);
    write(&mut run, "after");
    // What another process sees now, and after this one dies without
    // committing again (a kill -9: the connection is never closed).
    let seen = |path: &std::path::Path| {
        let conn = rusqlite::Connection::open(path).unwrap();
        get(&conn, "t", &keys(&["before", "after"])).unwrap()
    };
    assert_eq!(seen(&path), vec![Some("h".into()), None]);
    assert_eq!(cursor_of(&path).as_deref(), Some("c1"));
    std::mem::forget(run);
    assert_eq!(seen(&path), vec![Some("h".into()), None]);
    assert_eq!(cursor_of(&path).as_deref(), Some("c1"));
    // The checkpoint is in the audit log.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let audited: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit WHERE action = 'checkpoint' AND outcome = 'allowed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(audited, 1);
}

#[test]
fn only_a_connectors_sync_may_checkpoint_and_cursors_stay_small() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::init(&dir.path().join("home")).unwrap();
    let mut run = run_ctx(home.store().unwrap(), &home);
    let mut agent = SyncRun::for_export("handle");
    let e = checkpoint(&mut run, &mut agent, "c").unwrap_err();
    assert!(
        matches!(e, CallError::Denied(ref m) if m.contains("`handle`")),
        "{e:?}"
    );
    let e = more_to_do(&mut run, &mut agent).unwrap_err();
    assert!(matches!(e, CallError::Denied(_)), "{e:?}");
    let mut sync = SyncRun::for_export("sync");
    let big = "c".repeat(crate::limits::MAX_CURSOR_BYTES + 1);
    let e = checkpoint(&mut run, &mut sync, &big).unwrap_err();
    assert!(
        matches!(e, CallError::Limit(ref m) if m.contains("sync-state")),
        "{e:?}"
    );
    assert_eq!(sync.checkpoints(), 0);
    let refused: i64 = run
        .db
        .conn()
        .query_row(
            "SELECT count(*) FROM audit WHERE action IN ('checkpoint', 'more-to-do') AND outcome <> 'allowed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(refused, 3);
}
