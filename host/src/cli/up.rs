//! `keel up`: the worker, until SIGINT/SIGTERM.

use std::path::Path;

use anyhow::bail;
use clap::Args;

use crate::home::Home;
use crate::terminal::say;

#[derive(Debug, Args)]
pub(super) struct UpArgs {
    /// How long to wait between polls when no job is due.
    #[arg(long, default_value_t = 500)]
    idle_ms: u64,
    /// Jobs run at once (default: the number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Event or schedule hops a cascade may take before it is stopped
    /// and sent to the review queue.
    #[arg(long, default_value_t = crate::up::DEFAULT_MAX_DEPTH)]
    max_depth: i64,
    /// How long a worker holds a job before another may take it over
    /// (at least the plugin's deadline plus 5 s).
    #[arg(long, default_value_t = 60_000)]
    lease_ms: u64,
    /// Accept plugins' webhooks on this address, e.g. 127.0.0.1:7373.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
}

pub(super) fn run(root: &Path, args: UpArgs) -> anyhow::Result<()> {
    let UpArgs {
        idle_ms,
        workers,
        max_depth,
        lease_ms,
        listen,
    } = args;
    let home = Home::open(root)?;
    let workers = workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    if workers == 0 {
        bail!("--workers must be at least 1");
    }
    if max_depth < 1 {
        bail!("--max-depth must be at least 1");
    }
    if lease_ms == 0 {
        bail!("--lease-ms must be at least 1");
    }
    let settings = crate::up::Settings {
        workers,
        idle: std::time::Duration::from_millis(idle_ms),
        max_depth,
        lease: std::time::Duration::from_millis(lease_ms),
        listen,
    };
    let tally = crate::up::run(&home, &settings)?;
    say!(
        "keel up stopped: {} done, {} to retry, {} dead, {} stopped",
        tally.done,
        tally.retried,
        tally.dead,
        tally.stopped
    );
    Ok(())
}
