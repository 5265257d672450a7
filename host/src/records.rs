//! Records, their versions, identities and links, as rows. Reads take any
//! connection; writes take the write path's transaction.

mod host;
pub use host::add_to_linker;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::error::CallError;
use crate::store::{Actor, new_id, now};

crate::store::stored_names! {
    /// What happened, as the event stream names it (triggers subscribe by
    /// these names).
    pub enum Event ("an event name") {
        RecordCreated = "record.created",
        RecordUpdated = "record.updated",
        LinkCreated = "link.created",
        JobScheduled = "job.scheduled",
        SendQueued = "send.queued",
        SendNeedsReview = "send.needs-review",
        SendApproved = "send.approved",
        SendRejected = "send.rejected",
        SendDelivered = "send.delivered",
        RunFailed = "run.failed",
        /// A webhook request was accepted (its job wakes the plugin).
        WebhookReceived = "webhook.received",
    }
}

/// A canonical record. `body` is JSON text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub id: String,
    pub kind: String,
    pub body: String,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
    pub created_by: String,
    pub updated_by: String,
}

/// One kept version with its provenance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Version {
    pub version: i64,
    pub body: String,
    pub at: String,
    pub actor: String,
    pub run: Option<String>,
    pub digest: Option<String>,
    pub trigger: Option<String>,
    pub sources: Vec<String>,
    pub models: Vec<String>,
    pub confidence: Option<f32>,
    pub note: Option<String>,
    /// For a version written with low confidence: `pending`, `approved`,
    /// `edited` or `rejected` (the operator's review).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
}

/// A typed edge.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Link {
    pub from: String,
    pub to: String,
    pub rel: String,
    pub created_at: String,
}

/// Why a version was written, besides who wrote it.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    pub sources: Vec<String>,
    pub models: Vec<String>,
    pub confidence: Option<f32>,
    pub note: Option<String>,
}

const RECORD_COLUMNS: &str =
    "id, kind, body, version, created_at, updated_at, created_by, updated_by";

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        id: r.get(0)?,
        kind: r.get(1)?,
        body: r.get(2)?,
        version: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
        created_by: r.get(6)?,
        updated_by: r.get(7)?,
    })
}

pub fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<Record>> {
    conn.prepare_cached(&format!(
        "SELECT {RECORD_COLUMNS} FROM records WHERE id = ?1"
    ))?
    .query_row([id], row_to_record)
    .optional()
}

/// The kind of record `id`, if it exists.
pub fn kind_of(conn: &Connection, id: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT kind FROM records WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()
}

pub fn find_identity(
    conn: &Connection,
    source: &str,
    external_id: &str,
) -> rusqlite::Result<Option<Record>> {
    conn.prepare_cached(&format!(
        "SELECT {RECORD_COLUMNS} FROM records
         WHERE id = (SELECT record_id FROM identities WHERE source = ?1 AND external_id = ?2)"
    ))?
    .query_row([source, external_id], row_to_record)
    .optional()
}

/// Records of `kind` after `after` (an id), oldest first.
pub fn query(
    conn: &Connection,
    kind: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Vec<Record>> {
    query_within(conn, kind, after, limit, usize::MAX).map(|(rows, _)| rows)
}

/// [`query`], stopping before the bodies pass `max_bytes` (at least one
/// record), read one row at a time so a page of large bodies is never
/// held whole; also whether it stopped there with rows left.
pub fn query_within(
    conn: &Connection,
    kind: Option<&str>,
    after: Option<&str>,
    limit: u32,
    max_bytes: usize,
) -> rusqlite::Result<(Vec<Record>, bool)> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {RECORD_COLUMNS} FROM records
         WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR id > ?2)
         ORDER BY id LIMIT ?3"
    ))?;
    let mut rows = stmt.query(params![kind, after, limit])?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.next()? {
        let size = row.get_ref(2)?.as_bytes().map_or(0, <[u8]>::len);
        bytes = bytes.saturating_add(size);
        if !out.is_empty() && bytes > max_bytes {
            return Ok((out, true));
        }
        out.push(row_to_record(row)?);
    }
    Ok((out, false))
}

/// Every version of record `id`, oldest first.
pub fn history(conn: &Connection, id: &str) -> rusqlite::Result<Vec<Version>> {
    let mut versions = history_newest(conn, id, usize::MAX, usize::MAX)?;
    versions.reverse();
    Ok(versions)
}

/// The newest versions of record `id`, newest first: at most `max` of
/// them, and no more than fit in `max_bytes` of bodies (at least one).
pub fn history_newest(
    conn: &Connection,
    id: &str,
    max: usize,
    max_bytes: usize,
) -> rusqlite::Result<Vec<Version>> {
    let mut stmt = conn.prepare_cached(
        "SELECT version, body, at, actor, run_id, digest, trigger_json, sources, models, confidence, note, review
         FROM versions WHERE record_id = ?1 ORDER BY version DESC",
    )?;
    let rows = stmt.query_map([id], |r| {
        let sources: String = r.get(7)?;
        let models: String = r.get(8)?;
        Ok(Version {
            version: r.get(0)?,
            body: r.get(1)?,
            at: r.get(2)?,
            actor: r.get(3)?,
            run: r.get(4)?,
            digest: r.get(5)?,
            trigger: r.get(6)?,
            sources: serde_json::from_str(&sources).unwrap_or_default(),
            models: serde_json::from_str(&models).unwrap_or_default(),
            confidence: r.get::<_, Option<f64>>(9)?.map(|c| c as f32),
            note: r.get(10)?,
            review: r.get(11)?,
        })
    })?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for version in rows {
        let version = version?;
        bytes = bytes.saturating_add(version.body.len());
        if out.len() >= max || (!out.is_empty() && bytes > max_bytes) {
            break;
        }
        out.push(version);
    }
    Ok(out)
}

/// Every link of record `id` (either end), optionally of one relation.
pub fn links(conn: &Connection, id: &str, rel: Option<&str>) -> rusqlite::Result<Vec<Link>> {
    links_where(conn, id, rel, usize::MAX, |_| true)
}

/// The links of record `id` whose other end is a record of a kind `keep`
/// accepts, at most `max`, read one row at a time so a record with
/// millions of links costs no memory.
pub fn links_where(
    conn: &Connection,
    id: &str,
    rel: Option<&str>,
    max: usize,
    keep: impl Fn(&str) -> bool,
) -> rusqlite::Result<Vec<Link>> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.from_id, l.to_id, l.rel, l.created_at, r.kind FROM links l
         JOIN records r ON r.id = CASE WHEN l.from_id = ?1 THEN l.to_id ELSE l.from_id END
         WHERE (l.from_id = ?1 OR l.to_id = ?1) AND (?2 IS NULL OR l.rel = ?2)
         ORDER BY l.created_at, l.from_id, l.to_id",
    )?;
    let mut rows = stmt.query(params![id, rel])?;
    let mut out = Vec::new();
    while out.len() < max
        && let Some(r) = rows.next()?
    {
        let kind: String = r.get(4)?;
        if keep(&kind) {
            out.push(Link {
                from: r.get(0)?,
                to: r.get(1)?,
                rel: r.get(2)?,
                created_at: r.get(3)?,
            });
        }
    }
    Ok(out)
}

/// Record counts per kind, for summaries.
pub fn count_by_kind(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    conn.prepare("SELECT kind, count(*) FROM records GROUP BY kind ORDER BY kind")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

fn insert_version(
    conn: &Connection,
    actor: &Actor,
    record: &Record,
    prov: &Provenance,
) -> Result<(), CallError> {
    let sources = serde_json::to_string(&prov.sources)?;
    let models = serde_json::to_string(&prov.models)?;
    let confidence = prov.confidence.map(f64::from);
    conn.prepare_cached(
        "INSERT INTO versions (record_id, version, body, at, actor, run_id, digest, trigger_json,
             sources, models, confidence, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        record.id,
        record.version,
        record.body,
        record.updated_at,
        record.updated_by,
        actor.run_id,
        actor.digest,
        actor.trigger,
        sources,
        models,
        confidence,
        prov.note,
    ])?;
    crate::store::audit::version_written(&crate::store::audit::VersionRow {
        record_id: &record.id,
        version: record.version,
        body: &record.body,
        at: &record.updated_at,
        actor: &record.updated_by,
        run_id: actor.run_id.as_deref(),
        digest: actor.digest.as_deref(),
        trigger: actor.trigger.as_deref(),
        sources: &sources,
        models: &models,
        confidence,
        note: prov.note.as_deref(),
    });
    Ok(())
}

/// Appends an event inside the write path's transaction.
pub fn insert_event(
    conn: &Connection,
    name: Event,
    record_id: Option<&str>,
    version: Option<i64>,
    actor: &Actor,
    data: Option<&str>,
) -> Result<(), CallError> {
    conn.prepare_cached(
        "INSERT INTO events (name, record_id, version, run_id, at, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![name, record_id, version, actor.run_id, now(), data])?;
    Ok(())
}

/// Writes a new record at version 1 with its identity, version and event.
pub fn insert_new(
    conn: &Connection,
    actor: &Actor,
    kind: &str,
    body: &str,
    identity: Option<(&str, &str)>,
    prov: &Provenance,
) -> Result<Record, CallError> {
    let at = now();
    let record = Record {
        id: new_id(),
        kind: kind.to_string(),
        body: body.to_string(),
        version: 1,
        created_at: at.clone(),
        updated_at: at,
        created_by: actor.label(),
        updated_by: actor.label(),
    };
    conn.prepare_cached(&format!(
        "INSERT INTO records ({RECORD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))?
    .execute(params![
        record.id,
        record.kind,
        record.body,
        record.version,
        record.created_at,
        record.updated_at,
        record.created_by,
        record.updated_by
    ])?;
    if let Some((source, external_id)) = identity {
        conn.prepare_cached(
            "INSERT INTO identities (source, external_id, record_id) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![source, external_id, record.id])?;
    }
    insert_version(conn, actor, &record, prov)?;
    insert_event(
        conn,
        Event::RecordCreated,
        Some(&record.id),
        Some(1),
        actor,
        None,
    )?;
    Ok(record)
}

/// Replaces the body of `current` (which the caller read in this
/// transaction), keeping the old version.
pub fn update_body(
    conn: &Connection,
    actor: &Actor,
    current: &Record,
    body: &str,
    prov: &Provenance,
) -> Result<Record, CallError> {
    let record = Record {
        body: body.to_string(),
        version: current.version + 1,
        updated_at: now(),
        updated_by: actor.label(),
        ..current.clone()
    };
    let changed = conn
        .prepare_cached(
            "UPDATE records SET body = ?1, version = ?2, updated_at = ?3, updated_by = ?4
             WHERE id = ?5 AND version = ?6",
        )?
        .execute(params![
            record.body,
            record.version,
            record.updated_at,
            record.updated_by,
            record.id,
            current.version
        ])?;
    if changed != 1 {
        return Err(CallError::Conflict(format!(
            "record {} changed while it was being updated; read it again",
            current.id
        )));
    }
    insert_version(conn, actor, &record, prov)?;
    insert_event(
        conn,
        Event::RecordUpdated,
        Some(&record.id),
        Some(record.version),
        actor,
        None,
    )?;
    Ok(record)
}

/// Puts version `version` of record `id` up for the operator's review
/// (written with less confidence than the writer's review gate).
pub fn flag_for_review(conn: &Connection, id: &str, version: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE versions SET review = 'pending' WHERE record_id = ?1 AND version = ?2",
    )?
    .execute(params![id, version])?;
    Ok(())
}

/// Records the operator's decision on a version waiting for review;
/// false if it was not waiting.
pub fn decide_review(
    conn: &Connection,
    id: &str,
    version: i64,
    review: &str,
) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE versions SET review = ?3 WHERE record_id = ?1 AND version = ?2 AND review = 'pending'",
        params![id, version, review],
    )?;
    Ok(n == 1)
}

/// Appends the [`Event::RunFailed`] event of run `run` (no record, no actor: the
/// runtime writes it when the run ends).
pub fn run_failed(conn: &Connection, run: &str, data: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO events (name, record_id, version, run_id, at, data) VALUES ('run.failed', NULL, NULL, ?1, ?2, ?3)",
        params![run, now(), data],
    )?;
    Ok(())
}

/// Adds a link; returns false when it already existed.
pub fn insert_link(
    conn: &Connection,
    actor: &Actor,
    from: &str,
    to: &str,
    rel: &str,
) -> Result<bool, CallError> {
    let added = conn
        .prepare_cached(
            "INSERT INTO links (from_id, to_id, rel, created_at, run_id) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![from, to, rel, now(), actor.run_id])?;
    if added == 1 {
        let data = serde_json::json!({ "to": to, "rel": rel }).to_string();
        insert_event(
            conn,
            Event::LinkCreated,
            Some(from),
            None,
            actor,
            Some(&data),
        )?;
    }
    Ok(added == 1)
}

#[cfg(test)]
mod event_tests {
    use super::Event;

    #[test]
    fn every_event_a_trigger_may_subscribe_to_is_an_event_name() {
        for name in crate::manifest::EVENTS {
            let event: Event = name.parse().unwrap();
            assert_eq!(event.as_str(), *name);
        }
    }
}
