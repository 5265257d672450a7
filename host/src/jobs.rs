//! The durable job queue. A job is leased by one worker until a deadline;
//! a job whose worker died is leased again once that deadline passes.
//! Transient failures are retried with exponential backoff and jitter;
//! after the last attempt, or on a failure that retrying cannot fix, the job
//! is dead-lettered. Time is always passed in (`now`), so callers and tests
//! decide the clock.

pub mod enqueue;
pub mod webhooks;

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::manifest::Rate;

/// How long a job is leased before another worker may take it over, unless
/// the plugin's own deadline (plus [`LEASE_MARGIN`]) is longer.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// Time past a plugin's deadline a lease always covers: loading the plugin
/// and recording the run's end.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// First retry delay; doubled per attempt.
pub const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

/// Who asked for a job; leased in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Operator = 0,
    Event = 1,
    Schedule = 2,
}

crate::store::stored_names! {
    /// Where a job is in its life.
    pub enum JobState ("a job state") {
        /// Waiting for its time and a worker.
        Queued = "queued",
        /// A worker holds it until its lease ends.
        Leased = "leased",
        Done = "done",
        /// Failed for good; waits in the review queue.
        Dead = "dead",
        /// Not run: a loop or a cascade past the depth limit; waits for the
        /// operator.
        Stopped = "stopped",
    }
}

/// One job, as `keel jobs list` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Job {
    pub id: String,
    pub plugin: String,
    pub input: String,
    pub run_at: String,
    pub priority: i64,
    pub state: JobState,
    pub attempts: i64,
    pub max_attempts: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// `schedule` (an action), `interval` or `event` (a trigger).
    pub cause: String,
    /// For `event` jobs: the event that woke the plugin.
    pub event_seq: Option<i64>,
    /// How many event or schedule hops led here from a job nobody's run
    /// caused (the operator's, a time trigger's).
    pub depth: i64,
}

const COLUMNS: &str = "id, plugin, input, run_at, priority, state, attempts, max_attempts,
    lease_owner, lease_until, last_error, created_at, updated_at, cause, event_seq, depth";

fn row_to_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        plugin: r.get(1)?,
        input: r.get(2)?,
        run_at: r.get(3)?,
        priority: r.get(4)?,
        state: r.get(5)?,
        attempts: r.get(6)?,
        max_attempts: r.get(7)?,
        lease_owner: r.get(8)?,
        lease_until: r.get(9)?,
        last_error: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
        cause: r.get(13)?,
        event_seq: r.get(14)?,
        depth: r.get(15)?,
    })
}

/// The store's time format: RFC 3339 UTC with milliseconds, which sorts
/// as text in time order.
pub fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn after(now: DateTime<Utc>, d: Duration) -> String {
    stamp(now + chrono::Duration::from_std(d).unwrap_or(chrono::TimeDelta::MAX))
}

/// Leases the next due job for `worker` until `now + lease`: the operator's
/// queued jobs first, then the other queued jobs whose time has come and
/// leased jobs whose lease expired (their worker died), in fair-key order
/// (each plugin takes its turn; see migration 0006), then oldest due. One
/// statement, so two workers never lease the same job. Each kind of
/// candidate is found by its own index walk (an `OR` would sort every
/// queued job on each lease).
pub fn lease(
    conn: &Connection,
    worker: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> rusqlite::Result<Option<Job>> {
    lease_except(conn, worker, now, lease, &[])
}

/// [`lease`], passing over the jobs of the plugins in `skip`.
fn lease_except(
    conn: &Connection,
    worker: &str,
    now: DateTime<Utc>,
    lease: Duration,
    skip: &[&str],
) -> rusqlite::Result<Option<Job>> {
    let now_s = stamp(now);
    let skip = serde_json::to_string(skip).unwrap_or_else(|_| "[]".into());
    conn.prepare_cached(&format!(
        "UPDATE jobs SET state = 'leased', lease_owner = ?1, lease_until = ?2,
             attempts = attempts + 1, updated_at = ?3
         WHERE id = (
             SELECT id FROM (
                 SELECT * FROM (SELECT id, priority, fair_key, run_at FROM jobs
                     WHERE state = 'queued' AND priority = 0 AND run_at <= ?3
                       AND plugin NOT IN (SELECT value FROM json_each(?4))
                     ORDER BY run_at, id LIMIT 1)
                 UNION ALL
                 SELECT * FROM (SELECT id, priority, fair_key, run_at FROM jobs
                     WHERE state = 'queued' AND +priority > 0 AND run_at <= ?3
                       AND plugin NOT IN (SELECT value FROM json_each(?4))
                     ORDER BY fair_key, id LIMIT 1)
                 UNION ALL
                 SELECT * FROM (SELECT id, priority, fair_key, run_at FROM jobs
                     WHERE state = 'leased' AND lease_until <= ?3
                       AND plugin NOT IN (SELECT value FROM json_each(?4))
                     ORDER BY priority, run_at, id LIMIT 1))
             ORDER BY priority > 0, fair_key, run_at, id LIMIT 1)
         RETURNING {COLUMNS}"
    ))?
    .query_row(params![worker, after(now, lease), now_s, skip], row_to_job)
    .optional()
}

/// What limits one plugin's runs under `keel up` (from its grant).
#[derive(Debug, Clone, PartialEq)]
pub struct Throttle {
    pub plugin: String,
    /// Most of its jobs leased at once.
    pub concurrency: Option<u32>,
    /// Most of its jobs started per unit of time (a token bucket).
    pub rate: Option<Rate>,
}

/// The tokens in `plugin`'s bucket at `now`: what it held, refilled for
/// the time since, up to a full bucket (a new bucket is full).
fn tokens(
    conn: &Connection,
    plugin: &str,
    rate: Rate,
    now: DateTime<Utc>,
) -> rusqlite::Result<f64> {
    let full = f64::from(rate.per);
    let held: Option<(f64, String)> = conn
        .prepare_cached("SELECT tokens, updated_at FROM rate_buckets WHERE plugin = ?1")?
        .query_row([plugin], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match held {
        None => full,
        Some((tokens, at)) => {
            let since = DateTime::parse_from_rfc3339(&at)
                .map(|at| (now - at.with_timezone(&Utc)).num_milliseconds().max(0))
                .unwrap_or(0) as f64
                / 1000.0;
            (tokens + since * rate.per_second()).min(full)
        }
    })
}

/// [`lease`] under per-plugin limits: passes over plugins with
/// `concurrency` jobs leased already or no token left in their rate
/// bucket, and takes a token for the job it leases. Counting and leasing
/// happen in one write transaction, so workers of every process see each
/// other's leases and tokens.
pub fn lease_throttled(
    conn: &mut Connection,
    worker: &str,
    now: DateTime<Utc>,
    lease: Duration,
    throttles: &[Throttle],
) -> rusqlite::Result<Option<Job>> {
    if throttles.is_empty() {
        return lease_except(conn, worker, now, lease, &[]);
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let running: std::collections::HashMap<String, i64> = tx
        .prepare_cached(
            "SELECT plugin, count(*) FROM jobs WHERE state = 'leased' AND lease_until > ?1 GROUP BY plugin",
        )?
        .query_map([stamp(now)], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut skip = Vec::new();
    for t in throttles {
        let busy = t
            .concurrency
            .is_some_and(|c| running.get(&t.plugin).copied().unwrap_or(0) >= i64::from(c));
        let dry = match t.rate {
            Some(rate) => tokens(&tx, &t.plugin, rate, now)? < 1.0,
            None => false,
        };
        if busy || dry {
            skip.push(t.plugin.as_str());
        }
    }
    let job = lease_except(&tx, worker, now, lease, &skip)?;
    let rated = job.as_ref().and_then(|job| {
        throttles
            .iter()
            .find(|t| t.plugin == job.plugin)
            .and_then(|t| t.rate)
            .map(|rate| (job, rate))
    });
    if let Some((job, rate)) = rated {
        let left = tokens(&tx, &job.plugin, rate, now)? - 1.0;
        tx.prepare_cached(
            "INSERT INTO rate_buckets (plugin, tokens, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (plugin) DO UPDATE SET tokens = excluded.tokens, updated_at = excluded.updated_at",
        )?
        .execute(params![job.plugin, left, stamp(now)])?;
    }
    tx.commit()?;
    Ok(job)
}

/// Moves the lease of a job `worker` holds to `until` (a run longer than
/// the default lease). False if the lease is no longer `worker`'s.
pub fn extend(
    conn: &Connection,
    id: &str,
    worker: &str,
    until: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE jobs SET lease_until = ?3 WHERE id = ?1 AND state = 'leased' AND lease_owner = ?2",
        )?
        .execute(params![id, worker, stamp(until)])?;
    Ok(n == 1)
}

/// Extends the lease of the job run `run` belongs to, if it is still
/// leased, to at least `until`: a run that waits on a nested run (an
/// `invoke`) keeps its job from a second worker for as long as it may last.
pub fn extend_for_run(conn: &Connection, run: &str, until: DateTime<Utc>) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE jobs SET lease_until = max(lease_until, ?2)
         WHERE state = 'leased' AND id = (SELECT job_id FROM runs WHERE id = ?1)",
    )?
    .execute(params![run, stamp(until)])?;
    Ok(())
}

/// Marks a leased job done. False if `worker` no longer holds the lease
/// (it expired and another worker took the job).
pub fn complete(
    conn: &Connection,
    id: &str,
    worker: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE jobs SET state = 'done', lease_owner = NULL, lease_until = NULL, updated_at = ?3
             WHERE id = ?1 AND state = 'leased' AND lease_owner = ?2",
        )?
        .execute(params![id, worker, stamp(now)])?;
    Ok(n == 1)
}

/// How a failed attempt should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Retrying may help (`unavailable`, a missed deadline).
    Transient,
    /// Retrying cannot help (`denied`, `invalid`, a trap).
    Permanent,
}

/// Records a failed attempt: requeued after a backoff, or dead-lettered.
/// `jitter` in `0.0..1.0` spreads retries (pass a random number);
/// `max_attempts` overrides the job's own (the plugin's `limits.attempts`).
/// Returns the job's new state, or `None` if `worker` no longer holds the
/// lease.
#[allow(clippy::too_many_arguments)]
pub fn fail(
    conn: &Connection,
    id: &str,
    worker: &str,
    failure: Failure,
    error: &str,
    now: DateTime<Utc>,
    jitter: f64,
    max_attempts: Option<i64>,
) -> rusqlite::Result<Option<JobState>> {
    let job: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT attempts, max_attempts FROM jobs WHERE id = ?1 AND state = 'leased' AND lease_owner = ?2",
        )?
        .query_row(params![id, worker], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((attempts, own_max)) = job else {
        return Ok(None);
    };
    let max_attempts = max_attempts.unwrap_or(own_max);
    let dead = failure == Failure::Permanent || attempts >= max_attempts;
    let state = if dead {
        JobState::Dead
    } else {
        JobState::Queued
    };
    let run_at = after(now, backoff(attempts, jitter));
    conn.prepare_cached(
        "UPDATE jobs SET state = ?2, lease_owner = NULL, lease_until = NULL, last_error = ?3,
             run_at = CASE WHEN ?2 = 'queued' THEN ?4 ELSE run_at END, updated_at = ?5
         WHERE id = ?1",
    )?
    .execute(params![id, state, error, run_at, stamp(now)])?;
    Ok(Some(state))
}

/// Stops a leased job without running it (a cascade past the depth limit):
/// it waits in the review queue with `why`. False if `worker` no longer
/// holds the lease.
pub fn stop(
    conn: &Connection,
    id: &str,
    worker: &str,
    why: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE jobs SET state = 'stopped', lease_owner = NULL, lease_until = NULL, last_error = ?3,
                 attempts = attempts - 1, updated_at = ?4
             WHERE id = ?1 AND state = 'leased' AND lease_owner = ?2",
        )?
        .execute(params![id, worker, why, stamp(now)])?;
    Ok(n == 1)
}

/// The causation chain of job `id`, nearest first: each step the plugin
/// whose run caused the one before (through an event it wrote or a
/// `schedule` call), at most `max` steps.
pub fn chain(conn: &Connection, id: &str, max: usize) -> rusqlite::Result<Vec<String>> {
    let mut steps = Vec::new();
    let mut job = id.to_string();
    while steps.len() < max {
        let parent: Option<(String, Option<String>)> = conn
            .prepare_cached(
                "SELECT r.plugin, r.job_id FROM jobs j
                 LEFT JOIN events e ON e.seq = j.event_seq
                 JOIN runs r ON r.id = COALESCE(e.run_id, j.created_by_run)
                 WHERE j.id = ?1",
            )?
            .query_row([&job], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((plugin, parent_job)) = parent else {
            break;
        };
        steps.push(plugin);
        match parent_job {
            Some(p) => job = p,
            None => break,
        }
    }
    Ok(steps)
}

/// The delay before retry `attempt` (1-based): base × 2^(attempt-1), capped,
/// plus up to half of it again as jitter.
pub fn backoff(attempt: i64, jitter: f64) -> Duration {
    let exp = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let delay = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(exp))
        .min(BACKOFF_MAX);
    delay + delay.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

/// Jobs, newest first, optionally in one state.
pub fn list(conn: &Connection, state: Option<&str>, limit: u32) -> rusqlite::Result<Vec<Job>> {
    conn.prepare(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE (?1 IS NULL OR state = ?1) ORDER BY created_at DESC, id DESC LIMIT ?2"
    ))?
    .query_map(params![state, limit], row_to_job)?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn enqueue(s: &Store, id: &str, run_at: DateTime<Utc>, priority: Priority, max_attempts: i64) {
        s.conn()
            .execute(
                "INSERT INTO jobs (id, plugin, input, run_at, priority, state, max_attempts, created_at, updated_at)
                 VALUES (?1, 'p', '{}', ?2, ?3, 'queued', ?4, ?2, ?2)",
                params![id, stamp(run_at), priority as i64, max_attempts],
            )
            .unwrap();
    }

    const LEASE: Duration = Duration::from_secs(30);

    #[test]
    fn leases_the_operators_jobs_first_then_due_jobs_in_turn() {
        let s = Store::open_in_memory().unwrap();
        enqueue(&s, "sched", at(0), Priority::Schedule, 5);
        enqueue(&s, "event", at(5), Priority::Event, 5);
        enqueue(&s, "op", at(8), Priority::Operator, 5);
        enqueue(&s, "later", at(100), Priority::Operator, 5);
        let order: Vec<String> = (0..4)
            .filter_map(|_| lease(s.conn(), "w", at(10), LEASE).unwrap())
            .map(|j| j.id)
            .collect();
        assert_eq!(order, ["op", "sched", "event"]);
        for id in &order {
            assert!(complete(s.conn(), id, "w", at(11)).unwrap());
        }
        assert!(lease(s.conn(), "w", at(99), LEASE).unwrap().is_none());
        assert_eq!(
            lease(s.conn(), "w", at(100), LEASE).unwrap().unwrap().id,
            "later"
        );
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_the_old_worker_cannot_complete() {
        let s = Store::open_in_memory().unwrap();
        enqueue(&s, "j", at(0), Priority::Schedule, 5);
        let first = lease(s.conn(), "w1", at(0), LEASE).unwrap().unwrap();
        assert_eq!((first.state.as_str(), first.attempts), ("leased", 1));
        // Still leased: nobody else gets it.
        assert!(lease(s.conn(), "w2", at(29), LEASE).unwrap().is_none());
        // w1 died; after the deadline w2 takes over.
        let second = lease(s.conn(), "w2", at(31), LEASE).unwrap().unwrap();
        assert_eq!(
            (second.lease_owner.as_deref(), second.attempts),
            (Some("w2"), 2)
        );
        assert!(!complete(s.conn(), "j", "w1", at(32)).unwrap());
        assert!(complete(s.conn(), "j", "w2", at(32)).unwrap());
        assert_eq!(list(s.conn(), Some("done"), 10).unwrap().len(), 1);
    }

    #[test]
    fn transient_failures_back_off_then_dead_letter() {
        let s = Store::open_in_memory().unwrap();
        enqueue(&s, "j", at(0), Priority::Schedule, 3);
        let mut now = at(0);
        for attempt in 1..=3 {
            let job = lease(s.conn(), "w", now, LEASE).unwrap().expect("due");
            assert_eq!(job.attempts, attempt);
            let state = fail(
                s.conn(),
                "j",
                "w",
                Failure::Transient,
                "unavailable",
                now,
                0.0,
                None,
            )
            .unwrap()
            .unwrap();
            if attempt < 3 {
                assert_eq!(state, "queued");
                let job = &list(s.conn(), None, 1).unwrap()[0];
                assert_eq!(job.run_at, after(now, backoff(attempt, 0.0)));
                // Not due before its backoff has passed.
                assert!(lease(s.conn(), "w", now, LEASE).unwrap().is_none());
                now += chrono::Duration::from_std(backoff(attempt, 0.0)).unwrap();
            } else {
                assert_eq!(state, "dead");
            }
        }
        assert_eq!(
            list(s.conn(), Some("dead"), 10).unwrap()[0]
                .last_error
                .as_deref(),
            Some("unavailable")
        );
    }

    #[test]
    fn a_permanent_failure_or_the_plugins_last_attempt_is_dead_at_once() {
        let s = Store::open_in_memory().unwrap();
        for (id, failure, plugin_max) in [
            ("permanent", Failure::Permanent, None),
            ("last", Failure::Transient, Some(1)),
        ] {
            enqueue(&s, id, at(0), Priority::Schedule, 5);
            lease(s.conn(), "w", at(0), LEASE).unwrap().unwrap();
            let state = fail(s.conn(), id, "w", failure, "no", at(1), 0.5, plugin_max).unwrap();
            assert_eq!(state.map(JobState::as_str), Some("dead"), "{id}");
        }
    }

    #[test]
    fn racing_workers_lease_each_job_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keel.db");
        let s = Store::open(&path).unwrap();
        for i in 0..200 {
            enqueue(&s, &format!("j{i:03}"), at(0), Priority::Schedule, 5);
        }
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let s = Store::open(&path).unwrap();
                    let mut got = Vec::new();
                    while let Some(job) = lease(s.conn(), &format!("w{w}"), at(1), LEASE).unwrap() {
                        got.push(job.id);
                    }
                    got
                })
            })
            .collect();
        let mut all: Vec<String> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        all.sort();
        let unique: std::collections::BTreeSet<_> = all.iter().cloned().collect();
        assert_eq!((all.len(), unique.len()), (200, 200));
    }

    fn throttle(plugin: &str, concurrency: Option<u32>, rate: Option<&str>) -> Throttle {
        Throttle {
            plugin: plugin.into(),
            concurrency,
            rate: rate.map(|r| crate::manifest::parse_rate(r).unwrap()),
        }
    }

    /// The id of the job `lease_throttled` hands out under `limits`.
    fn next_under(s: &mut Store, now: DateTime<Utc>, limits: &[Throttle]) -> Option<String> {
        lease_throttled(s.conn_mut(), "w", now, LEASE, limits)
            .unwrap()
            .map(|j| j.id)
    }

    fn enqueue_for(s: &Store, id: &str, plugin: &str) {
        s.conn()
            .execute(
                "INSERT INTO jobs (id, plugin, input, run_at, state, created_at, updated_at)
                 VALUES (?1, ?2, '{}', ?3, 'queued', ?3, ?3)",
                params![id, plugin, stamp(at(0))],
            )
            .unwrap();
    }

    #[test]
    fn m8_a_flood_of_one_plugins_event_jobs_does_not_starve_anothers_timed_job() {
        let s = Store::open_in_memory().unwrap();
        let insert = |id: &str, plugin: &str, priority: Priority| {
            s.conn()
                .execute(
                    "INSERT INTO jobs (id, plugin, input, run_at, priority, state, created_at, updated_at)
                     VALUES (?1, ?2, '{}', ?3, ?4, 'queued', ?3, ?3)",
                    params![id, plugin, stamp(at(0)), priority as i64],
                )
                .unwrap();
        };
        for i in 0..5000 {
            insert(&format!("flood-{i:05}"), "flooder", Priority::Event);
        }
        // Ten of the flood run, then a connector's interval job comes due.
        for _ in 0..10 {
            let j = lease(s.conn(), "w", at(1), LEASE).unwrap().unwrap();
            assert!(complete(s.conn(), &j.id, "w", at(1)).unwrap());
        }
        insert("timed", "connector", Priority::Schedule);
        // Its turn comes after the flood's next job or two (ties by id).
        let next: Vec<String> = (0..3)
            .map(|_| lease(s.conn(), "w", at(1), LEASE).unwrap().unwrap().id)
            .collect();
        assert!(
            next.contains(&"timed".to_string()),
            "the timed job waits behind the flood: {next:?}"
        );
        // And a second flood takes turns with the first, one job each.
        for i in 0..100 {
            insert(&format!("other-{i:03}"), "other", Priority::Event);
        }
        let plugins: Vec<String> = (0..20)
            .map(|_| lease(s.conn(), "w", at(1), LEASE).unwrap().unwrap().plugin)
            .collect();
        let others = plugins.iter().filter(|p| *p == "other").count();
        assert!((9..=11).contains(&others), "not an even share: {plugins:?}");
    }

    #[test]
    fn concurrency_limits_hold_jobs_back_until_a_slot_frees() {
        let mut s = Store::open_in_memory().unwrap();
        for i in 0..3 {
            enqueue_for(&s, &format!("slow{i}"), "slow");
        }
        enqueue_for(&s, "z-other", "other");
        let limits = [throttle("slow", Some(2), None)];
        let next = |s: &mut Store, now| next_under(s, now, &limits);
        // Two of `slow` at once, then `other` passes the third.
        assert_eq!(next(&mut s, at(1)).as_deref(), Some("slow0"));
        assert_eq!(next(&mut s, at(1)).as_deref(), Some("slow1"));
        assert_eq!(next(&mut s, at(1)).as_deref(), Some("z-other"));
        assert_eq!(next(&mut s, at(1)), None);
        assert!(complete(s.conn(), "slow0", "w", at(2)).unwrap());
        assert_eq!(next(&mut s, at(2)).as_deref(), Some("slow2"));
    }

    #[test]
    fn a_rate_limit_is_a_token_bucket() {
        let mut s = Store::open_in_memory().unwrap();
        for i in 0..6 {
            enqueue_for(&s, &format!("j{i}"), "chatty");
        }
        // Two per minute: a full bucket of two, then one every 30 s.
        let limits = [throttle("chatty", None, Some("2/m"))];
        let mut next = |now| next_under(&mut s, now, &limits);
        assert!(next(at(0)).is_some());
        assert!(next(at(1)).is_some());
        assert_eq!(next(at(2)), None);
        assert_eq!(next(at(29)), None);
        assert!(next(at(31)).is_some());
        assert_eq!(next(at(32)), None);
        // Idle time refills the bucket only up to its size.
        assert!(next(at(600)).is_some());
        assert!(next(at(600)).is_some());
        assert_eq!(next(at(600)), None);
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter_and_a_cap() {
        assert_eq!(backoff(1, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(2, 0.0), Duration::from_secs(4));
        assert_eq!(backoff(3, 1.0), Duration::from_secs(12));
        assert_eq!(backoff(40, 0.0), BACKOFF_MAX);
    }
}
