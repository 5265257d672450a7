//! The audit log: one row per host call that reads or writes records or
//! reaches outside, allowed or not. Each row carries the hash of the one
//! before it, so an edited, removed or reordered row breaks the chain and
//! [`verify`] names it. There is no update or delete path.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Actor, Touched, now};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    pub run: Option<String>,
    pub plugin: String,
    pub plugin_version: Option<String>,
    pub digest: Option<String>,
    pub action: String,
    pub record_id: Option<String>,
    pub record_version: Option<i64>,
    pub outcome: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// The hash this entry must carry: sha256 over its fields and the
    /// previous hash, as a JSON array (a fixed, unambiguous encoding).
    pub fn compute_hash(&self) -> String {
        let canonical = serde_json::json!([
            self.prev_hash,
            self.seq,
            self.at,
            self.run,
            self.plugin,
            self.plugin_version,
            self.digest,
            self.action,
            self.record_id,
            self.record_version,
            self.outcome,
            self.detail,
        ]);
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// Appends one entry inside the caller's transaction.
pub fn append(
    conn: &Connection,
    actor: &Actor,
    action: &str,
    touched: &Touched,
    outcome: &str,
) -> rusqlite::Result<()> {
    let last: Option<(i64, String)> = conn
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_string()),
    };
    let mut entry = AuditEntry {
        seq,
        at: now(),
        run: actor.run_id.clone(),
        plugin: actor.plugin.clone(),
        plugin_version: actor.version.clone(),
        digest: actor.digest.clone(),
        action: action.to_string(),
        record_id: touched.record_id.clone(),
        record_version: touched.record_version,
        outcome: outcome.to_string(),
        detail: touched.detail.clone(),
        prev_hash,
        hash: String::new(),
    };
    entry.hash = entry.compute_hash();
    conn.prepare_cached(
        "INSERT INTO audit (seq, at, run_id, plugin, plugin_version, digest, action, record_id,
             record_version, outcome, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        entry.seq,
        entry.at,
        entry.run,
        entry.plugin,
        entry.plugin_version,
        entry.digest,
        entry.action,
        entry.record_id,
        entry.record_version,
        entry.outcome,
        entry.detail,
        entry.prev_hash,
        entry.hash
    ])?;
    Ok(())
}

/// Which entries to list.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub record: Option<String>,
    pub plugin: Option<String>,
    pub run: Option<String>,
    pub limit: Option<u32>,
}

const COLUMNS: &str = "seq, at, run_id, plugin, plugin_version, digest, action, record_id,
    record_version, outcome, detail, prev_hash, hash";

fn row_to_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.get(0)?,
        at: r.get(1)?,
        run: r.get(2)?,
        plugin: r.get(3)?,
        plugin_version: r.get(4)?,
        digest: r.get(5)?,
        action: r.get(6)?,
        record_id: r.get(7)?,
        record_version: r.get(8)?,
        outcome: r.get(9)?,
        detail: r.get(10)?,
        prev_hash: r.get(11)?,
        hash: r.get(12)?,
    })
}

/// Entries matching `filter`, oldest first.
pub fn list(conn: &Connection, filter: &Filter) -> rusqlite::Result<Vec<AuditEntry>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit
         WHERE (?1 IS NULL OR record_id = ?1) AND (?2 IS NULL OR plugin = ?2) AND (?3 IS NULL OR run_id = ?3)
         ORDER BY seq LIMIT ?4"
    );
    let mut stmt = conn.prepare(&sql)?;
    let limit = filter.limit.map(i64::from).unwrap_or(-1);
    stmt.query_map(
        params![filter.record, filter.plugin, filter.run, limit],
        row_to_entry,
    )?
    .collect()
}

/// The result of checking the whole chain.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verification {
    pub entries: u64,
    /// The first entry that does not hold, and why.
    pub broken: Option<Broken>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Broken {
    pub seq: i64,
    pub reason: String,
}

/// Recomputes every hash in order and checks each entry points at the one
/// before it.
pub fn verify(conn: &Connection) -> rusqlite::Result<Verification> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM audit ORDER BY seq"))?;
    let mut rows = stmt.query([])?;
    let mut expected_prev = GENESIS.to_string();
    let mut expected_seq = 1;
    let mut entries = 0;
    while let Some(row) = rows.next()? {
        let entry = row_to_entry(row)?;
        entries += 1;
        let reason = if entry.seq != expected_seq {
            Some(format!(
                "entry {expected_seq} is missing (the next entry is {})",
                entry.seq
            ))
        } else if entry.prev_hash != expected_prev {
            Some("its previous-hash does not match the entry before it (a row was removed or rewritten)".to_string())
        } else if entry.compute_hash() != entry.hash {
            Some(
                "its contents do not match its hash (the row was edited after it was written)"
                    .to_string(),
            )
        } else {
            None
        };
        if let Some(reason) = reason {
            return Ok(Verification {
                entries,
                broken: Some(Broken {
                    seq: entry.seq.min(expected_seq),
                    reason,
                }),
            });
        }
        expected_prev = entry.hash;
        expected_seq += 1;
    }
    Ok(Verification {
        entries,
        broken: None,
    })
}
