//! Layered memory in the store: working memory (per plugin, with expiry)
//! and long-term memories with hybrid recall — full-text (FTS5, BM25) and
//! vector similarity (a scan of the current memories' embeddings), fused by
//! reciprocal rank, shown only when the caller may read every source.

use std::collections::HashMap;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::error::CallError;
use crate::grant::Grant;
use crate::store::{Actor, new_id, now};

/// Longest memory text, working-memory value and key.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_KEY_BYTES: usize = 256;
/// Most memories one recall returns.
pub const MAX_K: u32 = 50;
/// Candidates each ranking contributes to the fusion.
const CANDIDATES: usize = 100;
/// The reciprocal-rank-fusion constant.
const RRF_K: f64 = 60.0;

/// A long-term memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Memory {
    pub id: String,
    pub text: String,
    pub metadata: String,
    pub sources: Vec<String>,
    pub by: String,
    pub at: String,
    pub supersedes: Option<String>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Sets `plugin`'s working-memory `key`.
pub fn working_set(
    conn: &Connection,
    plugin: &str,
    key: &str,
    value: &str,
    ttl_seconds: Option<u32>,
) -> Result<(), CallError> {
    check_working(key, Some(value))?;
    let expires = ttl_seconds.map(|s| now_ms() + i64::from(s) * 1000);
    conn.prepare_cached(
        "INSERT INTO working_memory (plugin, key, value, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
    )?
    .execute(params![plugin, key, value, expires])?;
    Ok(())
}

/// `plugin`'s working-memory `key`, unless unset or expired.
pub fn working_get(
    conn: &Connection,
    plugin: &str,
    key: &str,
) -> Result<Option<String>, CallError> {
    check_working(key, None)?;
    Ok(conn
        .prepare_cached(
            "SELECT value FROM working_memory WHERE plugin = ?1 AND key = ?2
             AND (expires_at IS NULL OR expires_at > ?3)",
        )?
        .query_row(params![plugin, key, now_ms()], |r| r.get(0))
        .optional()?)
}

/// Checks a working-memory key and value.
pub fn check_working(key: &str, value: Option<&str>) -> Result<(), CallError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(CallError::Invalid(format!(
            "a working-memory key is 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    if let Some(v) = value {
        if v.len() > MAX_VALUE_BYTES {
            return Err(CallError::Limit(format!(
                "the value is {} bytes, over the {MAX_VALUE_BYTES}-byte limit",
                v.len()
            )));
        }
        serde_json::from_str::<serde::de::IgnoredAny>(v)
            .map_err(|e| CallError::Invalid(format!("the value is not JSON: {e}")))?;
    }
    Ok(())
}

/// Checks what `remember` was given, before anything is embedded.
pub fn check_memory(text: &str, metadata: &str) -> Result<(), CallError> {
    if text.trim().is_empty() {
        return Err(CallError::Invalid("a memory needs some text".into()));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(CallError::Limit(format!(
            "the memory is {} bytes, over the {MAX_TEXT_BYTES}-byte limit",
            text.len()
        )));
    }
    let meta: serde_json::Value = serde_json::from_str(metadata)
        .map_err(|e| CallError::Invalid(format!("the metadata is not JSON: {e}")))?;
    if !meta.is_object() {
        return Err(CallError::Invalid(
            "the metadata must be a JSON object".into(),
        ));
    }
    Ok(())
}

fn normalised(mut v: Vec<f32>) -> Vec<f32> {
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
    let mut kinds = Vec::new();
    for id in sources {
        let kind: Option<String> = conn
            .prepare_cached("SELECT kind FROM records WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        match kind {
            Some(k) if !grant.can_read(&k) => {
                return Err(CallError::Denied(format!(
                    "source record {id} is a {k}, which {} may not read",
                    actor.label()
                )));
            }
            Some(k) => kinds.push((id.clone(), k)),
            None => {
                return Err(CallError::NotFound(format!(
                    "source record {id} does not exist"
                )));
            }
        }
    }
    let id = new_id();
    if let Some(old) = supersedes {
        let state: Option<Option<String>> = conn
            .prepare_cached("SELECT superseded_by FROM memories WHERE id = ?1")?
            .query_row([old], |r| r.get(0))
            .optional()?;
        match state {
            None => {
                return Err(CallError::NotFound(format!("memory {old} does not exist")));
            }
            Some(Some(by)) => {
                return Err(CallError::Conflict(format!(
                    "memory {old} was already superseded by {by}; supersede that one"
                )));
            }
            Some(None) => {
                conn.prepare_cached("UPDATE memories SET superseded_by = ?2 WHERE id = ?1")?
                    .execute(params![old, id])?;
            }
        }
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

/// The embeddings of one store's current memories, by model, kept in
/// memory between recalls and topped up with the memories added since
/// (memories are never deleted; superseded ones are skipped when results are
/// read).
#[derive(Default)]
struct Vectors {
    /// Highest `seq` loaded.
    upto: i64,
    seqs: Vec<i64>,
    /// `seqs.len()` vectors of `dim` floats, end to end.
    data: Vec<f32>,
    dim: usize,
}

type VectorKey = (String, String);

static VECTORS: std::sync::LazyLock<Mutex<HashMap<VectorKey, Vectors>>> =
    std::sync::LazyLock::new(|| Mutex::new(HashMap::new()));

/// Each memory embedded by `model` with its similarity to `query`.
fn scan(conn: &Connection, model: &str, query: &[f32]) -> Result<Vec<(f32, i64)>, CallError> {
    let key = (conn.path().unwrap_or("").to_string(), model.to_string());
    let mut all = VECTORS.lock().unwrap_or_else(|p| p.into_inner());
    let cache = all.entry(key).or_default();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT seq, vector FROM memories WHERE model = ?1 AND seq > ?2 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![model, cache.upto])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let blob = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            let dim = blob.len() / 4;
            if cache.seqs.is_empty() {
                cache.dim = dim;
            }
            cache.upto = seq;
            if dim != cache.dim {
                continue;
            }
            cache.seqs.push(seq);
            cache.data.extend(
                blob.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
    }
    if cache.dim != query.len() || cache.dim == 0 {
        return Ok(Vec::new());
    }
    Ok(cache
        .data
        .chunks_exact(cache.dim)
        .zip(&cache.seqs)
        .map(|(v, seq)| (dot(v, query), *seq))
        .collect())
}

/// The dot product of two vectors of one length, summed in 16 independent
/// lanes: a single running sum must be added in order and stays scalar,
/// while separate lanes compile to SIMD (about 4x faster here).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [0f32; LANES];
    let (a_body, a_tail) = a.split_at(a.len() - a.len() % LANES);
    let (b_body, b_tail) = b.split_at(a_body.len().min(b.len()));
    for (x, y) in a_body.chunks_exact(LANES).zip(b_body.chunks_exact(LANES)) {
        for i in 0..LANES {
            lanes[i] += x[i] * y[i];
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// The words of `query` as an FTS5 query matching any of them.
fn fts_query(query: &str) -> Option<String> {
    let words: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(64)
        .map(|w| format!("\"{}\"", w.to_lowercase()))
        .collect();
    (!words.is_empty()).then(|| words.join(" OR "))
}

/// The `k` current memories most relevant to `query` (embedded as
/// `query_vector` by `model`) that `grant` may see.
pub fn recall(
    conn: &Connection,
    grant: &Grant,
    query: &str,
    query_vector: Vec<f32>,
    model: &str,
    k: u32,
) -> Result<Vec<(Memory, f32)>, CallError> {
    let mut fused: std::collections::HashMap<i64, f64> = std::collections::HashMap::new();
    if let Some(q) = fts_query(query) {
        let mut stmt = conn.prepare_cached(
            "SELECT f.rowid FROM memories_fts f JOIN memories m ON m.seq = f.rowid
             WHERE memories_fts MATCH ?1 AND m.superseded_by IS NULL ORDER BY f.rank LIMIT ?2",
        )?;
        let seqs = stmt.query_map(params![q, CANDIDATES as i64], |r| r.get::<_, i64>(0))?;
        for (rank, seq) in seqs.enumerate() {
            *fused.entry(seq?).or_default() += 1.0 / (RRF_K + rank as f64 + 1.0);
        }
    }
    let query_vector = normalised(query_vector);
    let mut scored = scan(conn, model, &query_vector)?;
    let top = CANDIDATES.min(scored.len());
    if top > 0 {
        scored.select_nth_unstable_by(top - 1, |a, b| b.0.total_cmp(&a.0));
        scored.truncate(top);
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    }
    for (rank, (_, seq)) in scored.iter().enumerate() {
        *fused.entry(*seq).or_default() += 1.0 / (RRF_K + rank as f64 + 1.0);
    }
    let mut ranked: Vec<(i64, f64)> = fused.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut out = Vec::new();
    for (seq, score) in ranked {
        if out.len() >= k as usize {
            break;
        }
        let kinds: Vec<String> = conn
            .prepare_cached("SELECT kind FROM memory_sources WHERE seq = ?1")?
            .query_map([seq], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if !kinds.iter().all(|kind| grant.can_read(kind)) {
            continue;
        }
        let memory = conn
            .prepare_cached(
                "SELECT id, text, metadata, sources, by_label, at, supersedes FROM memories
                 WHERE seq = ?1 AND superseded_by IS NULL",
            )?
            .query_row([seq], |r| {
                Ok(Memory {
                    id: r.get(0)?,
                    text: r.get(1)?,
                    metadata: r.get(2)?,
                    sources: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
                    by: r.get(4)?,
                    at: r.get(5)?,
                    supersedes: r.get(6)?,
                })
            })
            .optional()?;
        if let Some(memory) = memory {
            out.push((memory, score as f32));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::dot;

    #[test]
    fn the_lane_dot_product_equals_the_plain_one_at_every_length() {
        for len in [0, 1, 15, 16, 17, 33, 384] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "length {len}");
        }
    }
}
