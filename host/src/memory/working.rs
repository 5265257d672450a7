//! Working memory: a plugin's scratch state, per run (held by the host)
//! or per plugin (in the store, with expiry), bounded in keys and bytes.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    MAX_KEY_BYTES, MAX_PLUGIN_BYTES, MAX_PLUGIN_KEYS, MAX_RUN_BYTES, MAX_RUN_KEYS, MAX_VALUE_BYTES,
    now_ms,
};
use crate::error::CallError;

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
