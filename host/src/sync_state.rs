//! Connectors' progress: keyed sync state per plugin (a value per item of a
//! source, so a cursor never grows with it) and checkpoints (a cursor
//! committed mid-run with the writes before it). The `sync-state`
//! interface and `actions.checkpoint` / `actions.more-to-do` are served
//! from here.
//!
//! Sync state is written like everything else a run writes: each call is
//! all-or-nothing in its own savepoint of the run's group transaction, and
//! a call that returned is kept. A checkpoint writes the cursor as one
//! more call and commits the group, so the stored cursor is never ahead of
//! the records and sync state written before it; what a run wrote after
//! its last checkpoint may be lost to a crash, which is why connectors
//! write idempotently and resume from the cursor.

mod host;
pub use host::{SyncStateView, add_to_linker};

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::CallError;
use crate::run::{Outcome, RunCtx};
use crate::store::Touched;

/// Largest key.
pub const MAX_KEY_BYTES: usize = 4 * 1024;
/// Largest value.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most keys one `get` or `set` names, and most entries one `scan` page
/// returns.
pub const MAX_BATCH: usize = 1_000;
/// Most bytes of keys and values one call carries (a `scan` page is cut
/// short and continues at its `next`).
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Most keys one plugin's sync state holds.
pub const MAX_PLUGIN_KEYS: i64 = 10_000_000;
/// Most bytes of keys and values one plugin's sync state holds.
pub const MAX_PLUGIN_BYTES: i64 = 4 * 1024 * 1024 * 1024;

/// The audit action of a checkpoint.
pub const CHECKPOINT: &str = "checkpoint";

/// What one run may do with sync progress, and what it did.
#[derive(Debug)]
pub enum SyncRun {
    /// Not a connector's `sync` (an agent, a channel, a provider): sync
    /// state and checkpoints are refused.
    Other {
        /// The export the run calls, for the refusal.
        export: &'static str,
    },
    /// A connector's `sync`.
    Sync {
        /// Checkpoints committed so far.
        checkpoints: u32,
        /// The connector called `more-to-do`.
        more_asked: bool,
    },
}

impl SyncRun {
    /// The state of a run calling `export`.
    pub fn for_export(export: &'static str) -> SyncRun {
        match export {
            "sync" => SyncRun::Sync {
                checkpoints: 0,
                more_asked: false,
            },
            export => SyncRun::Other { export },
        }
    }

    /// Refuses a sync call outside a connector's `sync`.
    fn permit(&self, call: &str, label: &str) -> Result<(), String> {
        match self {
            SyncRun::Sync { .. } => Ok(()),
            SyncRun::Other { export } => Err(format!(
                "{call} is only for a connector's sync, and {label} is running `{export}`; keep an agent's state in memory instead"
            )),
        }
    }

    /// Whether the source has more to bring in after a run that ended with
    /// `outcome`: the connector said so and succeeded, or it was stopped by
    /// its deadline or fuel after making progress it checkpointed.
    pub fn more(&self, outcome: Outcome) -> bool {
        match (self, outcome) {
            (SyncRun::Sync { more_asked, .. }, Outcome::Ok) => *more_asked,
            (SyncRun::Sync { checkpoints, .. }, Outcome::Deadline | Outcome::Fuel) => {
                *checkpoints > 0
            }
            _ => false,
        }
    }

    /// Checkpoints this run committed.
    pub fn checkpoints(&self) -> u32 {
        match self {
            SyncRun::Sync { checkpoints, .. } => *checkpoints,
            SyncRun::Other { .. } => 0,
        }
    }
}

/// `actions.checkpoint`: stores `cursor` for the run's plugin and commits
/// it with every call before it. Audited.
pub fn checkpoint(run: &mut RunCtx, sync: &mut SyncRun, cursor: &str) -> Result<(), CallError> {
    if let Err(reason) = sync.permit("checkpoint", &run.label) {
        return Err(run
            .db
            .refuse(&run.actor, CHECKPOINT, CallError::Denied(reason)));
    }
    if cursor.len() > crate::limits::MAX_CURSOR_BYTES {
        let e = CallError::Limit(format!(
            "the cursor is {} bytes, over the {}-byte limit; keep per-item state in sync-state and only a position in the cursor",
            cursor.len(),
            crate::limits::MAX_CURSOR_BYTES
        ));
        return Err(run.db.refuse(&run.actor, CHECKPOINT, e));
    }
    let plugin = run.actor.plugin.clone();
    let detail = format!("cursor of {} bytes", cursor.len());
    run.db.write(&run.actor, CHECKPOINT, None, Ok(()), |conn| {
        let stored = crate::plugins::set_cursor(conn, &plugin, cursor).map_err(CallError::from);
        (stored, Touched::detail(detail))
    })?;
    // The commit is what makes it a checkpoint: the cursor and everything
    // before it reach the file together.
    run.db.flush().map_err(|e| {
        CallError::Unavailable(format!("cannot commit the checkpoint: {e}; retry it"))
    })?;
    if let SyncRun::Sync { checkpoints, .. } = sync {
        *checkpoints += 1;
    }
    Ok(())
}

/// `actions.more-to-do`: remembers that the sync stops with more to do.
pub fn more_to_do(run: &mut RunCtx, sync: &mut SyncRun) -> Result<(), CallError> {
    if let Err(reason) = sync.permit("more-to-do", &run.label) {
        return Err(run
            .db
            .refuse(&run.actor, "more-to-do", CallError::Denied(reason)));
    }
    if let SyncRun::Sync { more_asked, .. } = sync {
        *more_asked = true;
    }
    Ok(())
}

/// `invalid` for an empty key, `limit` for one over [`MAX_KEY_BYTES`].
fn check_key(key: &str) -> Result<(), CallError> {
    if key.is_empty() {
        return Err(CallError::Invalid(
            "a sync-state key is empty; name each item, e.g. by its path or remote id".into(),
        ));
    }
    crate::limits::check_len("a sync-state key", key, MAX_KEY_BYTES)
}

/// `limit` unless a batch of `n` items fits [`MAX_BATCH`].
fn check_batch(call: &str, n: usize) -> Result<(), CallError> {
    if n > MAX_BATCH {
        return Err(CallError::Limit(format!(
            "{call} names {n} keys, over the {MAX_BATCH} one call may; split it into batches"
        )));
    }
    Ok(())
}

/// `limit` unless `bytes` of one call fit [`MAX_BATCH_BYTES`].
fn check_batch_bytes(call: &str, bytes: usize) -> Result<(), CallError> {
    if bytes > MAX_BATCH_BYTES {
        return Err(CallError::Limit(format!(
            "{call} carries {bytes} bytes, over the {MAX_BATCH_BYTES} one call may; split it into smaller batches"
        )));
    }
    Ok(())
}

/// The value of each of `keys` in `plugin`'s sync state.
pub fn get(
    conn: &Connection,
    plugin: &str,
    keys: &[String],
) -> Result<Vec<Option<String>>, CallError> {
    check_batch("sync-state.get", keys.len())?;
    keys.iter().try_for_each(|k| check_key(k))?;
    let mut stmt =
        conn.prepare_cached("SELECT value FROM sync_state WHERE plugin = ?1 AND key = ?2")?;
    let mut bytes = 0;
    let mut values = Vec::with_capacity(keys.len());
    for key in keys {
        let value: Option<String> = stmt
            .query_row(params![plugin, key], |r| r.get(0))
            .optional()?;
        bytes += value.as_ref().map_or(0, String::len);
        check_batch_bytes("sync-state.get", bytes)?;
        values.push(value);
    }
    Ok(values)
}

/// Sets (or, for `None`, deletes) each entry of `plugin`'s sync state,
/// keeping its usage; `limit` (and nothing kept, the caller's savepoint
/// undoing it) past a bound.
pub fn set(
    conn: &Connection,
    plugin: &str,
    entries: &[(String, Option<String>)],
) -> Result<(), CallError> {
    check_batch("sync-state.set", entries.len())?;
    let mut bytes = 0;
    for (key, value) in entries {
        check_key(key)?;
        if let Some(value) = value {
            crate::limits::check_len("a sync-state value", value, MAX_VALUE_BYTES)?;
        }
        bytes += key.len() + value.as_ref().map_or(0, String::len);
    }
    check_batch_bytes("sync-state.set", bytes)?;
    let (mut keys, mut bytes) = (0i64, 0i64);
    for (key, value) in entries {
        let (k, b) = set_one(conn, plugin, key, value.as_deref())?;
        keys += k;
        bytes += b;
    }
    let (held_keys, held_bytes) = add_usage(conn, plugin, keys, bytes)?;
    if held_keys > MAX_PLUGIN_KEYS {
        return Err(CallError::Limit(format!(
            "{plugin}'s sync state would hold {held_keys} keys, over its {MAX_PLUGIN_KEYS}; delete the keys of items that are gone"
        )));
    }
    if held_bytes > MAX_PLUGIN_BYTES {
        return Err(CallError::Limit(format!(
            "{plugin}'s sync state would hold {held_bytes} bytes, over its {MAX_PLUGIN_BYTES}; keep smaller values (a hash, not the item)"
        )));
    }
    Ok(())
}

/// Writes one entry; the change in keys and bytes it makes.
fn set_one(
    conn: &Connection,
    plugin: &str,
    key: &str,
    value: Option<&str>,
) -> rusqlite::Result<(i64, i64)> {
    let old: Option<i64> = conn
        .prepare_cached(
            "SELECT length(CAST(value AS BLOB)) FROM sync_state WHERE plugin = ?1 AND key = ?2",
        )?
        .query_row(params![plugin, key], |r| r.get(0))
        .optional()?;
    let size = |v: &str| i64::try_from(key.len() + v.len()).unwrap_or(i64::MAX);
    let old_bytes = old.map_or(0, |v| v.saturating_add(size("")));
    match value {
        Some(value) => {
            conn.prepare_cached(
                "INSERT INTO sync_state (plugin, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![plugin, key, value])?;
            Ok((i64::from(old.is_none()), size(value) - old_bytes))
        }
        None if old.is_some() => {
            conn.prepare_cached("DELETE FROM sync_state WHERE plugin = ?1 AND key = ?2")?
                .execute(params![plugin, key])?;
            Ok((-1, -old_bytes))
        }
        None => Ok((0, 0)),
    }
}

/// Adds a change to `plugin`'s usage; what it holds after.
fn add_usage(
    conn: &Connection,
    plugin: &str,
    keys: i64,
    bytes: i64,
) -> rusqlite::Result<(i64, i64)> {
    conn.prepare_cached(
        "INSERT INTO sync_state_usage (plugin, keys, bytes) VALUES (?1, ?2, ?3)
         ON CONFLICT (plugin) DO UPDATE SET keys = keys + excluded.keys, bytes = bytes + excluded.bytes
         RETURNING keys, bytes",
    )?
    .query_row(params![plugin, keys, bytes], |r| Ok((r.get(0)?, r.get(1)?)))
}

/// How many keys and bytes `plugin`'s sync state holds.
pub fn usage(conn: &Connection, plugin: &str) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(
        "SELECT keys, bytes FROM sync_state_usage WHERE plugin = ?1",
        [plugin],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map(|u| u.unwrap_or((0, 0)))
}

/// One page of a scan: entries in key order, and the key to continue
/// after when more follow.
#[derive(Debug, Default, PartialEq)]
pub struct Page {
    pub entries: Vec<(String, String)>,
    pub next: Option<String>,
}

/// The entries of `plugin`'s sync state under `prefix` after `after`, at
/// most `limit` (capped at [`MAX_BATCH`]) and [`MAX_BATCH_BYTES`].
pub fn scan(
    conn: &Connection,
    plugin: &str,
    prefix: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Page, CallError> {
    crate::limits::check_len("a sync-state prefix", prefix, MAX_KEY_BYTES)?;
    if let Some(after) = after {
        crate::limits::check_len("a sync-state key", after, MAX_KEY_BYTES)?;
    }
    if limit == 0 {
        return Err(CallError::Invalid(
            "a sync-state scan asked for 0 entries; ask for 1 to 1000".into(),
        ));
    }
    let limit = usize::try_from(limit).unwrap_or(MAX_BATCH).min(MAX_BATCH);
    // Start the index range at the later of the two bounds, so a page deep
    // into a large state costs no more than the first.
    let mut stmt = match after {
        Some(after) if after >= prefix => conn.prepare_cached(
            "SELECT key, value FROM sync_state WHERE plugin = ?1 AND key > ?2 ORDER BY key",
        )?,
        _ => conn.prepare_cached(
            "SELECT key, value FROM sync_state WHERE plugin = ?1 AND key >= ?2 ORDER BY key",
        )?,
    };
    let start = match after {
        Some(after) if after >= prefix => after,
        _ => prefix,
    };
    let mut rows = stmt.query(params![plugin, start])?;
    let mut page = Page::default();
    let mut bytes = 0;
    while let Some(row) = rows.next()? {
        let key: String = row.get(0)?;
        if !key.starts_with(prefix) {
            break;
        }
        let value: String = row.get(1)?;
        bytes += key.len() + value.len();
        if page.entries.len() == limit || (bytes > MAX_BATCH_BYTES && !page.entries.is_empty()) {
            page.next = page.entries.last().map(|(k, _)| k.clone());
            break;
        }
        page.entries.push((key, value));
    }
    Ok(page)
}

#[cfg(test)]
mod tests;
