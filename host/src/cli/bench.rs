//! `keel bench`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub(super) struct BenchArgs {
    /// How many run starts to time.
    #[arg(long, default_value_t = 2000)]
    starts: usize,
    /// How many records to create through the plugin.
    #[arg(long, default_value_t = 5000)]
    creates: u32,
    /// How many no-op jobs to push through the queue.
    #[arg(long, default_value_t = 500)]
    jobs: u32,
    /// How many HTTP requests to make through the plugin and from the host
    /// (http_requests_per_s).
    #[arg(long, default_value_t = 500)]
    requests: u32,
    /// How many small notes to ingest through the files connector
    /// (files_ingest_per_s).
    #[arg(long, default_value_t = 10_000)]
    notes: u32,
    /// How many memories to recall among (recall_ms_p50).
    #[arg(long, default_value_t = 100_000)]
    memories: u32,
    /// Where the local models' weights are (as `scripts/setup
    /// --local-models DIR` put them; default ~/.cache/keel/local-models),
    /// for embed_per_s and local_tokens_per_s.
    #[arg(long, value_name = "DIR")]
    models: Option<PathBuf>,
    /// keel's source folder, whose writer plugins in Rust, Python,
    /// JavaScript and C are timed once built there (`cargo test -p
    /// keel-test-artifacts`); without it, those figures are null.
    #[arg(long, value_name = "DIR")]
    languages: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub(super) fn run(args: BenchArgs) -> anyhow::Result<()> {
    let settings = crate::bench::Settings {
        starts: args.starts,
        creates: args.creates,
        jobs: args.jobs,
        memories: args.memories,
        requests: args.requests,
        notes: args.notes,
        models: args.models.as_deref(),
        languages: args.languages.as_deref(),
    };
    crate::bench::run(&settings, args.json)
}
