//! `keel bench`: keel's costs as ratios against bare baselines measured in
//! the same process, so the figures mean the same on any machine. One
//! module per figure group:
//!
//! - [`start`]: run start through keel against a bare wasmtime
//!   instantiation of the same component on the same engine;
//! - [`writes`]: records created through the plugin against plain inserts
//!   of the same bodies;
//! - [`http`]: GETs through a plugin against the same GETs from the host;
//! - [`ingest`]: a first sync and an unchanged resync of a folder of
//!   small notes through the `files` connector;
//! - [`jobs`]: no-op jobs through the durable queue;
//! - [`triggers`]: event-to-run latency under idle workers;
//! - [`recall`]: hybrid recall among many memories;
//! - [`models`]: the local embedder and chat model, when their weights are
//!   there;
//! - [`languages`]: run start and size of one agent in Rust, Python,
//!   JavaScript and C, when a folder with them built is given.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::embedded::{self, BENCH};
use crate::home::Home;
use crate::runtime::Runtime;

mod http;
mod ingest;
mod jobs;
mod languages;
mod models;
mod recall;
mod start;
mod triggers;
mod writes;

#[derive(Debug, Serialize)]
struct Figures {
    instantiate_us_p50: f64,
    bare_instantiate_us_p50: f64,
    /// keel run start / bare instantiate (target: at most 2.0).
    instantiate_ratio: f64,
    create_per_s: f64,
    sqlite_insert_per_s: f64,
    /// create_per_s / sqlite_insert_per_s (target: at least 0.5).
    create_ratio: f64,
    /// The same plain inserts with one commit per row, for scale: what keel
    /// would compete with if every call committed alone.
    sqlite_insert_one_per_tx_per_s: f64,
    /// The four rows keel writes per create (record, version, event, audit
    /// entry) inserted as plain SQL into keel's own schema, same batch: the
    /// part of the gap that is the data model rather than the host.
    sqlite_keel_rows_per_s: f64,
    creates: u32,
    start_samples: usize,
    /// No-op jobs through the durable queue (lease, run, complete) with two
    /// workers.
    jobs_per_s: f64,
    jobs: u32,
    /// From a `record.created` event committed by another process's run to
    /// the start of the subscriber's run under idle `keel up` workers.
    trigger_latency_ms_p50: f64,
    trigger_latency_ms_p99: f64,
    trigger_samples: u32,
    /// Calls per commit in keel's run, and rows per transaction in the
    /// baseline.
    rows_per_transaction: u32,
    /// Sentences embedded per second by the local embedder (batches of 16,
    /// one thread per core); null when its weights were not found.
    embed_per_s: Option<f64>,
    /// Tokens per second the local chat model writes (greedy, after
    /// reading its prompt); null when its weights were not found.
    local_tokens_per_s: Option<f64>,
    /// Prompt tokens per second the local chat model reads.
    local_prompt_tokens_per_s: Option<f64>,
    /// Why the local models' figures are null.
    #[serde(skip_serializing_if = "Option::is_none")]
    models_skipped: Option<String>,
    /// One hybrid recall (full-text and a scan of 384-dimension vectors,
    /// fused) among `recall_memories` memories, the query already embedded.
    recall_ms_p50: f64,
    recall_ms_p99: f64,
    recall_memories: u32,
    /// GETs per second through the bench plugin to a loopback server (each
    /// matched to its endpoint, its address checked, audited).
    http_requests_per_s: f64,
    /// The same GETs from a client in the host (reqwest), one connection
    /// each like keel's.
    host_http_requests_per_s: f64,
    /// http_requests_per_s / host_http_requests_per_s.
    http_ratio: f64,
    http_requests: u32,
    /// Small notes (~100 bytes) per second through the `files` connector
    /// on a first sync, over as many runs as its deadline takes.
    files_ingest_per_s: f64,
    /// The same folder resynced with nothing changed.
    files_resync_per_s: f64,
    notes: u32,
    /// Run start (p50, µs) and component size (KiB) of the same agent in
    /// Rust, Python and JavaScript; null when they were not built.
    #[serde(flatten)]
    languages: languages::Languages,
    /// Why the languages' figures are null.
    #[serde(skip_serializing_if = "Option::is_none")]
    languages_skipped: Option<String>,
}

/// What to measure, from `keel bench`'s flags.
#[derive(Debug)]
pub struct Settings<'a> {
    /// Run starts to time.
    pub starts: usize,
    /// Records to create through the plugin.
    pub creates: u32,
    /// No-op jobs to push through the queue.
    pub jobs: u32,
    /// Memories to recall among.
    pub memories: u32,
    /// HTTP requests to make each way.
    pub requests: u32,
    /// Small notes to ingest through the `files` connector.
    pub notes: u32,
    /// Where the local models' weights are (default: the setup's cache).
    pub models: Option<&'a Path>,
    /// keel's source folder with the writer plugins built, if any.
    pub languages: Option<&'a Path>,
}

/// Runs every figure group in a temporary home and prints the figures.
pub fn run(settings: &Settings<'_>, json: bool) -> anyhow::Result<()> {
    /// Events whose wake-up latency is measured.
    const TRIGGER_SAMPLES: u32 = 100;
    let &Settings {
        starts,
        creates,
        jobs,
        memories,
        ..
    } = settings;
    if starts == 0 || creates == 0 || jobs == 0 || settings.requests == 0 || settings.notes == 0 {
        anyhow::bail!("--starts, --creates, --jobs, --requests and --notes must be at least 1");
    }
    let dir = tempfile::Builder::new().prefix("keel-bench-").tempdir()?;
    let home = Home::init(dir.path())?;
    let mut runtime = Runtime::new(&home)?;
    let loopback = http::Loopback::start()?;
    embedded::install(
        &home,
        &runtime,
        BENCH,
        &dir.path().join("staging"),
        bench_bindings(loopback.port),
    )?;
    let db = home.store()?;
    let (started, db) = start::measure(&home, &mut runtime, db, starts)?;
    let (requests, db) = http::measure(&mut runtime, db, loopback.port, settings.requests)?;
    drop(loopback);
    let written = writes::measure(&mut runtime, db, dir.path(), creates)?;
    let ingested = ingest::measure(&dir.path().join("ingest"), settings.notes)?;
    let jobs_secs = jobs::queue_jobs(&home, jobs)?;
    let latencies = triggers::trigger_latencies(&dir.path().join("latency"), TRIGGER_SAMPLES)?;
    let recalls = recall::recall_latencies(&dir.path().join("recall"), memories, 50)?;
    let local = models::measure(settings.models);
    let (languages, languages_skipped) =
        languages::figures_or_why(&home, &mut runtime, settings.languages, starts.min(200));
    let create_per_s = f64::from(creates) / written.keel;
    let sqlite_per_s = f64::from(creates) / written.sqlite;
    let figures = Figures {
        instantiate_us_p50: round(started.keel),
        bare_instantiate_us_p50: round(started.bare),
        instantiate_ratio: round(started.keel / started.bare),
        create_per_s: round(create_per_s),
        sqlite_insert_per_s: round(sqlite_per_s),
        create_ratio: round(create_per_s / sqlite_per_s),
        sqlite_insert_one_per_tx_per_s: round(f64::from(creates) / written.single),
        sqlite_keel_rows_per_s: round(f64::from(creates) / written.rows),
        creates,
        start_samples: starts,
        jobs_per_s: round(f64::from(jobs) / jobs_secs),
        jobs,
        trigger_latency_ms_p50: percentile(&latencies, 0.50),
        trigger_latency_ms_p99: percentile(&latencies, 0.99),
        trigger_samples: TRIGGER_SAMPLES,
        rows_per_transaction: written.batch,
        embed_per_s: local.embed_per_s,
        local_tokens_per_s: local.local_tokens_per_s,
        local_prompt_tokens_per_s: local.local_prompt_tokens_per_s,
        models_skipped: local.skipped,
        recall_ms_p50: round(percentile(&recalls, 0.50)),
        recall_ms_p99: round(percentile(&recalls, 0.99)),
        recall_memories: memories,
        http_requests_per_s: round(requests.keel),
        host_http_requests_per_s: round(requests.host),
        http_ratio: round(requests.keel / requests.host),
        http_requests: settings.requests,
        files_ingest_per_s: round(ingested.first),
        files_resync_per_s: round(ingested.unchanged),
        notes: settings.notes,
        languages,
        languages_skipped,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        print_text(&figures);
    }
    Ok(())
}

/// The bench plugin's bindings: its `web` endpoint on the loopback
/// server's `port` (nothing listens on port 0; only the HTTP figure uses it).
fn bench_bindings(port: u16) -> crate::grant::Bindings {
    crate::grant::Bindings {
        endpoints: BTreeMap::from([("web".to_string(), format!("http://127.0.0.1:{port}/"))]),
        ..Default::default()
    }
}

fn print_text(figures: &Figures) {
    println!(
        "run start (p50):   keel {:.1} µs, bare wasmtime {:.1} µs — ratio {:.2} (target ≤ 2, and < 50 µs)",
        figures.instantiate_us_p50, figures.bare_instantiate_us_p50, figures.instantiate_ratio
    );
    println!(
        "create:            keel {:.0}/s, plain SQLite {:.0}/s — ratio {:.2} (target ≥ 0.5)",
        figures.create_per_s, figures.sqlite_insert_per_s, figures.create_ratio
    );
    println!(
        "jobs:              {:.0}/s through the queue with 2 workers",
        figures.jobs_per_s
    );
    println!(
        "trigger latency:   p50 {:.0} ms, p99 {:.0} ms from event committed to run started",
        figures.trigger_latency_ms_p50, figures.trigger_latency_ms_p99
    );
    println!(
        "http:              keel {:.0}/s through a plugin, host client {:.0}/s — ratio {:.2}",
        figures.http_requests_per_s, figures.host_http_requests_per_s, figures.http_ratio
    );
    println!(
        "ingest:            {:.0} notes/s first sync, {:.0} notes/s unchanged resync ({} notes)",
        figures.files_ingest_per_s, figures.files_resync_per_s, figures.notes
    );
    println!(
        "recall:            p50 {:.1} ms, p99 {:.1} ms among {} memories",
        figures.recall_ms_p50, figures.recall_ms_p99, figures.recall_memories
    );
    if let Some(rate) = figures.embed_per_s {
        println!("local embeddings:  {rate:.0} sentences/s");
    }
    if let (Some(wrote), Some(read)) = (
        figures.local_tokens_per_s,
        figures.local_prompt_tokens_per_s,
    ) {
        println!("local chat model:  {wrote:.0} tokens/s written, {read:.0} prompt tokens/s read");
    }
    if let Some(why) = &figures.models_skipped {
        println!("local models:      not measured: {why}");
    }
    let l = &figures.languages;
    if let (Some(rs), Some(py), Some(js), Some(c)) = (
        l.instantiate_us_p50_rust,
        l.instantiate_us_p50_python,
        l.instantiate_us_p50_js,
        l.instantiate_us_p50_c,
    ) {
        println!(
            "same agent, start: Rust {rs:.1} µs, Python {py:.1} µs, JavaScript {js:.1} µs, C {c:.1} µs (components {:.0} / {:.0} / {:.0} / {:.0} KiB)",
            l.component_kb_rust.unwrap_or_default(),
            l.component_kb_python.unwrap_or_default(),
            l.component_kb_js.unwrap_or_default(),
            l.component_kb_c.unwrap_or_default()
        );
    }
    if let Some(why) = &figures.languages_skipped {
        println!("languages:         not measured: {why}");
    }
    if cfg!(debug_assertions) {
        println!("(this is a debug build; measure with `cargo run --release -- bench`)");
    }
}

/// The `q` quantile of `samples`, nearest rank.
fn percentile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len().saturating_sub(1)))
        .copied()
        .map_or(0.0, round)
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
