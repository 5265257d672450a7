//! The audit log: one row per host call that reads or writes records or
//! reaches outside, allowed or not. Each row carries the hash of the one
//! before it, so an edited, removed or reordered row breaks the chain and
//! [`verify`] names it. There is no update or delete path, and SQLite
//! triggers refuse both.
//!
//! An entry naming a record version also carries the hash of that version
//! row (body and provenance), inside its own hash, so an edited version is
//! named by [`verify`] too. Entries written before this existed have none
//! and verify as they always did.
//!
//! A chain that is only consistent with itself can be rewritten whole by
//! whoever holds the file. A [`Checkpoint`] anchors it outside the
//! database: the operator's ed25519 key signs the head (entry count and
//! hash), the file is kept elsewhere, and [`check_checkpoint`] later finds a
//! rewritten chain (the entry at the checkpoint's count has another hash)
//! and a truncated one (fewer entries than the count).

use keel_registry::keys::{PublicKey, SecretKey};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
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
    /// The hash of the version row the entry names (see [`version_hash`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_hash: Option<String>,
}

impl AuditEntry {
    /// The hash this entry must carry: sha256 over its fields and the
    /// previous hash, as a JSON array (a fixed, unambiguous encoding). The
    /// version hash joins the array only when there is one, so entries
    /// from before it keep their hash.
    pub fn compute_hash(&self) -> String {
        let mut canonical = serde_json::json!([
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
        if let (Some(v), Some(fields)) = (&self.version_hash, canonical.as_array_mut()) {
            fields.push(serde_json::Value::String(v.clone()));
        }
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// The sha256 of version `version` of record `record_id`: its body and
/// provenance as a JSON array, or `None` when there is no such row. The
/// review state is left out: it changes after the version is written.
pub fn version_hash(
    conn: &Connection,
    record_id: &str,
    version: i64,
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT body, at, actor, run_id, digest, trigger_json, sources, models, confidence, note
         FROM versions WHERE record_id = ?1 AND version = ?2",
    )?
    .query_row(params![record_id, version], |r| {
        Ok(hash_of_version(&VersionRow {
            record_id,
            version,
            body: &r.get::<_, String>(0)?,
            at: &r.get::<_, String>(1)?,
            actor: &r.get::<_, String>(2)?,
            run_id: r.get::<_, Option<String>>(3)?.as_deref(),
            digest: r.get::<_, Option<String>>(4)?.as_deref(),
            trigger: r.get::<_, Option<String>>(5)?.as_deref(),
            sources: &r.get::<_, String>(6)?,
            models: &r.get::<_, String>(7)?,
            confidence: r.get::<_, Option<f64>>(8)?,
            note: r.get::<_, Option<String>>(9)?.as_deref(),
        }))
    })
    .optional()
}

/// A version row's columns (all but the operator's later `review`), as
/// they are hashed.
#[derive(Debug, Clone, Copy)]
pub struct VersionRow<'a> {
    pub record_id: &'a str,
    pub version: i64,
    pub body: &'a str,
    pub at: &'a str,
    pub actor: &'a str,
    pub run_id: Option<&'a str>,
    pub digest: Option<&'a str>,
    pub trigger: Option<&'a str>,
    pub sources: &'a str,
    pub models: &'a str,
    pub confidence: Option<f64>,
    pub note: Option<&'a str>,
}

/// The sha256 of a version row's canonical JSON form.
fn hash_of_version(v: &VersionRow<'_>) -> String {
    let canonical = serde_json::json!([
        v.record_id,
        v.version,
        v.body,
        v.at,
        v.actor,
        v.run_id,
        v.digest,
        v.trigger,
        v.sources,
        v.models,
        v.confidence,
        v.note,
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

thread_local! {
    /// The hash of the version row this thread wrote last, made from the
    /// values it wrote: the audit entry of the same call takes it instead of
    /// reading the row back (the write path's most frequent read). Any
    /// other entry naming a version reads the row.
    static WRITTEN: std::cell::RefCell<Option<(String, i64, String)>> =
        const { std::cell::RefCell::new(None) };
}

/// The hash of version `version` of `record_id` if this thread just wrote
/// it (taken: it serves one entry).
fn take_written(record_id: &str, version: i64) -> Option<String> {
    WRITTEN.with(|w| {
        w.borrow_mut()
            .take_if(|(id, v, _)| id == record_id && *v == version)
            .map(|(_, _, hash)| hash)
    })
}

/// Called by the write path as it inserts a version row: its hash, kept
/// for the audit entry of the same call.
pub fn version_written(row: &VersionRow<'_>) {
    let hash = hash_of_version(row);
    WRITTEN.with(|w| *w.borrow_mut() = Some((row.record_id.to_string(), row.version, hash)));
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
    let version_hash = match (&touched.record_id, touched.record_version) {
        (Some(id), Some(v)) => match take_written(id, v) {
            Some(hash) => Some(hash),
            None => version_hash(conn, id, v)?,
        },
        _ => None,
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
        version_hash,
    };
    entry.hash = entry.compute_hash();
    conn.prepare_cached(
        "INSERT INTO audit (seq, at, run_id, plugin, plugin_version, digest, action, record_id,
             record_version, outcome, detail, prev_hash, hash, version_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
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
        entry.hash,
        entry.version_hash
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
    record_version, outcome, detail, prev_hash, hash, version_hash";

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
        version_hash: r.get(13)?,
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
        } else if let (Some(expected), Some(id), Some(v)) =
            (&entry.version_hash, &entry.record_id, entry.record_version)
            && version_hash(conn, id, v)?.as_ref() != Some(expected)
        {
            Some(format!(
                "version {v} of record {id}, which it wrote, was changed or removed after it was written"
            ))
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

/// What a checkpoint file holds: the chain's head, signed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    /// Always [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// Entries in the log when it was signed (the last one's `seq`).
    pub count: i64,
    /// The hash of entry `count` ([`GENESIS`] for an empty log).
    pub hash: String,
    /// When it was signed.
    pub at: String,
    /// The signer's public key, `ed25519:…`.
    pub key: String,
    /// The ed25519 signature over [`Checkpoint::message`], hex.
    pub signature: String,
}

/// The `format` of a checkpoint this keel writes and reads.
pub const CHECKPOINT_FORMAT: &str = "keel-audit-checkpoint/1";

/// Why a checkpoint cannot be made or used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(
        "the audit log does not verify (entry {seq}: {reason}); investigate with `keel audit verify` before signing its head"
    )]
    Broken { seq: i64, reason: String },
    #[error(
        "the checkpoint is not a {CHECKPOINT_FORMAT} file ({0}); give the file `keel audit checkpoint` wrote"
    )]
    Format(String),
    #[error(
        "the checkpoint's signature does not verify under {0}; the file was altered, use a copy you kept elsewhere"
    )]
    Signature(String),
    #[error(
        "the checkpoint is signed by {0}, which is not one of this home's keys; pass --public-key with the key you trust"
    )]
    Untrusted(String),
    #[error("audit log: {0}")]
    Sql(#[from] rusqlite::Error),
}

impl Checkpoint {
    /// The bytes signed: format, count, hash and time, one per line.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "{}\n{}\n{}\n{}",
            self.format, self.count, self.hash, self.at
        )
        .into_bytes()
    }

    /// Checks the signature, and that the signer is one of `trusted`.
    pub fn check_signature(&self, trusted: &[PublicKey]) -> Result<(), CheckpointError> {
        if self.format != CHECKPOINT_FORMAT {
            return Err(CheckpointError::Format(format!("format `{}`", self.format)));
        }
        let key: PublicKey = self
            .key
            .parse()
            .map_err(|e| CheckpointError::Format(format!("{e}")))?;
        let signature = hex::decode(&self.signature)
            .map_err(|_| CheckpointError::Format("the signature is not hex".into()))?;
        if !key.verifies(&self.message(), &signature) {
            return Err(CheckpointError::Signature(self.key.clone()));
        }
        if !trusted.contains(&key) {
            return Err(CheckpointError::Untrusted(self.key.clone()));
        }
        Ok(())
    }
}

/// The chain's head: how many entries, and the last one's hash.
pub fn head(conn: &Connection) -> rusqlite::Result<(i64, String)> {
    Ok(conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or_else(|| (0, GENESIS.to_string())))
}

/// Signs the head of a chain that verifies.
pub fn checkpoint(conn: &Connection, key: &SecretKey) -> Result<Checkpoint, CheckpointError> {
    if let Some(b) = verify(conn)?.broken {
        return Err(CheckpointError::Broken {
            seq: b.seq,
            reason: b.reason,
        });
    }
    let (count, hash) = head(conn)?;
    let mut cp = Checkpoint {
        format: CHECKPOINT_FORMAT.to_string(),
        count,
        hash,
        at: now(),
        key: key.public().to_string(),
        signature: String::new(),
    };
    cp.signature = hex::encode(key.sign(&cp.message()));
    Ok(cp)
}

/// Holds the log against a checkpoint whose signature was checked: the
/// entry at its count must carry its hash (else the chain was rewritten at
/// or before it), and the log must reach its count (else it was cut).
pub fn check_checkpoint(conn: &Connection, cp: &Checkpoint) -> rusqlite::Result<Option<Broken>> {
    let (count, _) = head(conn)?;
    if count < cp.count {
        return Ok(Some(Broken {
            seq: count + 1,
            reason: format!(
                "the log ends at entry {count} but the checkpoint of {} vouches for {} entries: entries {} to {} were removed",
                cp.at,
                cp.count,
                count + 1,
                cp.count
            ),
        }));
    }
    if cp.count == 0 {
        return Ok(None);
    }
    let hash: Option<String> = conn
        .query_row("SELECT hash FROM audit WHERE seq = ?1", [cp.count], |r| {
            r.get(0)
        })
        .optional()?;
    if hash.as_deref() != Some(cp.hash.as_str()) {
        return Ok(Some(Broken {
            seq: cp.count,
            reason: format!(
                "its hash differs from the checkpoint of {}: the log was rewritten at or before this entry",
                cp.at
            ),
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn store_with(entries: usize) -> Store {
        let s = Store::open_in_memory().unwrap();
        for i in 0..entries {
            append(
                s.conn(),
                &Actor::operator(),
                "test",
                &Touched::detail(format!("entry {i}")),
                "allowed",
            )
            .unwrap();
        }
        s
    }

    /// What an attacker with the file does: lift the triggers, edit.
    fn tamper(s: &Store, sql: &str) {
        s.conn()
            .execute_batch(&format!(
                "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; {sql}"
            ))
            .unwrap();
    }

    #[test]
    fn m1_update_and_delete_of_audit_and_events_are_refused() {
        let s = store_with(3);
        let e = s
            .conn()
            .execute("UPDATE audit SET detail = 'x' WHERE seq = 2", [])
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
        let e = s
            .conn()
            .execute("DELETE FROM audit WHERE seq = 3", [])
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
        s.conn()
            .execute(
                "INSERT INTO events (name, at) VALUES ('record.created', '2026-01-01')",
                [],
            )
            .unwrap();
        let e = s.conn().execute("DELETE FROM events", []).unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
        let e = s
            .conn()
            .execute("UPDATE events SET name = 'x'", [])
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
        // Appending still works.
        append(
            s.conn(),
            &Actor::operator(),
            "test",
            &Touched::default(),
            "allowed",
        )
        .unwrap();
        assert_eq!(verify(s.conn()).unwrap().entries, 4);
    }

    #[test]
    fn m1_rewritten_chain_is_detected_by_checkpoint() {
        let s = store_with(5);
        let key = SecretKey::generate().unwrap();
        let cp = checkpoint(s.conn(), &key).unwrap();
        assert_eq!(cp.count, 5);
        cp.check_signature(&[key.public()]).unwrap();
        assert_eq!(check_checkpoint(s.conn(), &cp).unwrap(), None);
        // Rewrite entry 2 and recompute every later hash: the chain is
        // consistent with itself again, but not with the checkpoint.
        tamper(
            &s,
            "UPDATE audit SET detail = 'nothing to see' WHERE seq = 2",
        );
        let entries = list(s.conn(), &Filter::default()).unwrap();
        let (first, later) = entries.split_first().unwrap();
        let mut prev = first.hash.clone();
        for mut e in later.iter().cloned() {
            e.prev_hash = prev;
            e.hash = e.compute_hash();
            s.conn()
                .execute(
                    "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
                    params![e.prev_hash, e.hash, e.seq],
                )
                .unwrap();
            prev = e.hash;
        }
        assert_eq!(verify(s.conn()).unwrap().broken, None);
        let broken = check_checkpoint(s.conn(), &cp).unwrap().unwrap();
        assert_eq!(broken.seq, 5);
        assert!(broken.reason.contains("rewritten"), "{}", broken.reason);
        // A checkpoint edited to match is refused by its signature; one from
        // a key the verifier does not trust is refused too.
        let mut forged = cp.clone();
        forged.hash = head(s.conn()).unwrap().1;
        assert!(matches!(
            forged.check_signature(&[key.public()]),
            Err(CheckpointError::Signature(_))
        ));
        let other = SecretKey::generate().unwrap();
        let resigned = checkpoint(s.conn(), &other).unwrap();
        assert!(matches!(
            resigned.check_signature(&[key.public()]),
            Err(CheckpointError::Untrusted(_))
        ));
    }

    #[test]
    fn m1_truncated_chain_is_detected_by_checkpoint() {
        let s = store_with(4);
        let key = SecretKey::generate().unwrap();
        let cp = checkpoint(s.conn(), &key).unwrap();
        tamper(&s, "DELETE FROM audit WHERE seq = 4");
        // Cutting the tail leaves a chain consistent with itself.
        assert_eq!(verify(s.conn()).unwrap().broken, None);
        let broken = check_checkpoint(s.conn(), &cp).unwrap().unwrap();
        assert_eq!(broken.seq, 4);
        assert!(broken.reason.contains("were removed"), "{}", broken.reason);
        // Entries appended after a checkpoint are fine.
        let s = store_with(2);
        let cp = checkpoint(s.conn(), &key).unwrap();
        append(
            s.conn(),
            &Actor::operator(),
            "test",
            &Touched::default(),
            "allowed",
        )
        .unwrap();
        assert_eq!(check_checkpoint(s.conn(), &cp).unwrap(), None);
    }

    #[test]
    fn m1_edited_version_body_is_detected() {
        let s = Store::open_in_memory().unwrap();
        let c = s.conn();
        c.execute_batch(
            "INSERT INTO records (id, kind, body, version, created_at, updated_at, created_by, updated_by)
             VALUES ('r1', 'core/note', '{\"a\":1}', 1, 't', 't', 'operator', 'operator');
             INSERT INTO versions (record_id, version, body, at, actor, sources, models)
             VALUES ('r1', 1, '{\"a\":1}', 't', 'operator', '[]', '[]');",
        )
        .unwrap();
        append(
            c,
            &Actor::operator(),
            "create",
            &Touched::record("r1", 1, "made"),
            "allowed",
        )
        .unwrap();
        let entry = &list(c, &Filter::default()).unwrap()[0];
        assert!(entry.version_hash.is_some());
        assert_eq!(verify(c).unwrap().broken, None);
        // The review state may change after the version is written.
        c.execute("UPDATE versions SET review = 'pending'", [])
            .unwrap();
        assert_eq!(verify(c).unwrap().broken, None);
        c.execute("UPDATE versions SET body = '{\"a\":2}'", [])
            .unwrap();
        let broken = verify(c).unwrap().broken.unwrap();
        assert_eq!(broken.seq, 1);
        assert!(
            broken.reason.contains("version 1 of record r1"),
            "{}",
            broken.reason
        );
    }

    #[test]
    fn entries_from_before_version_hashes_still_verify() {
        let s = store_with(2);
        // An entry as an older keel wrote it: a record version, no hash of it.
        let (seq, prev) = head(s.conn()).unwrap();
        let mut old = AuditEntry {
            seq: seq + 1,
            at: now(),
            run: None,
            plugin: "operator".into(),
            plugin_version: None,
            digest: None,
            action: "create".into(),
            record_id: Some("gone".into()),
            record_version: Some(1),
            outcome: "allowed".into(),
            detail: String::new(),
            prev_hash: prev,
            hash: String::new(),
            version_hash: None,
        };
        old.hash = old.compute_hash();
        s.conn()
            .execute(
                "INSERT INTO audit (seq, at, plugin, action, record_id, record_version, outcome, detail, prev_hash, hash)
                 VALUES (?1, ?2, 'operator', 'create', 'gone', 1, 'allowed', '', ?3, ?4)",
                params![old.seq, old.at, old.prev_hash, old.hash],
            )
            .unwrap();
        append(
            s.conn(),
            &Actor::operator(),
            "test",
            &Touched::default(),
            "allowed",
        )
        .unwrap();
        let v = verify(s.conn()).unwrap();
        assert_eq!((v.entries, v.broken), (4, None));
    }
}
