//! New jobs, for every part of keel that queues one: the `schedule` action,
//! triggers, delivery and webhooks. Each runs inside its caller's
//! transaction.

use rusqlite::{Connection, params};

use super::Priority;
use crate::store::{new_id, now};

/// A job the `schedule` action asks for, at `run_at`, from run `run` (its
/// depth one past that run's job's). Returns the job's id.
pub fn schedule(
    conn: &Connection,
    plugin: &str,
    input: &str,
    run_at: &str,
    run: Option<&str>,
) -> rusqlite::Result<String> {
    let id = new_id();
    conn.execute(
        "INSERT INTO jobs (id, plugin, input, run_at, priority, state, created_at, updated_at, created_by_run, depth)
         VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6, ?7,
                 1 + COALESCE((SELECT j.depth FROM runs r JOIN jobs j ON j.id = r.job_id WHERE r.id = ?7), 0))",
        params![
            id,
            plugin,
            input,
            run_at,
            Priority::Schedule as i64,
            now(),
            run
        ],
    )?;
    Ok(id)
}

/// A job that fires once per key (a trigger's firing, across passes and
/// restarts).
#[derive(Debug)]
pub struct Keyed<'a> {
    pub plugin: &'a str,
    pub cause: &'a str,
    pub priority: Priority,
    pub event_seq: Option<i64>,
    /// Once per key, across passes and restarts.
    pub fire_key: String,
    /// Causation depth: 0 for time triggers, the causing job's + 1 for events.
    pub depth: i64,
    /// Why the job is `stopped` instead of `queued`, if it is.
    pub stopped: Option<String>,
}

/// Queues `job` at `now` unless its key fired already; whether it was new.
pub fn keyed(conn: &Connection, job: &Keyed<'_>, now: &str) -> rusqlite::Result<bool> {
    let state = if job.stopped.is_some() {
        super::JobState::Stopped
    } else {
        super::JobState::Queued
    };
    let n = conn
        .prepare_cached(
            "INSERT INTO jobs (id, plugin, input, run_at, priority, state, created_at, updated_at, cause, event_seq, fire_key, depth, last_error)
             VALUES (?1, ?2, '{}', ?3, ?4, ?5, ?3, ?3, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (fire_key) DO NOTHING",
        )?
        .execute(params![
            new_id(),
            job.plugin,
            now,
            job.priority as i64,
            state,
            job.cause,
            job.event_seq,
            job.fire_key,
            job.depth,
            job.stopped
        ])?;
    Ok(n == 1)
}

/// A delivery job (`cause`) for `plugin` with `input`, once per
/// `fire_key`; its id, or `None` when the key was queued before.
pub fn delivery(
    conn: &Connection,
    (plugin, input, cause): (&str, &str, &str),
    now: &str,
    priority: Priority,
    fire_key: &str,
) -> rusqlite::Result<Option<String>> {
    let job = new_id();
    let n = conn
        .prepare_cached(
            "INSERT INTO jobs (id, plugin, input, run_at, priority, state, created_at, updated_at, cause, fire_key)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?4, ?4, ?6, ?7)
             ON CONFLICT (fire_key) DO NOTHING",
        )?
        .execute(params![
            job,
            plugin,
            input,
            now,
            priority as i64,
            cause,
            fire_key
        ])?;
    Ok((n == 1).then_some(job))
}

/// The cause of a sync queued because the one before had more to do.
pub const MORE: &str = "more";

/// Marks leased `job` done; when its run `more` had more to do, queues the
/// next sync of its plugin at `now` in the same transaction: once per run,
/// at the job's own depth, since a source brought in over many runs is no
/// cascade. False (and nothing queued) if `worker` no longer holds the
/// lease.
pub fn done(
    conn: &mut Connection,
    job: &super::Job,
    worker: &str,
    now: chrono::DateTime<chrono::Utc>,
    more: Option<&str>,
) -> rusqlite::Result<bool> {
    let tx = conn.transaction()?;
    if !super::complete(&tx, &job.id, worker, now)? {
        return Ok(false);
    }
    if let Some(run) = more {
        let next = Keyed {
            plugin: &job.plugin,
            cause: MORE,
            priority: Priority::Schedule,
            event_seq: None,
            fire_key: format!("{MORE}:{run}"),
            depth: job.depth,
            stopped: None,
        };
        keyed(&tx, &next, &super::stamp(now))?;
    }
    tx.commit()?;
    Ok(true)
}

/// The job an accepted webhook request wakes `plugin` with, caused by
/// event `seq`. Returns its id.
pub fn webhook(conn: &Connection, plugin: &str, input: &str, seq: i64) -> rusqlite::Result<String> {
    let job = new_id();
    let at = now();
    conn.execute(
        "INSERT INTO jobs (id, plugin, input, run_at, priority, state, created_at, updated_at, cause, event_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?4, ?4, ?6, ?7)",
        params![
            job,
            plugin,
            input,
            at,
            Priority::Event as i64,
            super::webhooks::CAUSE,
            seq
        ],
    )?;
    Ok(job)
}

/// Queues a dead or stopped job again, as the operator decided in review
/// (a stopped one starts a new chain: the operator is now its cause).
/// False if it was not dead or stopped.
pub fn retry_reviewed(conn: &Connection, id: &str, at: &str) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_at = ?2, updated_at = ?2, last_error = NULL,
             depth = CASE WHEN state = 'stopped' THEN 0 ELSE depth END
         WHERE id = ?1 AND state IN ('dead', 'stopped')",
        params![id, at],
    )?;
    Ok(n == 1)
}

/// Dismisses a dead or stopped job from review. False if it was not dead
/// or stopped.
pub fn dismiss_reviewed(conn: &Connection, id: &str, at: &str) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE jobs SET reviewed_at = ?2 WHERE id = ?1 AND state IN ('dead', 'stopped')",
        params![id, at],
    )?;
    Ok(n == 1)
}
