//! Trigger latency: from a `record.created` event committed by another
//! process's run to the start of the subscriber's run under idle `keel up`
//! workers.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::embedded::{self, BENCH, Embedded};
use crate::home::Home;
use crate::runtime::Runtime;

/// The bench plugin again, as a subscriber to the records the bench plugin
/// creates; woken by an event it receives no input and returns at once.
const LISTENER: Embedded = Embedded {
    id: "bench-listener",
    manifest: r#"[plugin]
id = "bench-listener"
version = "0.1.0"
world = "agent"
description = "Used by `keel bench`: wakes on every new bench/item"

[capabilities]
read = ["bench/item"]
write = ["bench/item"]
actions = ["create"]

[capabilities.endpoints]
web = "http"

[[triggers]]
on = "record.created"
kinds = ["bench/item"]
"#,
    component: BENCH.component,
};

/// Event-to-run latency: two idle workers (as `keel up` runs them) and, on
/// a connection of its own like `keel run` in another process, a producer
/// that creates one record every few milliseconds. Each sample is the
/// subscriber's run start minus its event's time, in milliseconds.
pub(super) fn trigger_latencies(root: &Path, samples: u32) -> anyhow::Result<Vec<f64>> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let home = Home::init(root)?;
    let mut producer = Runtime::new(&home)?;
    for plugin in [BENCH, LISTENER] {
        embedded::install(
            &home,
            &producer,
            plugin,
            &root.join("staging"),
            // The same component: its HTTP import needs its endpoint.
            super::bench_bindings(0),
        )?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let settings = crate::up::Settings {
        workers: 2,
        ..Default::default()
    };
    let workers = {
        let (home, stop) = (home.clone(), stop.clone());
        std::thread::spawn(move || crate::up::run_workers(&home, &settings, stop))
    };
    // Let the workers start and go idle before the first event.
    std::thread::sleep(Duration::from_millis(200));
    let input = r#"{"op":"create","n":1}"#;
    let mut db = home.store()?;
    for _ in 0..samples {
        let (report, back) = producer.run(db, "bench", Some(input))?;
        db = back;
        if report.outcome != crate::run::Outcome::Ok {
            anyhow::bail!("the bench producer failed: {}", report.detail);
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = |db: &crate::store::Store| -> anyhow::Result<i64> {
        Ok(db.conn().query_row(
            "SELECT count(*) FROM jobs WHERE plugin = 'bench-listener' AND state = 'done'",
            [],
            |r| r.get(0),
        )?)
    };
    while done(&db)? < i64::from(samples) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    workers
        .join()
        .map_err(|_| anyhow::anyhow!("the bench workers panicked"))??;
    let pairs: Vec<(String, String)> = db
        .conn()
        .prepare(
            "SELECT e.at, r.started_at FROM jobs j
             JOIN events e ON e.seq = j.event_seq
             JOIN runs r ON r.job_id = j.id
             WHERE j.plugin = 'bench-listener'",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if pairs.len() != usize::try_from(samples)? {
        anyhow::bail!(
            "only {} of {samples} events woke the subscriber",
            pairs.len()
        );
    }
    let ms = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.timestamp_millis())
            .with_context(|| format!("bad time {t}"))
    };
    pairs
        .iter()
        .map(|(at, started)| Ok((ms(started)? - ms(at)?) as f64))
        .collect()
}
