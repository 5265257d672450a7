//! Installed plugins and their runs, as rows.

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::grant::Grant;
use crate::manifest::Manifest;
use crate::store::now;

/// An installed plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginRow {
    pub id: String,
    pub version: String,
    pub world: String,
    pub digest: String,
    pub manifest: Manifest,
    pub grant: Grant,
    pub installed_at: String,
    /// What it was installed from: `dir:PATH` or `package:PATH`.
    pub source: Option<String>,
    /// Who signed its package: `NAME (ed25519:…)`; none when unsigned.
    pub signer: Option<String>,
    /// The package digest of what was installed (manifest, component,
    /// readme), which `--digest` pins.
    pub package_digest: Option<String>,
}

impl PluginRow {
    pub fn label(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }
}

fn row_to_plugin(r: &rusqlite::Row<'_>) -> rusqlite::Result<PluginRow> {
    let manifest: String = r.get(4)?;
    let grant: String = r.get(5)?;
    let bad = |i, e: serde_json::Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    };
    Ok(PluginRow {
        id: r.get(0)?,
        version: r.get(1)?,
        world: r.get(2)?,
        digest: r.get(3)?,
        manifest: serde_json::from_str(&manifest).map_err(|e| bad(4, e))?,
        grant: serde_json::from_str(&grant).map_err(|e| bad(5, e))?,
        installed_at: r.get(6)?,
        source: r.get(7)?,
        signer: r.get(8)?,
        package_digest: r.get(9)?,
    })
}

const PLUGIN_COLUMNS: &str = "id, version, world, digest, manifest, grant_json, installed_at, source, signer, package_digest";

/// Records where plugin `id` came from and who signed it.
pub fn set_origin(
    conn: &Connection,
    id: &str,
    source: &str,
    signer: Option<&str>,
    package_digest: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE plugins SET source = ?2, signer = ?3, package_digest = ?4 WHERE id = ?1",
        params![id, source, signer, package_digest],
    )?;
    Ok(())
}

/// Keeps the row of plugin `id` as it is now in `plugin_versions`, before
/// an install or rollback replaces it.
pub fn keep_replaced(conn: &Connection, id: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO plugin_versions (id, version, world, digest, manifest, grant_json, source, signer,
             package_digest, installed_at, replaced_at)
         SELECT id, version, world, digest, manifest, grant_json, source, signer, package_digest,
             installed_at, ?2 FROM plugins WHERE id = ?1",
        params![id, now()],
    )?;
    Ok(())
}

/// Puts back the newest replaced version of plugin `id` (keeping the
/// current one as replaced, so a second rollback goes forward again).
/// Returns the version restored, or none when there is nothing to go
/// back to.
pub fn restore_replaced(conn: &Connection, id: &str) -> rusqlite::Result<Option<PluginRow>> {
    let last: Option<i64> = conn
        .query_row(
            "SELECT max(seq) FROM plugin_versions WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    let Some(seq) = last else {
        return Ok(None);
    };
    keep_replaced(conn, id)?;
    conn.execute(
        "UPDATE plugins SET (version, world, digest, manifest, grant_json, source, signer, package_digest,
             installed_at, cursor) =
             (SELECT version, world, digest, manifest, grant_json, source, signer, package_digest, ?3, NULL
              FROM plugin_versions WHERE seq = ?2)
         WHERE id = ?1",
        params![id, seq, now()],
    )?;
    conn.execute("DELETE FROM plugin_versions WHERE seq = ?1", [seq])?;
    get(conn, id)
}

/// A public key the operator trusts to sign packages.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrustedKey {
    pub name: String,
    pub key: String,
    pub added_at: String,
}

pub fn trusted_keys(conn: &Connection) -> rusqlite::Result<Vec<TrustedKey>> {
    conn.prepare("SELECT name, key, added_at FROM trusted_keys ORDER BY name")?
        .query_map([], |r| {
            Ok(TrustedKey {
                name: r.get(0)?,
                key: r.get(1)?,
                added_at: r.get(2)?,
            })
        })?
        .collect()
}

pub fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<PluginRow>> {
    conn.query_row(
        &format!("SELECT {PLUGIN_COLUMNS} FROM plugins WHERE id = ?1"),
        [id],
        row_to_plugin,
    )
    .optional()
}

pub fn list(conn: &Connection) -> rusqlite::Result<Vec<PluginRow>> {
    conn.prepare(&format!("SELECT {PLUGIN_COLUMNS} FROM plugins ORDER BY id"))?
        .query_map([], row_to_plugin)?
        .collect()
}

/// Inserts or replaces the row for `manifest.plugin.id`. A reinstall keeps
/// the connector's cursor only when the digest is unchanged.
pub fn upsert(
    conn: &Connection,
    manifest: &Manifest,
    digest: &str,
    grant: &Grant,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO plugins (id, version, world, digest, manifest, grant_json, installed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version, world = excluded.world,
             cursor = CASE WHEN plugins.digest = excluded.digest THEN plugins.cursor END,
             digest = excluded.digest, manifest = excluded.manifest,
             grant_json = excluded.grant_json, installed_at = excluded.installed_at",
        params![
            manifest.plugin.id,
            manifest.plugin.version,
            manifest.plugin.world.as_str(),
            digest,
            json(manifest)?,
            json(grant)?,
            now()
        ],
    )?;
    Ok(())
}

fn json<T: Serialize>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

pub fn remove(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM plugins WHERE id = ?1", [id])? == 1)
}

pub fn cursor(conn: &Connection, id: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT cursor FROM plugins WHERE id = ?1", [id], |r| {
        r.get(0)
    })
    .optional()
    .map(Option::flatten)
}

/// Stores `cursor` as where `plugin`'s next sync starts: a checkpoint,
/// inside the run's transaction.
pub fn set_cursor(conn: &Connection, plugin: &str, cursor: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE plugins SET cursor = ?2 WHERE id = ?1")?
        .execute(params![plugin, cursor])?;
    Ok(())
}

/// One run, as the operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: String,
    pub plugin: String,
    pub plugin_version: String,
    pub export: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub outcome: crate::run::Outcome,
    pub detail: Option<String>,
    pub fuel_consumed: Option<i64>,
    pub memory_peak: Option<i64>,
    pub wall_us: Option<i64>,
    /// The write quota the run reached, if any (`writes_per_run 100`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
    /// Bytes its network requests and connections moved in and out.
    pub bytes_in: i64,
    pub bytes_out: i64,
}

/// Records the start of a run (before any host call refers to it).
pub fn start_run(
    conn: &Connection,
    id: &str,
    plugin: &PluginRow,
    export: &str,
    trigger_json: &str,
    job: Option<&str>,
    parent: Option<&str>,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO runs (id, plugin, plugin_version, digest, export, trigger_json, started_at, outcome, job_id, parent_run)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8, ?9)",
        params![id, plugin.id, plugin.version, plugin.digest, export, trigger_json, now(), job, parent],
    )?;
    Ok(())
}

/// What a finished run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RunEnd {
    pub outcome: crate::run::Outcome,
    pub detail: String,
    pub fuel_consumed: u64,
    pub memory_peak: u64,
    pub wall_us: u64,
    /// A connector's new cursor, stored only when the sync succeeded.
    pub cursor: Option<Option<String>>,
    /// The write quota the run reached, if any (it goes up for review).
    pub quota: Option<String>,
    /// Bytes its network requests and connections moved: in, out.
    pub bytes: (u64, u64),
}

pub fn finish_run(
    conn: &mut Connection,
    id: &str,
    plugin: &str,
    end: &RunEnd,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "UPDATE runs SET ended_at = ?2, outcome = ?3, detail = ?4, fuel_consumed = ?5,
             memory_peak = ?6, wall_us = ?7, quota = ?8, bytes_in = ?9, bytes_out = ?10
         WHERE id = ?1",
        params![
            id,
            now(),
            end.outcome,
            end.detail,
            i64::try_from(end.fuel_consumed).unwrap_or(i64::MAX),
            i64::try_from(end.memory_peak).unwrap_or(i64::MAX),
            i64::try_from(end.wall_us).unwrap_or(i64::MAX),
            end.quota,
            i64::try_from(end.bytes.0).unwrap_or(i64::MAX),
            i64::try_from(end.bytes.1).unwrap_or(i64::MAX),
        ],
    )?;
    if let Some(cursor) = &end.cursor {
        tx.execute(
            "UPDATE plugins SET cursor = ?2 WHERE id = ?1",
            params![plugin, cursor],
        )?;
    }
    if end.outcome != crate::run::Outcome::Ok {
        let data = serde_json::json!({"plugin": plugin, "outcome": end.outcome.as_str()});
        crate::records::run_failed(&tx, id, &data.to_string())?;
    }
    tx.commit()
}

/// Closes run `id` as lost if it is still `running` (its process died);
/// false if it had ended meanwhile.
pub fn close_lost_run(conn: &Connection, id: &str, at: &str) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE runs SET outcome = 'lost', ended_at = ?2,
                 detail = 'the process running it stopped before it ended (killed or crashed)'
             WHERE id = ?1 AND outcome = 'running'",
        )?
        .execute(params![id, at])?;
    Ok(n == 1)
}

/// Marks the operator as having seen every run of `plugin` that reached a
/// write quota; how many runs that was.
pub fn dismiss_quota(conn: &Connection, plugin: &str, at: &str) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE runs SET quota_reviewed_at = ?2
         WHERE plugin = ?1 AND quota IS NOT NULL AND quota_reviewed_at IS NULL",
        params![plugin, at],
    )
}

/// Replaces the grant (as JSON) of installed plugin `id`.
pub fn set_grant(conn: &Connection, id: &str, grant_json: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE plugins SET grant_json = ?2 WHERE id = ?1",
        params![id, grant_json],
    )?;
    Ok(())
}

const RUN_COLUMNS: &str =
    "id, plugin, plugin_version, export, started_at, ended_at, outcome, detail,
    fuel_consumed, memory_peak, wall_us, quota, bytes_in, bytes_out";

fn row_to_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        plugin: r.get(1)?,
        plugin_version: r.get(2)?,
        export: r.get(3)?,
        started_at: r.get(4)?,
        ended_at: r.get(5)?,
        outcome: r.get(6)?,
        detail: r.get(7)?,
        fuel_consumed: r.get(8)?,
        memory_peak: r.get(9)?,
        wall_us: r.get(10)?,
        quota: r.get(11)?,
        bytes_in: r.get(12)?,
        bytes_out: r.get(13)?,
    })
}

pub fn get_run(conn: &Connection, id: &str) -> rusqlite::Result<Option<RunRow>> {
    conn.query_row(
        &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
        [id],
        row_to_run,
    )
    .optional()
}

/// Runs, newest first, optionally of one plugin.
pub fn list_runs(
    conn: &Connection,
    plugin: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Vec<RunRow>> {
    conn.prepare(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR plugin = ?1)
         ORDER BY started_at DESC, id DESC LIMIT ?2"
    ))?
    .query_map(params![plugin, limit], row_to_run)?
    .collect()
}

/// The installed plugin `id`, or an error that says how to install it.
pub fn installed(db: &crate::store::Store, id: &str) -> anyhow::Result<PluginRow> {
    get(db.conn(), id)?.with_context(|| {
        format!("no plugin `{id}` is installed; see `keel plugin list` or install it with `keel plugin install PATH`")
    })
}
