//! Writes: records created through the plugin (record, version, event and
//! audit entry per call) against plain inserts of the same bodies into one
//! indexed table, as many rows per transaction as keel committed calls per
//! transaction (group commit).

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use crate::runtime::Runtime;
use crate::store::Store;

/// Seconds each way of writing `creates` records took.
pub(super) struct Writes {
    /// Through the bench plugin.
    pub keel: f64,
    /// Plain inserts, `batch` per transaction.
    pub sqlite: f64,
    /// Plain inserts, one per transaction.
    pub single: f64,
    /// keel's four rows per create as plain SQL, `batch` per transaction.
    pub rows: f64,
    /// Calls per commit in keel's run.
    pub batch: u32,
}

/// Creates `creates` records through the installed `bench` plugin, then
/// the baselines in databases under `dir`.
pub(super) fn measure(
    runtime: &mut Runtime,
    db: Store,
    dir: &Path,
    creates: u32,
) -> anyhow::Result<Writes> {
    let input = serde_json::json!({"op": "create", "n": creates}).to_string();
    let commits_before = db.commits();
    let t = Instant::now();
    let (report, db) = runtime.run(db, "bench", Some(&input))?;
    let keel = t.elapsed().as_secs_f64();
    if report.outcome != crate::run::Outcome::Ok {
        anyhow::bail!("the bench plugin failed: {}", report.detail);
    }
    // The baseline commits as many rows per transaction as keel committed
    // calls per transaction in this run (group commit).
    let commits = (db.commits() - commits_before).max(1);
    let batch = u32::try_from(u64::from(creates).div_ceil(commits)).unwrap_or(creates);
    Ok(Writes {
        keel,
        sqlite: plain_inserts(&dir.join("plain.db"), creates, batch)?,
        single: plain_inserts(&dir.join("plain-single.db"), creates, 1)?,
        rows: keel_rows(&dir.join("rows.db"), creates, batch)?,
        batch,
    })
}

/// Inserts `n` bodies like the bench plugin's into one indexed table,
/// `batch` rows per transaction, with the store's pragmas.
fn plain_inserts(path: &Path, n: u32, batch: u32) -> anyhow::Result<f64> {
    let mut conn = rusqlite::Connection::open(path).context("open the baseline database")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE items (id TEXT PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL);
         CREATE INDEX items_kind ON items(kind, id);",
    )?;
    let t = Instant::now();
    let mut i = 0;
    while i < n {
        let tx = conn.transaction()?;
        for _ in 0..batch.min(n - i) {
            let body = serde_json::json!({"i": i, "text": format!("bench item {i} lorem ipsum dolor sit amet")}).to_string();
            tx.prepare_cached("INSERT INTO items (id, kind, body) VALUES (?1, 'bench/item', ?2)")?
                .execute(rusqlite::params![crate::store::new_id(), body])?;
            i += 1;
        }
        tx.commit()?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Inserts, as plain SQL into keel's own schema, the rows one `create`
/// writes: record, version, event and audit entry, `batch` creates per
/// transaction. No grant check, validation, hashing or Wasm.
fn keel_rows(path: &Path, n: u32, batch: u32) -> anyhow::Result<f64> {
    let mut store = Store::open(path)?;
    let conn = store.conn_mut();
    let at = crate::store::now();
    let t = Instant::now();
    let mut i = 0;
    while i < n {
        let tx = conn.transaction()?;
        for _ in 0..batch.min(n - i) {
            let id = crate::store::new_id();
            let body = serde_json::json!({"i": i, "text": format!("bench item {i} lorem ipsum dolor sit amet")}).to_string();
            tx.prepare_cached(
                "INSERT INTO records (id, kind, body, version, created_at, updated_at, created_by, updated_by)
                 VALUES (?1, 'bench/item', ?2, 1, ?3, ?3, 'bench@0.1.0', 'bench@0.1.0')",
            )?
            .execute(rusqlite::params![id, body, at])?;
            tx.prepare_cached(
                "INSERT INTO versions (record_id, version, body, at, actor, sources, models)
                 VALUES (?1, 1, ?2, ?3, 'bench@0.1.0', '[]', '[]')",
            )?
            .execute(rusqlite::params![id, body, at])?;
            tx.prepare_cached(
                "INSERT INTO events (name, record_id, version, at) VALUES ('record.created', ?1, 1, ?2)",
            )?
            .execute(rusqlite::params![id, at])?;
            tx.prepare_cached(
                "INSERT INTO audit (seq, at, plugin, action, record_id, record_version, outcome, detail, prev_hash, hash)
                 VALUES (?1, ?2, 'bench', 'create', ?3, 1, 'allowed', 'kind bench/item', '', '')",
            )?
            .execute(rusqlite::params![i64::from(i) + 1, at, id])?;
            i += 1;
        }
        tx.commit()?;
    }
    Ok(t.elapsed().as_secs_f64())
}
