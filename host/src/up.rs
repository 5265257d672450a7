//! `keel up`: the worker that executes durable jobs. It leases the next due
//! job, runs its plugin with a `schedule` trigger, and records the result:
//! done, retried later with backoff (transient failures), or dead-lettered.
//! It stops between jobs when asked (SIGINT/SIGTERM), so no run is cut off.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use serde::Serialize;

use crate::engine::KeelEngine;
use crate::home::Home;
use crate::jobs::{self, Failure, JobState};
use crate::jobs::{DEFAULT_LEASE, LEASE_MARGIN};
use crate::outbox::SendState;
use crate::plugins;
use crate::run::{Cause, Outcome, RunReport};
use crate::runtime::Runtime;
use crate::store::Store;

/// Failed passes in a row after which `keel up` gives up.
const MAX_CONSECUTIVE_FAILURES: u32 = 10;

/// How often a worker runs the supervisor pass (expired claims, lost runs).
const SUPERVISE_EVERY: Duration = Duration::from_secs(1);

/// How often an idle worker looks for commits by others.
const IDLE_STEP: Duration = Duration::from_millis(5);

/// Event or schedule hops a cascade may take before `keel up` stops it.
pub const DEFAULT_MAX_DEPTH: i64 = 8;

/// How `keel up` runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Jobs run at once.
    pub workers: usize,
    /// How long a worker sleeps when no job is due.
    pub idle: Duration,
    /// Jobs deeper in a cascade than this are stopped for review, not run.
    pub max_depth: i64,
    /// How long a worker holds a job before another may take it over (at
    /// least the plugin's deadline plus [`LEASE_MARGIN`]).
    pub lease: Duration,
    /// Where to accept webhooks (`keel up --listen`); none: not at all.
    pub listen: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            workers: 1,
            idle: Duration::from_millis(500),
            max_depth: DEFAULT_MAX_DEPTH,
            lease: DEFAULT_LEASE,
            listen: None,
        }
    }
}

/// What one pass over the queue did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Tally {
    pub done: u64,
    pub retried: u64,
    pub dead: u64,
    /// Jobs stopped for review (cascades past the depth limit).
    pub stopped: u64,
}

/// Whether a failed run is worth retrying: transient failures always,
/// others when the plugin's manifest declares them (`limits.retry_on`).
fn failure_of(report: &RunReport, retry_on: &[String]) -> Failure {
    let kind = match (report.outcome, report.error.as_deref()) {
        (Outcome::Deadline, _) | (Outcome::Error, Some("unavailable")) => {
            return Failure::Transient;
        }
        (Outcome::Error, Some(variant)) => variant,
        (outcome, _) => outcome.as_str(),
    };
    if retry_on.iter().any(|r| r == kind) {
        Failure::Transient
    } else {
        Failure::Permanent
    }
}

/// The worker loop. Owns its runtime; stops when `stop` is set.
pub struct Worker {
    home: Home,
    runtime: Runtime,
    /// This worker's name in leases: `host:pid`.
    name: String,
    /// Set by the signal handlers (or a test) to finish after the current job.
    stop: Arc<AtomicBool>,
    /// How long to sleep when no job is due.
    idle: Duration,
    max_depth: i64,
    lease: Duration,
    /// The store, kept between passes (a run holds it while it runs).
    db: Option<Store>,
    /// When this worker last ran the supervisor pass.
    supervised: Option<std::time::Instant>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("name", &self.name).finish()
    }
}

impl Worker {
    /// Worker `index` of this process, on a shared engine.
    pub fn new(
        home: &Home,
        engine: Arc<KeelEngine>,
        index: usize,
        stop: Arc<AtomicBool>,
        settings: &Settings,
    ) -> anyhow::Result<Worker> {
        Ok(Worker {
            home: home.clone(),
            runtime: Runtime::with_engine(home, engine)?,
            name: format!("worker-{}-{index}", std::process::id()),
            stop,
            idle: settings.idle,
            max_depth: settings.max_depth,
            lease: settings.lease,
            db: None,
            supervised: None,
        })
    }

    /// Dead-letters a job that cannot run at all.
    fn dead_letter(
        &mut self,
        db: Store,
        id: &str,
        why: &str,
        tally: &mut Tally,
    ) -> anyhow::Result<()> {
        jobs::fail(
            db.conn(),
            id,
            &self.name,
            Failure::Permanent,
            why,
            Utc::now(),
            0.0,
            None,
        )?;
        tracing::warn!("dead-lettered: {why}");
        tally.dead += 1;
        self.db = Some(db);
        Ok(())
    }

    /// Loads and pre-instantiates `plugin` now rather than at its first job.
    pub fn prepare(&mut self, plugin: &str) -> anyhow::Result<()> {
        let db = self.home.store()?;
        let row = crate::plugins::installed(&db, plugin)?;
        self.runtime.start_only(db, &row).map(|_| ())
    }

    /// Runs jobs until stopped.
    pub fn run(&mut self) -> anyhow::Result<Tally> {
        let mut tally = Tally::default();
        let mut failures = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let ran = match self.run_next(&mut tally) {
                Ok(ran) => {
                    failures = 0;
                    ran
                }
                // A busy or briefly unavailable store is waited out; a store
                // that keeps failing stops the worker with its error.
                Err(e) if failures < MAX_CONSECUTIVE_FAILURES => {
                    failures += 1;
                    tracing::warn!("worker pass failed ({failures} in a row): {e:#}");
                    false
                }
                Err(e) => return Err(e),
            };
            if !ran {
                self.idle_wait();
            }
        }
        Ok(tally)
    }

    /// Waits up to the idle time for work: in short steps, so a stop
    /// request is seen promptly, and only until another process or worker
    /// commits to the store (`PRAGMA data_version` moves), so an event
    /// written elsewhere wakes its subscribers at once instead of after
    /// the whole idle time.
    fn idle_wait(&mut self) {
        let version = |db: &Option<Store>| {
            db.as_ref().and_then(|db| {
                db.conn()
                    .pragma_query_value(None, "data_version", |r| r.get::<_, i64>(0))
                    .ok()
            })
        };
        let seen = version(&self.db);
        let mut slept = Duration::ZERO;
        while slept < self.idle && !self.stop.load(Ordering::Relaxed) {
            let step = IDLE_STEP.min(self.idle - slept);
            std::thread::sleep(step);
            slept += step;
            if seen.is_some() && version(&self.db) != seen {
                break;
            }
        }
    }

    /// Leases and runs one due job; false when none is due.
    pub fn run_next(&mut self, tally: &mut Tally) -> anyhow::Result<bool> {
        let mut db = match self.db.take() {
            Some(db) => db,
            None => self.home.store()?,
        };
        let installed = plugins::list(db.conn())?;
        self.housekeep(&mut db, &installed);
        let Some(job) = self.lease(&mut db, &installed)? else {
            self.db = Some(db);
            return Ok(false);
        };
        let span =
            tracing::info_span!("job", id = %job.id, plugin = %job.plugin, kind = %job.cause);
        let _guard = span.enter();
        self.execute(db, &job, tally)?;
        Ok(true)
    }

    /// What a pass does before it leases: fires the triggers and, once per
    /// [`SUPERVISE_EVERY`], runs the supervisor. Neither stops the pass.
    fn housekeep(&mut self, db: &mut Store, installed: &[plugins::PluginRow]) {
        match crate::triggers::fire(db, installed, Utc::now()) {
            Ok(fired) if fired != crate::triggers::Fired::default() => tracing::info!(
                interval = fired.interval,
                event = fired.event,
                delivery = fired.delivery,
                self_skipped = fired.self_skipped,
                "triggers fired"
            ),
            Ok(_) => {}
            // Firings are keyed, so a pass that fails is simply made later.
            Err(e) => tracing::warn!("triggers not fired this pass: {e}"),
        }
        if self
            .supervised
            .is_some_and(|t| t.elapsed() < SUPERVISE_EVERY)
        {
            return;
        }
        self.supervised = Some(std::time::Instant::now());
        match crate::actions::tasks::supervise(db, Utc::now()) {
            Ok(s) if s != crate::actions::tasks::Supervised::default() => tracing::info!(
                reopened = s.reopened,
                escalated = s.escalated,
                lost_runs = s.lost_runs,
                "supervisor"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("supervisor pass failed: {e}"),
        }
    }

    /// Leases the next due job under the installed plugins' throttles.
    fn lease(
        &self,
        db: &mut Store,
        installed: &[plugins::PluginRow],
    ) -> anyhow::Result<Option<jobs::Job>> {
        let throttles: Vec<jobs::Throttle> = installed
            .iter()
            .filter(|p| p.grant.concurrency.is_some() || p.grant.rate.is_some())
            .map(|p| jobs::Throttle {
                plugin: p.id.clone(),
                concurrency: p.grant.concurrency,
                rate: p.grant.rate,
            })
            .collect();
        Ok(jobs::lease_throttled(
            db.conn_mut(),
            &self.name,
            Utc::now(),
            self.lease,
            &throttles,
        )?)
    }

    /// Runs leased `job` and records how it went; gives the store back.
    fn execute(&mut self, db: Store, job: &jobs::Job, tally: &mut Tally) -> anyhow::Result<()> {
        if job.depth > self.max_depth {
            return self.stop_deep(db, job, tally);
        }
        let Some(row) = plugins::get(db.conn(), &job.plugin)? else {
            let why = format!("no plugin `{}` is installed", job.plugin);
            return self.dead_letter(db, &job.id, &why, tally);
        };
        let needed = Duration::from_millis(row.manifest.limits.timeout_ms) + LEASE_MARGIN;
        if needed > self.lease {
            let until = Utc::now() + chrono::Duration::from_std(needed)?;
            jobs::extend(db.conn(), &job.id, &self.name, until)?;
        }
        let send = match job.cause.as_str() {
            crate::outbox::CAUSE => crate::outbox::send_of(&job.input),
            _ => None,
        };
        if let Some(send) = &send {
            // A send delivered by an earlier attempt (whose worker died
            // before finishing the job) is not handed over again.
            match crate::outbox::load(db.conn(), send)?.map(|s| s.state) {
                Some(state) if state.deliverable() => {}
                Some(SendState::Delivered) => {
                    jobs::complete(db.conn(), &job.id, &self.name, Utc::now())?;
                    tally.done += 1;
                    self.db = Some(db);
                    return Ok(());
                }
                other => {
                    let why = format!(
                        "send {send} is {}, not waiting for delivery",
                        other.map_or("gone", SendState::as_str)
                    );
                    return self.dead_letter(db, &job.id, &why, tally);
                }
            }
        }
        let is_agent = row.manifest.plugin.world == crate::manifest::World::Agent;
        let (cause, input) = cause_of(job, is_agent, send.as_deref());
        let (report, db) = match self.runtime.invoke(db, &job.plugin, cause, input) {
            Ok(ran) => ran,
            Err(e) => {
                // The plugin could not even start (its component is gone or
                // does not load): retrying will not help.
                let why = format!("could not start: {e:#}");
                let db = self.home.store()?;
                return self.dead_letter(db, &job.id, &why, tally);
            }
        };
        self.record(db, job, &row.manifest.limits, &report, tally)
    }

    /// Stops a job deeper in a cascade than [`Settings::max_depth`]: it
    /// waits for the operator with the chain that led to it.
    fn stop_deep(&mut self, db: Store, job: &jobs::Job, tally: &mut Tally) -> anyhow::Result<()> {
        let steps = usize::try_from(self.max_depth).unwrap_or(0) + 1;
        let chain = jobs::chain(db.conn(), &job.id, steps)?;
        let why = format!(
            "stopped: a cascade {} hops deep, past the limit of {} (woken by {}); approve to run it anyway",
            job.depth,
            self.max_depth,
            chain.join(" <- ")
        );
        if jobs::stop(db.conn(), &job.id, &self.name, &why, Utc::now())? {
            tracing::warn!("{why}");
            tally.stopped += 1;
        }
        self.db = Some(db);
        Ok(())
    }

    /// Records a finished run's job: done, retried later or dead.
    fn record(
        &mut self,
        db: Store,
        job: &jobs::Job,
        limits: &crate::manifest::Limits,
        report: &RunReport,
        tally: &mut Tally,
    ) -> anyhow::Result<()> {
        // A sync with more to do made progress, whatever ended it: its job
        // is done and the next one queued at once.
        if report.outcome == Outcome::Ok || report.more {
            let more = report.more.then_some(report.run.as_str());
            let mut db = db;
            if jobs::enqueue::done(db.conn_mut(), job, &self.name, Utc::now(), more)? {
                tracing::info!(run = %report.run, more = report.more, "done");
                tally.done += 1;
            } else {
                tracing::warn!(run = %report.run, "finished after its lease passed to another worker");
            }
            self.db = Some(db);
            return Ok(());
        }
        // The low bits of a v7 id are random: enough to spread retries.
        let random = u16::try_from(uuid::Uuid::now_v7().as_u128() & 0xffff).unwrap_or(0);
        let jitter = f64::from(random) / f64::from(u16::MAX);
        let state = jobs::fail(
            db.conn(),
            &job.id,
            &self.name,
            failure_of(report, &limits.retry_on),
            &report.detail,
            Utc::now(),
            jitter,
            limits.attempts.map(i64::from),
        )?;
        match state {
            Some(JobState::Dead) => {
                tracing::warn!(run = %report.run, "dead-lettered: {}", report.detail);
                tally.dead += 1;
            }
            Some(_) => {
                tracing::info!(run = %report.run, "will retry: {}", report.detail);
                tally.retried += 1;
            }
            None => {
                tracing::warn!(run = %report.run, "failed after its lease passed to another worker")
            }
        }
        self.db = Some(db);
        Ok(())
    }
}

/// Why the run of `job` happens and the input it gets: an event job is
/// woken by its event; an agent gets a webhook's body (a connector is
/// woken to sync); a delivery job hands its send over; other jobs give an
/// agent their input.
fn cause_of<'a>(
    job: &'a jobs::Job,
    is_agent: bool,
    send: Option<&'a str>,
) -> (Cause<'a>, Option<&'a str>) {
    let attempt = u32::try_from(job.attempts).unwrap_or(u32::MAX);
    match (job.cause.as_str(), job.event_seq, send) {
        ("event", Some(seq), _) => (Cause::Event { job: &job.id, seq }, None),
        (crate::jobs::webhooks::CAUSE, Some(seq), _) if is_agent => {
            (Cause::Event { job: &job.id, seq }, Some(job.input.as_str()))
        }
        (_, _, Some(send)) => (
            Cause::Delivery {
                job: &job.id,
                send,
                attempt,
            },
            None,
        ),
        _ => (Cause::Job(&job.id), is_agent.then_some(job.input.as_str())),
    }
}

/// Runs `workers` workers on one engine until `stop` is set; returns
/// their summed tally.
pub fn run_workers(
    home: &Home,
    settings: &Settings,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Tally> {
    let engine = Arc::new(KeelEngine::new()?);
    let handles: Vec<_> = (0..settings.workers.max(1))
        .map(|i| {
            let mut worker = Worker::new(home, engine.clone(), i, stop.clone(), settings)?;
            std::thread::Builder::new()
                .name(format!("keel-worker-{i}"))
                .spawn(move || worker.run())
                .context("cannot start a worker thread")
        })
        .collect::<anyhow::Result<_>>()?;
    let mut total = Tally::default();
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(t)) => {
                total.done += t.done;
                total.retried += t.retried;
                total.dead += t.dead;
                total.stopped += t.stopped;
            }
            Ok(Err(e)) => {
                // One worker gave up: stop the others too.
                stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(anyhow::anyhow!("a worker thread panicked"));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// `keel up`: runs workers until SIGINT or SIGTERM.
pub fn run(home: &Home, settings: &Settings) -> anyhow::Result<Tally> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .context("cannot install the signal handlers")?;
    }
    let listener = match &settings.listen {
        Some(addr) => {
            let (local, handle) = crate::jobs::webhooks::serve(home, addr, stop.clone())?;
            tracing::info!("webhooks: listening on http://{local}/hooks/<plugin>/<hook>");
            Some(handle)
        }
        None => {
            if crate::jobs::webhooks::any(home.store()?.conn())? {
                tracing::warn!(
                    "plugins declare webhooks, but keel up has no --listen ADDR: they are not served"
                );
            }
            None
        }
    };
    tracing::info!(home = %home.root().display(), workers = settings.workers, "keel up: running jobs; stop with Ctrl-C or SIGTERM");
    let tally = run_workers(home, settings, stop.clone());
    stop.store(true, Ordering::Relaxed);
    if let Some(handle) = listener
        && handle.join().is_err()
    {
        tracing::warn!("the webhook listener panicked");
    }
    let tally = tally?;
    tracing::info!(
        done = tally.done,
        retried = tally.retried,
        dead = tally.dead,
        stopped = tally.stopped,
        "keel up: stopped"
    );
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcome: &str, error: Option<&str>) -> RunReport {
        RunReport {
            run: "r".into(),
            plugin: "p@0.1.0".into(),
            outcome: outcome.parse().unwrap(),
            detail: String::new(),
            error: error.map(str::to_string),
            sync: None,
            summary: None,
            receipt: None,
            output: None,
            more: false,
            fuel_consumed: 0,
            memory_peak: 0,
            wall_us: 0,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert_eq!(
            failure_of(&report("deadline", None), &[]),
            Failure::Transient
        );
        assert_eq!(
            failure_of(&report("error", Some("unavailable")), &[]),
            Failure::Transient
        );
        // Unless the manifest declares them.
        let declared = ["trap".to_string(), "conflict".to_string()];
        assert_eq!(
            failure_of(&report("trap", None), &declared),
            Failure::Transient
        );
        assert_eq!(
            failure_of(&report("error", Some("conflict")), &declared),
            Failure::Transient
        );
        assert_eq!(
            failure_of(&report("error", Some("invalid")), &declared),
            Failure::Permanent
        );
        for (outcome, error) in [
            ("error", Some("denied")),
            ("error", Some("invalid")),
            ("trap", None),
            ("fuel", None),
            ("memory", None),
        ] {
            assert_eq!(
                failure_of(&report(outcome, error), &[]),
                Failure::Permanent,
                "{outcome}"
            );
        }
    }
}
