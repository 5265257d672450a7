//! The memories' embeddings, loaded once per home and model and scanned for
//! similarity.

use std::collections::HashMap;
use std::sync::Mutex;

use rusqlite::{Connection, params};

use crate::error::CallError;
use crate::grant::Grant;

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

/// The memory vectors of one home loaded so far, by embedding model
/// (kept in the home: [`crate::home::Home::cache`]); each recall loads
/// only the memories remembered since.
#[derive(Default)]
pub struct VectorCache(Mutex<HashMap<String, Vectors>>);

/// Who is recalling: a memory that names no source is visible only to the
/// plugin that remembered it, or to one granted `shared_memory`.
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    pub grant: &'a Grant,
    pub plugin: &'a str,
}

impl Viewer<'_> {
    pub(super) fn sees_unsourced(&self, by: &str) -> bool {
        self.grant.capabilities.shared_memory || by == self.plugin
    }
}

/// Each memory embedded by `model` that `viewer` may see (as far as who
/// remembered it goes), with its similarity to `query`.
pub(super) fn scan(
    conn: &Connection,
    vectors: &VectorCache,
    viewer: Viewer<'_>,
    model: &str,
    query: &[f32],
) -> Result<Vec<(f32, i64)>, CallError> {
    let mut all = vectors.0.lock().unwrap_or_else(|p| p.into_inner());
    let cache = all.entry(model.to_string()).or_default();
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
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
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
