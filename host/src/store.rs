//! The canonical record store: one SQLite file in the home.
//!
//! [`Store::write`] is the one write path. A host call is checked against the
//! grant first; then its record change, version, event and audit entry commit
//! in one transaction, or none of them do. A denied or failed call still
//! leaves its audit entry.

pub mod audit;

mod names;
pub(crate) use names::stored_names;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::CallError;

/// Numbered migrations, applied in order at open. Never edit a released one.
const MIGRATIONS: &[&str] = &[
    include_str!("store/migrations/0001_init.sql"),
    include_str!("store/migrations/0002_scheduler.sql"),
    include_str!("store/migrations/0003_models.sql"),
    include_str!("store/migrations/0004_secrets.sql"),
    include_str!("store/migrations/0005_recall_filters.sql"),
    include_str!("store/migrations/0006_quotas.sql"),
    include_str!("store/migrations/0007_anchored_audit_sealed_hooks.sql"),
    include_str!("store/migrations/0008_operator_trust_and_review.sql"),
    include_str!("store/migrations/0009_network_meters.sql"),
    include_str!("store/migrations/0010_sync_state.sql"),
];

/// How long a writer waits for another process's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opening or migrating the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the record store at {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "the record store at {path} has schema {found}, newer than this keel ({known}); upgrade keel"
    )]
    TooNew {
        path: String,
        found: i64,
        known: usize,
    },
    #[error("record store: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// Owns the SQLite connection. One per process (per thread that writes).
pub struct Store {
    conn: Connection,
    path: PathBuf,
    group: Option<Group>,
    /// Transactions committed by this connection (for `keel bench`).
    commits: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Who makes a call: a plugin in a run, or the operator.
#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    pub plugin: String,
    pub version: Option<String>,
    pub digest: Option<String>,
    pub run_id: Option<String>,
    /// The run's trigger as JSON, kept in each version's provenance.
    pub trigger: Option<String>,
}

impl Actor {
    /// The operator, acting through the CLI.
    pub fn operator() -> Actor {
        Actor {
            plugin: "operator".into(),
            version: None,
            digest: None,
            run_id: None,
            trigger: None,
        }
    }

    /// `id@version`, or `operator`.
    pub fn label(&self) -> String {
        match &self.version {
            Some(v) => format!("{}@{}", self.plugin, v),
            None => self.plugin.clone(),
        }
    }
}

/// What one call touched, for its audit entry.
#[derive(Debug, Clone, Default)]
pub struct Touched {
    pub record_id: Option<String>,
    pub record_version: Option<i64>,
    pub detail: String,
}

impl Touched {
    pub fn detail(detail: impl Into<String>) -> Touched {
        Touched {
            detail: detail.into(),
            ..Touched::default()
        }
    }

    pub fn record(id: &str, version: i64, detail: impl Into<String>) -> Touched {
        Touched {
            record_id: Some(id.to_string()),
            record_version: Some(version),
            detail: detail.into(),
        }
    }
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A new time-ordered id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl Store {
    /// Opens (creating if needed) the store at `path` and applies migrations.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            group: None,
            commits: 0,
        };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// An in-memory store, for tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let mut store = Store {
            conn: Connection::open_in_memory()?,
            path: PathBuf::from(":memory:"),
            group: None,
            commits: 0,
        };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    fn configure(&mut self) -> Result<(), StoreError> {
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL lets readers go on while a run writes; NORMAL keeps commits
        // cheap while staying consistent after a crash.
        self.conn.pragma_update(None, "journal_mode", "WAL")?;
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.conn.pragma_update(None, "foreign_keys", "ON")?;
        // Each call's savepoint keeps its undo pages in a sub-journal; in
        // memory that costs no file writes per call.
        self.conn.pragma_update(None, "temp_store", "MEMORY")?;
        Ok(())
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let current: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if current > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew {
                path: self.path.display().to_string(),
                found: current,
                known: MIGRATIONS.len(),
            });
        }
        if current == MIGRATIONS.len() as i64 {
            // Up to date: take no write lock, so opening never waits on a run.
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Re-read inside the lock: another process may have migrated.
        let current: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i as i64 + 1;
            if version > current {
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", version)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A stand-in that holds no data: an in-memory connection without the
    /// schema, for the moment a run's store is lent to a nested run.
    pub fn detached() -> Result<Store, StoreError> {
        Ok(Store {
            conn: Connection::open_in_memory()?,
            path: PathBuf::from(":detached:"),
            group: None,
            commits: 0,
        })
    }

    /// Whether `plugin` already used idempotency key `key` (a retried call
    /// with it is replayed by [`Store::write`]).
    pub fn key_used(&self, plugin: &str, key: &str) -> rusqlite::Result<bool> {
        self.conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM idempotency WHERE plugin = ?1 AND key = ?2)",
            )?
            .query_row(params![plugin, key], |r| r.get(0))
    }

    /// The connection, for read-only listings by the operator's commands.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The connection, for bookkeeping outside the record write path (runs).
    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// How many transactions this connection has committed through the
    /// write path.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts group commit: until [`Store::end_group`], host calls share one
    /// SQLite transaction, each inside its own savepoint, so every call is
    /// still all-or-nothing while commits are amortised. The transaction
    /// commits after [`GROUP_MAX_CALLS`] calls, whenever [`Store::flush`] is
    /// called (the runtime does so on every epoch tick, so the write lock is
    /// never held long while a guest computes), and at the end.
    pub fn begin_group(&mut self) {
        self.group = Some(Group::default());
    }

    /// Commits what the group holds and returns to one transaction per call.
    pub fn end_group(&mut self) -> rusqlite::Result<()> {
        let result = self.flush();
        self.group = None;
        result
    }

    /// Commits the group's open transaction, if any.
    pub fn flush(&mut self) -> rusqlite::Result<()> {
        if let Some(group) = &mut self.group
            && group.open
        {
            group.open = false;
            group.calls = 0;
            self.conn.execute_batch("COMMIT")?;
            self.commits += 1;
        }
        Ok(())
    }

    /// Opens the unit one call's rows are written in.
    fn begin_call(&mut self) -> rusqlite::Result<()> {
        match &mut self.group {
            None => self.conn.execute_batch("BEGIN IMMEDIATE"),
            Some(group) => {
                if !group.open {
                    self.conn.execute_batch("BEGIN IMMEDIATE")?;
                    group.open = true;
                }
                self.conn.execute_batch("SAVEPOINT keel_call")
            }
        }
    }

    /// Keeps (`keep`) or undoes the call's rows, committing when due.
    fn end_call(&mut self, keep: bool) -> rusqlite::Result<()> {
        match &mut self.group {
            None if keep => {
                self.conn.execute_batch("COMMIT")?;
                self.commits += 1;
                Ok(())
            }
            None => self.conn.execute_batch("ROLLBACK"),
            Some(group) => {
                group.calls += 1;
                let due = group.calls >= GROUP_MAX_CALLS;
                if keep {
                    self.conn.execute_batch("RELEASE keel_call")?;
                } else {
                    self.conn
                        .execute_batch("ROLLBACK TO keel_call; RELEASE keel_call")?;
                }
                if due { self.flush() } else { Ok(()) }
            }
        }
    }

    /// Runs `work` as one call: kept if it succeeds, undone if it fails.
    pub fn in_call<T>(
        &mut self,
        work: impl FnOnce(&Connection) -> Result<T, CallError>,
    ) -> Result<T, CallError> {
        self.begin_call()?;
        let result = work(&self.conn);
        let ended = self.end_call(result.is_ok());
        let value = result?;
        ended?;
        Ok(value)
    }

    /// The write path. `permit` is the grant check's verdict, made before
    /// anything is touched; `change` writes the record, version and event.
    /// The audit entry joins the same transaction. With an idempotency key
    /// already used by this plugin for the same action, nothing is written and
    /// the first result is returned.
    pub fn write<T, F>(
        &mut self,
        actor: &Actor,
        action: &str,
        idempotency_key: Option<&str>,
        permit: Result<(), (String, Touched)>,
        change: F,
    ) -> Result<T, CallError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(&Connection) -> (Result<T, CallError>, Touched),
    {
        if let Err((reason, touched)) = permit {
            let denied = CallError::Denied(reason);
            self.audit_failure(actor, action, touched, &denied);
            return Err(denied);
        }
        // What went wrong inside the call, with what it touched, so the
        // failure can be audited after the call's rows are undone.
        let mut failed: Option<Touched> = None;
        let result = self.in_call(|conn| {
            if let Some(key) = idempotency_key {
                let first: Option<(String, String)> = conn
                    .prepare_cached("SELECT action, result FROM idempotency WHERE plugin = ?1 AND key = ?2")?
                    .query_row(params![actor.plugin, key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                if let Some((first_action, result)) = first {
                    if first_action != action {
                        failed = Some(Touched::detail(format!("key {key}")));
                        return Err(CallError::Invalid(format!(
                            "idempotency key `{key}` was already used for `{first_action}`; use a new key for `{action}`"
                        )));
                    }
                    let value: T = serde_json::from_str(&result)?;
                    let touched = Touched::detail(format!(
                        "replayed idempotency key `{key}`: nothing written"
                    ));
                    audit::append(conn, actor, action, &touched, "allowed")?;
                    return Ok(value);
                }
            }
            let (result, touched) = change(conn);
            match result {
                Ok(value) => {
                    if let Some(key) = idempotency_key {
                        conn.prepare_cached(
                            "INSERT INTO idempotency (plugin, key, action, result, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        )?
                        .execute(params![actor.plugin, key, action, serde_json::to_string(&value)?, now()])?;
                    }
                    audit::append(conn, actor, action, &touched, "allowed")?;
                    Ok(value)
                }
                Err(err) => {
                    failed = Some(touched);
                    Err(err)
                }
            }
        });
        if let Err(err) = &result {
            self.audit_failure(actor, action, failed.unwrap_or_default(), err);
        }
        result
    }

    /// A read host call: `read` fetches and checks the grant; its outcome,
    /// allowed or not, is audited.
    pub fn read<T, F>(&mut self, actor: &Actor, action: &str, read: F) -> Result<T, CallError>
    where
        F: FnOnce(&Connection) -> (Result<T, CallError>, Touched),
    {
        let (result, touched) = read(&self.conn);
        match &result {
            Ok(_) => {
                self.in_call(|conn| Ok(audit::append(conn, actor, action, &touched, "allowed")?))?
            }
            Err(err) => self.audit_failure(actor, action, touched, err),
        }
        result
    }

    /// Refuses a call before it touches anything (input over a limit), with
    /// its audit entry.
    pub fn refuse(&mut self, actor: &Actor, action: &str, err: CallError) -> CallError {
        self.audit_failure(actor, action, Touched::default(), &err);
        err
    }

    /// Audits a call that changed nothing. If even the audit cannot be
    /// written the call's own error is still what the plugin sees; the
    /// failure is logged for the operator.
    fn audit_failure(
        &mut self,
        actor: &Actor,
        action: &str,
        mut touched: Touched,
        err: &CallError,
    ) {
        if touched.detail.is_empty() {
            touched.detail = err.message().to_string();
        } else {
            touched.detail = format!("{}: {}", touched.detail, err.message());
        }
        let result =
            self.in_call(|conn| Ok(audit::append(conn, actor, action, &touched, err.outcome())?));
        if let Err(e) = result {
            tracing::error!(plugin = %actor.label(), action, "could not audit a failed call: {e}");
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Calls that returned success to a plugin are kept.
        if let Err(e) = self.flush() {
            tracing::error!("could not commit the last writes on close: {e}");
        }
    }
}

/// Calls in one group-commit transaction before it commits regardless of time.
pub const GROUP_MAX_CALLS: u32 = 1000;

/// Group-commit state; see [`Store::begin_group`].
#[derive(Debug, Default)]
struct Group {
    /// A transaction is open on the connection.
    open: bool,
    /// Calls in the open transaction.
    calls: u32,
}

#[cfg(test)]
mod owners;
#[cfg(test)]
mod tests;
