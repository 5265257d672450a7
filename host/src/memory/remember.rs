//! Remembering: a new long-term memory, embedded and kept in the caller's
//! transaction.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Memory, check_sources};
use crate::error::CallError;
use crate::grant::Grant;
use crate::store::{Actor, new_id, now};

pub(super) fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Keeps a new memory in the caller's transaction.
#[allow(clippy::too_many_arguments)]
pub fn insert(
    conn: &Connection,
    actor: &Actor,
    grant: &Grant,
    text: &str,
    metadata: &str,
    sources: &[String],
    supersedes: Option<&str>,
    model: &str,
    vector: Vec<f32>,
) -> Result<Memory, CallError> {
    let kinds = source_kinds(conn, actor, grant, sources)?;
    let id = new_id();
    if let Some(old) = supersedes {
        supersede(conn, actor, old, &id)?;
    }
    let at = now();
    let sources_json = serde_json::to_string(sources).unwrap_or_else(|_| "[]".into());
    conn.prepare_cached(
        "INSERT INTO memories (id, plugin, by_label, run_id, text, metadata, sources, at, supersedes, model, vector)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        id,
        actor.plugin,
        actor.label(),
        actor.run_id,
        text,
        metadata,
        sources_json,
        at,
        supersedes,
        model,
        to_blob(&normalised(vector)),
    ])?;
    let seq = conn.last_insert_rowid();
    for (record, kind) in kinds {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO memory_sources (seq, record_id, kind) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![seq, record, kind])?;
    }
    Ok(Memory {
        id,
        text: text.into(),
        metadata: metadata.into(),
        sources: sources.to_vec(),
        by: actor.label(),
        at,
        supersedes: supersedes.map(String::from),
    })
}

/// Each source record with its kind; `invalid` for one that does not exist
/// or may not be read (one answer for both, so a source reveals neither its
/// kind nor that it exists).
fn source_kinds(
    conn: &Connection,
    actor: &Actor,
    grant: &Grant,
    sources: &[String],
) -> Result<Vec<(String, String)>, CallError> {
    check_sources(sources)?;
    let mut kinds = Vec::new();
    for id in sources {
        crate::limits::check_len("source id", id, crate::limits::MAX_NAME_BYTES)?;
        match crate::records::kind_of(conn, id)? {
            Some(k) if grant.can_read(&k) => kinds.push((id.clone(), k)),
            _ => {
                return Err(CallError::Invalid(format!(
                    "source record {id} does not exist or may not be read by {}",
                    actor.label()
                )));
            }
        }
    }
    Ok(kinds)
}

/// Marks memory `old` superseded by `id`. Superseding hides the old memory
/// from every recall: only its author may do that, once.
fn supersede(conn: &Connection, actor: &Actor, old: &str, id: &str) -> Result<(), CallError> {
    let state: Option<(String, Option<String>)> = conn
        .prepare_cached("SELECT plugin, superseded_by FROM memories WHERE id = ?1")?
        .query_row([old], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match state {
        None => Err(CallError::NotFound(format!("memory {old} does not exist"))),
        Some((by, _)) if by != actor.plugin => Err(CallError::Denied(format!(
            "memory {old} was remembered by another plugin; {} may supersede only its own memories",
            actor.label()
        ))),
        Some((_, Some(by))) => Err(CallError::Conflict(format!(
            "memory {old} was already superseded by {by}; supersede that one"
        ))),
        Some((_, None)) => {
            conn.prepare_cached("UPDATE memories SET superseded_by = ?2 WHERE id = ?1")?
                .execute(params![old, id])?;
            Ok(())
        }
    }
}
