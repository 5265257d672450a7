//! Jobs: no-op jobs through the durable queue (lease, run, complete) with
//! two workers.

use std::time::{Duration, Instant};

use crate::home::Home;

/// Queues `n` no-op jobs for the bench plugin and times two workers
/// draining the queue (lease, run, complete).
pub(super) fn queue_jobs(home: &Home, n: u32) -> anyhow::Result<f64> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    let mut db = home.store()?;
    let at = crate::store::now();
    let tx = db.conn_mut().transaction()?;
    for _ in 0..n {
        tx.prepare_cached(
            "INSERT INTO jobs (id, plugin, input, run_at, state, created_at, updated_at)
             VALUES (?1, 'bench', '{\"op\":\"noop\"}', ?2, 'queued', ?2, ?2)",
        )?
        .execute(rusqlite::params![crate::store::new_id(), at])?;
    }
    tx.commit()?;
    let engine = Arc::new(crate::engine::KeelEngine::new()?);
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = (0..2)
        .map(|i| {
            let settings = crate::up::Settings {
                idle: Duration::ZERO,
                ..Default::default()
            };
            crate::up::Worker::new(home, engine.clone(), i, stop.clone(), &settings)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Warm each worker's prepared plugin outside the timing.
    for w in &mut workers {
        w.prepare("bench")?;
    }
    let t = Instant::now();
    let handles: Vec<_> = workers
        .into_iter()
        .map(|mut w| {
            std::thread::spawn(move || -> anyhow::Result<crate::up::Tally> {
                let mut tally = crate::up::Tally::default();
                while w.run_next(&mut tally)? {}
                Ok(tally)
            })
        })
        .collect();
    let mut done = 0;
    for h in handles {
        done += h
            .join()
            .map_err(|_| anyhow::anyhow!("a bench worker panicked"))??
            .done;
    }
    let secs = t.elapsed().as_secs_f64();
    if done != u64::from(n) {
        anyhow::bail!("only {done} of {n} bench jobs completed");
    }
    Ok(secs)
}
