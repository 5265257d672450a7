//! Recall: full-text (FTS5, BM25) and vector rankings fused by reciprocal
//! rank, narrowed by a filter, shown only when the caller may read every
//! source.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension};

use super::remember::normalised;
use super::vectors::{VectorCache, Viewer, scan};
use super::{MAX_KEY_BYTES, Memory};
use crate::error::CallError;

/// Candidates each ranking contributes to the fusion.
const CANDIDATES: usize = 100;
/// The reciprocal-rank-fusion constant.
const RRF_K: f64 = 60.0;

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

/// Most metadata keys one recall filter may name.
pub const MAX_FILTER_KEYS: usize = 8;

/// What a recall is narrowed to before ranking; every part that is set must
/// match.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Remembered by this plugin id.
    pub by_plugin: Option<String>,
    /// Learned from this record.
    pub source: Option<String>,
    /// `(JSON path, JSON value)` pairs the metadata must hold.
    pub metadata: Vec<(String, String)>,
    /// Remembered at or after this time (the store's RFC 3339 form).
    pub since: Option<String>,
}

impl Filter {
    /// Checks a guest's filter: a JSON object of at most
    /// [`MAX_FILTER_KEYS`] plain keys, and an RFC 3339 time.
    pub fn new(
        by_plugin: Option<String>,
        source: Option<String>,
        metadata: Option<&str>,
        since: Option<&str>,
    ) -> Result<Filter, CallError> {
        let mut pairs = Vec::new();
        if let Some(text) = metadata {
            let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
                .map_err(|_| {
                    CallError::Invalid(
                        "a recall filter's metadata is a JSON object, e.g. {\"topic\":\"billing\"}"
                            .into(),
                    )
                })?;
            if object.len() > MAX_FILTER_KEYS {
                return Err(CallError::Invalid(format!(
                    "a recall filter names at most {MAX_FILTER_KEYS} metadata keys, not {}",
                    object.len()
                )));
            }
            for (key, value) in object {
                if key.is_empty()
                    || key.len() > MAX_KEY_BYTES
                    || key.chars().any(|c| c == '"' || c == '\\' || c.is_control())
                {
                    return Err(CallError::Invalid(format!(
                        "the metadata key {key:?} cannot be filtered on; use keys without quotes, backslashes or control characters"
                    )));
                }
                pairs.push((format!("$.\"{key}\""), value.to_string()));
            }
        }
        let since = since
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| {
                        t.with_timezone(&chrono::Utc)
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    })
                    .map_err(|_| {
                        CallError::Invalid(format!(
                            "a recall filter's since is an RFC 3339 time such as 2026-01-31T09:00:00Z, not {t:?}"
                        ))
                    })
            })
            .transpose()?;
        Ok(Filter {
            by_plugin,
            source,
            metadata: pairs,
            since,
        })
    }

    /// Whether nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.by_plugin.is_none()
            && self.source.is_none()
            && self.metadata.is_empty()
            && self.since.is_none()
    }

    /// The filter as SQL conditions on `m` (a `memories` row), each starting
    /// with AND, and their parameters in order.
    fn sql(&self) -> (String, Vec<String>) {
        let mut sql = String::new();
        let mut args = Vec::new();
        if let Some(plugin) = &self.by_plugin {
            sql.push_str(" AND m.plugin = ?");
            args.push(plugin.clone());
        }
        if let Some(source) = &self.source {
            sql.push_str(" AND m.seq IN (SELECT seq FROM memory_sources WHERE record_id = ?)");
            args.push(source.clone());
        }
        for (path, value) in &self.metadata {
            sql.push_str(" AND json_extract(m.metadata, ?) IS json_extract(?, '$')");
            args.push(path.clone());
            args.push(value.clone());
        }
        if let Some(since) = &self.since {
            sql.push_str(" AND m.at >= ?");
            args.push(since.clone());
        }
        (sql, args)
    }
}

/// The `k` current memories most relevant to `query` (embedded as
/// `query_vector` by `model`) that `grant` may see and `filter` lets
/// through. `vectors` is the home's cache of loaded vectors.
// Each argument is one part of the question; a struct for them would be
// built at every call site only to be taken apart here.
#[allow(clippy::too_many_arguments)]
pub fn recall(
    conn: &Connection,
    vectors: &VectorCache,
    viewer: Viewer<'_>,
    query: &str,
    query_vector: Vec<f32>,
    model: &str,
    k: u32,
    filter: &Filter,
) -> Result<Vec<(Memory, f32)>, CallError> {
    let mut fused: HashMap<i64, f64> = HashMap::new();
    rank_text(conn, viewer, query, filter, &mut fused)?;
    let query_vector = normalised(query_vector);
    let mut scored = scan(conn, vectors, viewer, model, &query_vector)?;
    if !filter.is_empty() {
        // Narrowed before ranking, so a filter never leaves fewer than k
        // when more match.
        let (cond, cond_args) = filter.sql();
        let allowed: std::collections::HashSet<i64> = conn
            .prepare_cached(&format!(
                "SELECT m.seq FROM memories m WHERE m.superseded_by IS NULL{cond}"
            ))?
            .query_map(rusqlite::params_from_iter(cond_args.iter()), |r| {
                r.get::<_, i64>(0)
            })?
            .collect::<Result<_, _>>()?;
        scored.retain(|(_, seq)| allowed.contains(seq));
    }
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
        if let Some(memory) = shown(conn, viewer, seq)? {
            out.push((memory, score as f32));
        }
    }
    Ok(out)
}

/// The full-text ranking's contribution to the fusion.
fn rank_text(
    conn: &Connection,
    viewer: Viewer<'_>,
    query: &str,
    filter: &Filter,
    fused: &mut HashMap<i64, f64>,
) -> Result<(), CallError> {
    let Some(q) = fts_query(query) else {
        return Ok(());
    };
    let (cond, cond_args) = filter.sql();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT f.rowid FROM memories_fts f JOIN memories m ON m.seq = f.rowid
         WHERE memories_fts MATCH ? AND m.superseded_by IS NULL
           AND (m.sources != '[]' OR m.plugin = ? OR ?){cond} ORDER BY f.rank LIMIT ?"
    ))?;
    let shared = viewer.grant.capabilities.shared_memory;
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&q, &viewer.plugin, &shared];
    args.extend(cond_args.iter().map(|a| a as &dyn rusqlite::ToSql));
    let limit = CANDIDATES as i64;
    args.push(&limit);
    let seqs = stmt.query_map(args.as_slice(), |r| r.get::<_, i64>(0))?;
    for (rank, seq) in seqs.enumerate() {
        *fused.entry(seq?).or_default() += 1.0 / (RRF_K + rank as f64 + 1.0);
    }
    Ok(())
}

/// Memory `seq`, if it is current and `viewer` may see it: every source
/// kind readable, and an unsourced memory only to whom it belongs.
fn shown(conn: &Connection, viewer: Viewer<'_>, seq: i64) -> Result<Option<Memory>, CallError> {
    let kinds: Vec<String> = conn
        .prepare_cached("SELECT kind FROM memory_sources WHERE seq = ?1")?
        .query_map([seq], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if !kinds.iter().all(|kind| viewer.grant.can_read(kind)) {
        return Ok(None);
    }
    let memory = conn
        .prepare_cached(
            "SELECT id, text, metadata, sources, by_label, at, supersedes, plugin FROM memories
             WHERE seq = ?1 AND superseded_by IS NULL",
        )?
        .query_row([seq], |r| {
            let by: String = r.get(7)?;
            if kinds.is_empty() && !viewer.sees_unsourced(&by) {
                return Ok(None);
            }
            Ok(Some(Memory {
                id: r.get(0)?,
                text: r.get(1)?,
                metadata: r.get(2)?,
                sources: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
                by: r.get(4)?,
                at: r.get(5)?,
                supersedes: r.get(6)?,
            }))
        })
        .optional()?
        .flatten();
    Ok(memory)
}
