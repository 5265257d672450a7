//! Layered memory in the store: working memory (per plugin, with expiry)
//! and long-term memories with hybrid recall — full-text (FTS5, BM25) and
//! vector similarity (a scan of the current memories' embeddings), fused by
//! reciprocal rank, shown only when the caller may read every source.

mod host;
pub use host::{MemoryView, add_to_linker};

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
/// Most keys and bytes (keys plus values) of one run's working memory,
/// which the host holds for the run.
pub const MAX_RUN_KEYS: usize = 1024;
pub const MAX_RUN_BYTES: usize = 8 * 1024 * 1024;
/// Most keys and bytes of one plugin's working memory in the store.
pub const MAX_PLUGIN_KEYS: i64 = 10_000;
pub const MAX_PLUGIN_BYTES: i64 = 64 * 1024 * 1024;

/// Working memory of scope `run`: held by the host for one run, bounded in
/// keys and bytes, its peak counted in the run's memory.
#[derive(Debug, Default)]
pub struct RunMemory {
    values: HashMap<String, String>,
    bytes: usize,
    peak: usize,
}

impl RunMemory {
    /// Sets `key`, unless that would take the run past its bounds.
    pub fn set(&mut self, key: String, value: String) -> Result<(), CallError> {
        check_working(&key, Some(&value))?;
        let old = self.values.get(&key).map_or(0, |v| key.len() + v.len());
        let bytes = self.bytes - old + key.len() + value.len();
        if old == 0 && self.values.len() >= MAX_RUN_KEYS {
            return Err(CallError::Limit(format!(
                "run working memory holds {MAX_RUN_KEYS} keys, its most; reuse keys or use scope plugin"
            )));
        }
        if bytes > MAX_RUN_BYTES {
            return Err(CallError::Limit(format!(
                "run working memory would hold {bytes} bytes, over its {MAX_RUN_BYTES}-byte limit"
            )));
        }
        self.values.insert(key, value);
        self.bytes = bytes;
        self.peak = self.peak.max(bytes);
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&String> {
        self.values.get(key)
    }

    /// The most bytes it held at once.
    pub fn peak(&self) -> usize {
        self.peak
    }
}
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
    let now = now_ms();
    // Expired keys stop counting against the plugin's bounds.
    conn.prepare_cached("DELETE FROM working_memory WHERE plugin = ?1 AND expires_at <= ?2")?
        .execute(params![plugin, now])?;
    let (keys, bytes): (i64, i64) = conn
        .prepare_cached(
            "SELECT count(*), COALESCE(sum(bytes), 0) FROM working_memory
             WHERE plugin = ?1 AND key != ?2",
        )?
        .query_row(params![plugin, key], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if keys >= MAX_PLUGIN_KEYS {
        return Err(CallError::Limit(format!(
            "{plugin}'s working memory holds {MAX_PLUGIN_KEYS} keys, its most; reuse keys or set a ttl"
        )));
    }
    let total = bytes.saturating_add(i64::try_from(key.len() + value.len()).unwrap_or(i64::MAX));
    if total > MAX_PLUGIN_BYTES {
        return Err(CallError::Limit(format!(
            "{plugin}'s working memory would hold {total} bytes, over its {MAX_PLUGIN_BYTES}-byte limit"
        )));
    }
    let expires = ttl_seconds.map(|s| now + i64::from(s) * 1000);
    conn.prepare_cached(
        "INSERT INTO working_memory (plugin, key, value, expires_at, bytes) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at,
             bytes = excluded.bytes",
    )?
    .execute(params![
        plugin,
        key,
        value,
        expires,
        i64::try_from(key.len() + value.len()).unwrap_or(i64::MAX)
    ])?;
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

/// `limit` when a memory names more sources than are kept.
pub fn check_sources(sources: &[String]) -> Result<(), CallError> {
    if sources.len() > crate::limits::MAX_SOURCES {
        return Err(CallError::Limit(format!(
            "{} sources given; a memory names at most {}",
            sources.len(),
            crate::limits::MAX_SOURCES
        )));
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
    check_sources(sources)?;
    let mut kinds = Vec::new();
    for id in sources {
        crate::limits::check_len("source id", id, crate::limits::MAX_NAME_BYTES)?;
        // One answer for a record that is missing and one the plugin may
        // not read, so a source reveals neither its kind nor that it exists.
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
    let id = new_id();
    if let Some(old) = supersedes {
        let state: Option<(String, Option<String>)> = conn
            .prepare_cached("SELECT plugin, superseded_by FROM memories WHERE id = ?1")?
            .query_row([old], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match state {
            None => {
                return Err(CallError::NotFound(format!("memory {old} does not exist")));
            }
            // Superseding hides the old memory from every recall: only its
            // author may do that.
            Some((by, _)) if by != actor.plugin => {
                return Err(CallError::Denied(format!(
                    "memory {old} was remembered by another plugin; {} may supersede only its own memories",
                    actor.label()
                )));
            }
            Some((_, Some(by))) => {
                return Err(CallError::Conflict(format!(
                    "memory {old} was already superseded by {by}; supersede that one"
                )));
            }
            Some((_, None)) => {
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
    /// Per memory: who remembered it (an index into `plugins`), and
    /// whether it names a source record, which decide who may see it.
    owners: Vec<u32>,
    sourced: Vec<bool>,
    plugins: Vec<String>,
    /// `seqs.len()` vectors of `dim` floats, end to end.
    data: Vec<f32>,
    dim: usize,
}

type VectorKey = (String, String);

static VECTORS: std::sync::LazyLock<Mutex<HashMap<VectorKey, Vectors>>> =
    std::sync::LazyLock::new(|| Mutex::new(HashMap::new()));

/// Who is recalling: a memory that names no source is visible only to the
/// plugin that remembered it, or to one granted `shared_memory`.
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    pub grant: &'a Grant,
    pub plugin: &'a str,
}

impl Viewer<'_> {
    fn sees_unsourced(&self, by: &str) -> bool {
        self.grant.capabilities.shared_memory || by == self.plugin
    }
}

/// Each memory embedded by `model` that `viewer` may see (as far as who
/// remembered it goes), with its similarity to `query`.
fn scan(
    conn: &Connection,
    viewer: Viewer<'_>,
    model: &str,
    query: &[f32],
) -> Result<Vec<(f32, i64)>, CallError> {
    let key = (conn.path().unwrap_or("").to_string(), model.to_string());
    let mut all = VECTORS.lock().unwrap_or_else(|p| p.into_inner());
    let cache = all.entry(key).or_default();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT seq, vector, plugin, sources != '[]' FROM memories
             WHERE model = ?1 AND seq > ?2 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![model, cache.upto])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let plugin: String = row.get(2)?;
            let sourced: bool = row.get(3)?;
            let blob = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            let dim = blob.len() / 4;
            if cache.seqs.is_empty() {
                cache.dim = dim;
            }
            cache.upto = seq;
            if dim != cache.dim {
                continue;
            }
            let owner = match cache.plugins.iter().position(|p| *p == plugin) {
                Some(i) => i,
                None => {
                    cache.plugins.push(plugin);
                    cache.plugins.len() - 1
                }
            };
            cache.seqs.push(seq);
            cache.owners.push(u32::try_from(owner).unwrap_or(u32::MAX));
            cache.sourced.push(sourced);
            cache.data.extend(
                blob.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
    }
    if cache.dim != query.len() || cache.dim == 0 {
        return Ok(Vec::new());
    }
    let visible: Vec<bool> = cache
        .plugins
        .iter()
        .map(|p| viewer.sees_unsourced(p))
        .collect();
    Ok(cache
        .data
        .chunks_exact(cache.dim)
        .zip(&cache.seqs)
        .zip(cache.owners.iter().zip(&cache.sourced))
        .filter(|(_, (owner, sourced))| {
            **sourced || visible.get(**owner as usize).copied().unwrap_or(false)
        })
        .map(|((v, seq), _)| (dot(v, query), *seq))
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
/// through.
pub fn recall(
    conn: &Connection,
    viewer: Viewer<'_>,
    query: &str,
    query_vector: Vec<f32>,
    model: &str,
    k: u32,
    filter: &Filter,
) -> Result<Vec<(Memory, f32)>, CallError> {
    let grant = viewer.grant;
    let mut fused: std::collections::HashMap<i64, f64> = std::collections::HashMap::new();
    let (cond, cond_args) = filter.sql();
    if let Some(q) = fts_query(query) {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT f.rowid FROM memories_fts f JOIN memories m ON m.seq = f.rowid
             WHERE memories_fts MATCH ? AND m.superseded_by IS NULL
               AND (m.sources != '[]' OR m.plugin = ? OR ?){cond} ORDER BY f.rank LIMIT ?"
        ))?;
        let shared = grant.capabilities.shared_memory;
        let mut args: Vec<&dyn rusqlite::ToSql> = vec![&q, &viewer.plugin, &shared];
        args.extend(cond_args.iter().map(|a| a as &dyn rusqlite::ToSql));
        let limit = CANDIDATES as i64;
        args.push(&limit);
        let seqs = stmt.query_map(args.as_slice(), |r| r.get::<_, i64>(0))?;
        for (rank, seq) in seqs.enumerate() {
            *fused.entry(seq?).or_default() += 1.0 / (RRF_K + rank as f64 + 1.0);
        }
    }
    let query_vector = normalised(query_vector);
    let mut scored = scan(conn, viewer, model, &query_vector)?;
    if !filter.is_empty() {
        // Narrowed before ranking, so a filter never leaves fewer than k
        // when more match.
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
        let kinds: Vec<String> = conn
            .prepare_cached("SELECT kind FROM memory_sources WHERE seq = ?1")?
            .query_map([seq], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if !kinds.iter().all(|kind| grant.can_read(kind)) {
            continue;
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
        if let Some(memory) = memory {
            out.push((memory, score as f32));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{Filter, dot, insert, recall};
    use crate::error::CallError;
    use crate::grant::Grant;
    use crate::store::{Actor, Store};

    fn open_grant() -> Grant {
        Grant {
            capabilities: crate::manifest::Capabilities {
                read: vec!["core/*".into()],
                ..Default::default()
            },
            dirs: BTreeMap::new(),
            config: BTreeMap::new(),
            concurrency: None,
            rate: None,
            review_below: Default::default(),
            denied: Vec::new(),
        }
    }

    fn by(plugin: &str) -> Actor {
        Actor {
            plugin: plugin.into(),
            ..Actor::operator()
        }
    }

    /// A unit vector along axis `i` of 4.
    fn axis(i: usize) -> Vec<f32> {
        let mut v = vec![0.0; 4];
        v[i] = 1.0;
        v
    }

    fn texts(found: &[(super::Memory, f32)]) -> Vec<&str> {
        found.iter().map(|(m, _)| m.text.as_str()).collect()
    }

    #[test]
    fn a_filter_narrows_recall_before_ranking() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("keel.db")).unwrap();
        // Shared: the test recalls the planner's memories as triage.
        let mut grant = open_grant();
        grant.capabilities.shared_memory = true;
        let tx = store.conn_mut().transaction().unwrap();
        tx.execute(
            "INSERT INTO records (id, kind, body, version, created_at, updated_at, created_by, updated_by)
             VALUES ('r1', 'core/message', '{}', 1, 'now', 'now', 'operator', 'operator')",
            [],
        )
        .unwrap();
        let remember = |actor: &Actor, text: &str, metadata: &str, sources: &[String], v| {
            insert(&tx, actor, &grant, text, metadata, sources, None, "m", v).unwrap()
        };
        remember(
            &by("triage"),
            "ann asked about the invoice",
            r#"{"sender":"ann@example.com","n":1}"#,
            &["r1".into()],
            axis(0),
        );
        remember(
            &by("triage"),
            "bob asked about the invoice",
            r#"{"sender":"bob@example.com","n":2}"#,
            &[],
            axis(0),
        );
        remember(
            &by("planner"),
            "invoice goals for the quarter",
            r#"{"sender":"ann@example.com"}"#,
            &[],
            axis(1),
        );
        tx.commit().unwrap();
        let conn = store.conn();
        let viewer = super::Viewer {
            grant: &grant,
            plugin: "triage",
        };
        let found =
            |filter: &Filter, k| recall(conn, viewer, "invoice", axis(0), "m", k, filter).unwrap();
        assert_eq!(found(&Filter::default(), 10).len(), 3);
        let ann = Filter::new(None, None, Some(r#"{"sender":"ann@example.com"}"#), None).unwrap();
        let mut t = texts(&found(&ann, 10))
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        t.sort();
        assert_eq!(
            t,
            [
                "ann asked about the invoice",
                "invoice goals for the quarter"
            ]
        );
        // Two keys must both match, numbers compared as numbers.
        let both = Filter::new(
            None,
            None,
            Some(r#"{"sender":"ann@example.com","n":1.0}"#),
            None,
        )
        .unwrap();
        assert_eq!(texts(&found(&both, 10)), ["ann asked about the invoice"]);
        // Narrowed before ranking: k = 1 among the planner's gives the
        // planner's even though the triage ones rank higher overall.
        let planner = Filter::new(Some("planner".into()), None, None, None).unwrap();
        assert_eq!(
            texts(&found(&planner, 1)),
            ["invoice goals for the quarter"]
        );
        let from_r1 = Filter::new(None, Some("r1".into()), None, None).unwrap();
        assert_eq!(texts(&found(&from_r1, 10)), ["ann asked about the invoice"]);
        let future = Filter::new(None, None, None, Some("2999-01-01T00:00:00+02:00")).unwrap();
        assert!(found(&future, 10).is_empty());
        let past = Filter::new(None, None, None, Some("2000-01-01T00:00:00Z")).unwrap();
        assert_eq!(found(&past, 10).len(), 3);
        let nobody = Filter::new(Some("nobody".into()), None, None, None).unwrap();
        assert!(found(&nobody, 10).is_empty());
    }

    /// `plugin` remembers `text` along axis 0, from `sources`, maybe
    /// superseding another memory.
    fn remember_as(
        tx: &rusqlite::Connection,
        plugin: &str,
        text: &str,
        sources: &[String],
        supersedes: Option<&str>,
    ) -> Result<super::Memory, CallError> {
        let grant = open_grant();
        insert(
            tx,
            &by(plugin),
            &grant,
            text,
            "{}",
            sources,
            supersedes,
            "m",
            axis(0),
        )
    }

    #[test]
    fn m5_an_unsourced_memory_is_its_authors_unless_shared_is_granted() {
        let mut store = Store::open_in_memory().unwrap();
        let grant = open_grant();
        let tx = store.conn_mut().transaction().unwrap();
        remember_as(&tx, "triage", "ann is a vip", &[], None).unwrap();
        tx.commit().unwrap();
        let conn = store.conn();
        let recall_as = |plugin: &str, grant: &Grant| {
            let viewer = super::Viewer { grant, plugin };
            texts(&recall(conn, viewer, "vip", axis(0), "m", 10, &Filter::default()).unwrap())
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(recall_as("triage", &grant), ["ann is a vip"]);
        assert!(recall_as("planner", &grant).is_empty());
        let mut shared = open_grant();
        shared.capabilities.shared_memory = true;
        assert_eq!(recall_as("planner", &shared), ["ann is a vip"]);
    }

    #[test]
    fn m5_a_plugin_supersedes_only_its_own_memories() {
        let mut store = Store::open_in_memory().unwrap();
        let tx = store.conn_mut().transaction().unwrap();
        let m = remember_as(&tx, "triage", "ann is a vip", &[], None).unwrap();
        let hijack = remember_as(&tx, "mallory", "ann is a spammer", &[], Some(&m.id));
        assert_eq!(
            hijack.unwrap_err(),
            CallError::Denied(format!(
                "memory {} was remembered by another plugin; mallory may supersede only its own memories",
                m.id
            ))
        );
        // Its own, it may.
        remember_as(&tx, "triage", "ann is a vip again", &[], Some(&m.id)).unwrap();
    }

    #[test]
    fn m5_remember_bounds_and_hides_its_sources() {
        let mut store = Store::open_in_memory().unwrap();
        let tx = store.conn_mut().transaction().unwrap();
        tx.execute(
            "INSERT INTO records (id, kind, body, version, created_at, updated_at, created_by, updated_by)
             VALUES ('secret', 'mail/message', '{}', 1, 'now', 'now', 'operator', 'operator')",
            [],
        )
        .unwrap();
        let many: Vec<String> = (0..257).map(|i| format!("r{i}")).collect();
        let r = remember_as(&tx, "p", "t", &many, None);
        assert!(matches!(r, Err(CallError::Limit(_))), "{r:?}");
        let unreadable = remember_as(&tx, "p", "t", &["secret".into()], None).unwrap_err();
        let missing = remember_as(&tx, "p", "t", &["nothing".into()], None).unwrap_err();
        assert_eq!(
            unreadable.message().replace("secret", "X"),
            missing.message().replace("nothing", "X")
        );
    }

    #[test]
    fn h1_plugin_working_memory_is_bounded_in_keys_and_bytes() {
        let store = Store::open_in_memory().unwrap();
        let conn = store.conn();
        let big = format!("\"{}\"", "x".repeat(super::MAX_VALUE_BYTES - 2));
        let fit = super::MAX_PLUGIN_BYTES as usize / (big.len() + 4);
        for i in 0..fit {
            super::working_set(conn, "p", &format!("k{i:03}"), &big, None).unwrap();
        }
        let over = super::working_set(conn, "p", "one-more", &big, None).unwrap_err();
        assert!(matches!(over, CallError::Limit(_)), "{over:?}");
        // Replacing a key is not growing; another plugin has its own room.
        super::working_set(conn, "p", "k000", &big, None).unwrap();
        super::working_set(conn, "q", "k", &big, None).unwrap();
        // Expired keys stop counting.
        conn.execute(
            "UPDATE working_memory SET expires_at = 1 WHERE plugin = 'p'",
            [],
        )
        .unwrap();
        super::working_set(conn, "p", "fresh", &big, None).unwrap();
    }

    #[test]
    fn h1_run_working_memory_is_bounded_in_keys_and_bytes() {
        let mut run = super::RunMemory::default();
        for i in 0..super::MAX_RUN_KEYS {
            run.set(format!("k{i}"), "1".into()).unwrap();
        }
        assert!(matches!(
            run.set("more".into(), "1".into()),
            Err(CallError::Limit(_))
        ));
        run.set("k0".into(), "2".into()).unwrap();
        let mut run = super::RunMemory::default();
        let big = format!("\"{}\"", "x".repeat(60_000));
        let mut n = 0;
        while run.set(format!("k{n}"), big.clone()).is_ok() {
            n += 1;
        }
        assert!(run.peak() <= super::MAX_RUN_BYTES && run.peak() > super::MAX_RUN_BYTES - 70_000);
    }

    #[test]
    fn a_bad_filter_is_refused_with_what_to_write() {
        let invalid = |r: Result<Filter, CallError>| match r {
            Err(CallError::Invalid(m)) => m,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert!(invalid(Filter::new(None, None, Some("[1]"), None)).contains("JSON object"));
        let nine: serde_json::Map<String, serde_json::Value> =
            (0..9).map(|i| (format!("k{i}"), i.into())).collect();
        let nine = serde_json::Value::Object(nine).to_string();
        assert!(invalid(Filter::new(None, None, Some(&nine), None)).contains("at most 8"));
        assert!(
            invalid(Filter::new(None, None, Some(r#"{"a\"b":1}"#), None))
                .contains("cannot be filtered")
        );
        assert!(invalid(Filter::new(None, None, None, Some("yesterday"))).contains("RFC 3339"));
    }

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
