//! `keel bench`: keel's costs as ratios against bare baselines measured in
//! the same process, so the figures mean the same on any machine.
//!
//! - run start: a fresh `Store` and instance of the `bench` plugin through
//!   keel (WASI from the grant, limiter, fuel, deadline) against a bare
//!   wasmtime linker instantiating the same component on the same engine;
//! - writes: records created through the plugin (record, version, event and
//!   audit entry per call) against plain inserts of the same bodies into one
//!   indexed table, one transaction per row like keel's per-call commit.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::demo::{BENCH, install_embedded};
use crate::home::Home;
use crate::runtime::Runtime;

mod languages;

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
    /// Run start (p50, µs) and component size (KiB) of the same agent in
    /// Rust, Python and JavaScript; null when they were not built.
    #[serde(flatten)]
    languages: languages::Languages,
    /// Why the languages' figures are null.
    #[serde(skip_serializing_if = "Option::is_none")]
    languages_skipped: Option<String>,
}

struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Times `samples` run starts of `row` through keel, after a first one
/// that prepares it (compiles or loads from cache) and is not counted.
fn time_starts(
    runtime: &mut Runtime,
    mut db: crate::store::Store,
    row: &crate::store::plugins::PluginRow,
    samples: usize,
) -> anyhow::Result<(Vec<Duration>, crate::store::Store)> {
    db = runtime.start_only(db, row)?;
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        db = runtime.start_only(db, row)?;
        times.push(t.elapsed());
    }
    Ok((times, db))
}

fn p50_us(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}

pub fn run(
    starts: usize,
    creates: u32,
    jobs: u32,
    memories: u32,
    models: Option<&std::path::Path>,
    languages_root: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<()> {
    /// Events whose wake-up latency is measured.
    const TRIGGER_SAMPLES: u32 = 100;
    if starts == 0 || creates == 0 || jobs == 0 {
        anyhow::bail!("--starts, --creates and --jobs must be at least 1");
    }
    let dir = tempfile::Builder::new().prefix("keel-bench-").tempdir()?;
    let home = Home::init(dir.path())?;
    let mut runtime = Runtime::new(&home)?;
    install_embedded(
        &home,
        &runtime,
        BENCH,
        &dir.path().join("staging"),
        BTreeMap::new(),
    )?;
    let mut db = home.store()?;

    let row = crate::runtime::installed(&db, "bench")?;
    let (keel_samples, db_back) = time_starts(&mut runtime, db, &row, starts)?;
    db = db_back;

    // The same component on a bare linker and the same engine.
    let engine = runtime.engine().engine().clone();
    let component = runtime.engine().load(
        &home.cache_dir(),
        &keel_registry::Digest::of(BENCH.component).to_string(),
        BENCH.component,
    )?;
    let mut linker: Linker<Bare> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
    linker
        .define_unknown_imports_as_traps(&component)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut bare_samples = Vec::with_capacity(starts);
    for i in 0..=starts {
        let t = Instant::now();
        let mut store = wasmtime::Store::new(
            &engine,
            Bare {
                wasi: WasiCtxBuilder::new().build(),
                table: ResourceTable::new(),
            },
        );
        store
            .set_fuel(u64::MAX / 2)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        store.set_epoch_deadline(1_000);
        pre.instantiate(&mut store)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // keel's measured start includes dropping its store; so does this.
        drop(store);
        if i > 0 {
            bare_samples.push(t.elapsed());
        }
    }

    // Writes through a plugin.
    let input = serde_json::json!({"op": "create", "n": creates}).to_string();
    let commits_before = db.commits();
    let t = Instant::now();
    let (report, db) = runtime.run(db, "bench", Some(&input))?;
    let create_secs = t.elapsed().as_secs_f64();
    if report.outcome != crate::run::Outcome::Ok {
        anyhow::bail!("the bench plugin failed: {}", report.detail);
    }
    // The baseline commits as many rows per transaction as keel committed
    // calls per transaction in this run (group commit).
    let commits = (db.commits() - commits_before).max(1);
    let batch = u32::try_from(u64::from(creates).div_ceil(commits)).unwrap_or(creates);
    let sqlite_secs = plain_inserts(&dir.path().join("plain.db"), creates, batch)?;
    let single_secs = plain_inserts(&dir.path().join("plain-single.db"), creates, 1)?;
    let rows_secs = keel_rows(&dir.path().join("rows.db"), creates, batch)?;

    let jobs_secs = queue_jobs(&home, jobs)?;
    let latencies = trigger_latencies(&dir.path().join("latency"), TRIGGER_SAMPLES)?;
    let recalls = recall_latencies(&dir.path().join("recall"), memories, 50)?;
    let models = models
        .map(Path::to_path_buf)
        .or_else(crate::demo::default_models_dir);
    let (mut embed_per_s, mut local_tokens_per_s, mut local_prompt_tokens_per_s) =
        (None, None, None);
    let models_skipped = match models {
        None => Some(
            "no --models DIR given (scripts/setup --local-models DIR fetches the weights)"
                .to_string(),
        ),
        Some(dir) => (|| -> Result<(), String> {
            embed_per_s = Some(round(crate::models::embed_rate(&dir, 256)?));
            let (read, wrote) = crate::models::chat_rate(&dir, 128)?;
            local_prompt_tokens_per_s = Some(round(read));
            local_tokens_per_s = Some(round(wrote));
            Ok(())
        })()
        .err(),
    };

    let (languages, languages_skipped) = match languages_root
        .map(Path::to_path_buf)
        .or_else(languages::default_root)
    {
        None => (
            languages::Languages::default(),
            Some("no --languages DIR (keel's source folder) given".to_string()),
        ),
        Some(root) => match languages::measure(&home, &mut runtime, &root, starts.min(200)) {
            Ok(figures) => (figures, None),
            Err(why) => (languages::Languages::default(), Some(why)),
        },
    };

    let keel = p50_us(keel_samples);
    let bare = p50_us(bare_samples);
    let create_per_s = f64::from(creates) / create_secs;
    let sqlite_per_s = f64::from(creates) / sqlite_secs;
    let figures = Figures {
        instantiate_us_p50: round(keel),
        bare_instantiate_us_p50: round(bare),
        instantiate_ratio: round(keel / bare),
        create_per_s: round(create_per_s),
        sqlite_insert_per_s: round(sqlite_per_s),
        create_ratio: round(create_per_s / sqlite_per_s),
        sqlite_insert_one_per_tx_per_s: round(f64::from(creates) / single_secs),
        sqlite_keel_rows_per_s: round(f64::from(creates) / rows_secs),
        creates,
        start_samples: starts,
        jobs_per_s: round(f64::from(jobs) / jobs_secs),
        jobs,
        trigger_latency_ms_p50: percentile(&latencies, 0.50),
        trigger_latency_ms_p99: percentile(&latencies, 0.99),
        trigger_samples: TRIGGER_SAMPLES,
        rows_per_transaction: batch,
        embed_per_s,
        local_tokens_per_s,
        local_prompt_tokens_per_s,
        models_skipped,
        recall_ms_p50: round(percentile(&recalls, 0.50)),
        recall_ms_p99: round(percentile(&recalls, 0.99)),
        recall_memories: memories,
        languages,
        languages_skipped,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
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
            println!(
                "local chat model:  {wrote:.0} tokens/s written, {read:.0} prompt tokens/s read"
            );
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
    Ok(())
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

/// The bench plugin again, as a subscriber to the records the bench plugin
/// creates; woken by an event it receives no input and returns at once.
const LISTENER: crate::demo::Embedded = crate::demo::Embedded {
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
fn trigger_latencies(root: &std::path::Path, samples: u32) -> anyhow::Result<Vec<f64>> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let home = Home::init(root)?;
    let mut producer = Runtime::new(&home)?;
    for plugin in [BENCH, LISTENER] {
        install_embedded(
            &home,
            &producer,
            plugin,
            &root.join("staging"),
            BTreeMap::new(),
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

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Inserts `n` bodies like the bench plugin's into one indexed table,
/// `batch` rows per transaction, with the store's pragmas.
fn plain_inserts(path: &std::path::Path, n: u32, batch: u32) -> anyhow::Result<f64> {
    let mut conn = rusqlite::Connection::open(path).context("open the baseline database")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE items (id TEXT PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL);
         CREATE INDEX items_kind ON items(kind, id);",
    )?;
    let t = Instant::now();
    let mut i = 0;
    while i < n {
        let tx = conn.transaction()?;
        for _ in 0..batch.min(n - i) {
            let body = serde_json::json!({"i": i, "text": format!("bench item {i} lorem ipsum dolor sit amet")}).to_string();
            tx.prepare_cached("INSERT INTO items (id, kind, body) VALUES (?1, 'bench/item', ?2)")?
                .execute(rusqlite::params![crate::store::new_id(), body])?;
            i += 1;
        }
        tx.commit()?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Inserts, as plain SQL into keel's own schema, the rows one `create`
/// writes: record, version, event and audit entry, `batch` creates per
/// transaction. No grant check, validation, hashing or Wasm.
fn keel_rows(path: &std::path::Path, n: u32, batch: u32) -> anyhow::Result<f64> {
    let mut store = crate::store::Store::open(path)?;
    let conn = store.conn_mut();
    let at = crate::store::now();
    let t = Instant::now();
    let mut i = 0;
    while i < n {
        let tx = conn.transaction()?;
        for _ in 0..batch.min(n - i) {
            let id = crate::store::new_id();
            let body = serde_json::json!({"i": i, "text": format!("bench item {i} lorem ipsum dolor sit amet")}).to_string();
            tx.prepare_cached(
                "INSERT INTO records (id, kind, body, version, created_at, updated_at, created_by, updated_by)
                 VALUES (?1, 'bench/item', ?2, 1, ?3, ?3, 'bench@0.1.0', 'bench@0.1.0')",
            )?
            .execute(rusqlite::params![id, body, at])?;
            tx.prepare_cached(
                "INSERT INTO versions (record_id, version, body, at, actor, sources, models)
                 VALUES (?1, 1, ?2, ?3, 'bench@0.1.0', '[]', '[]')",
            )?
            .execute(rusqlite::params![id, body, at])?;
            tx.prepare_cached(
                "INSERT INTO events (name, record_id, version, at) VALUES ('record.created', ?1, 1, ?2)",
            )?
            .execute(rusqlite::params![id, at])?;
            tx.prepare_cached(
                "INSERT INTO audit (seq, at, plugin, action, record_id, record_version, outcome, detail, prev_hash, hash)
                 VALUES (?1, ?2, 'bench', 'create', ?3, 1, 'allowed', 'kind bench/item', '', '')",
            )?
            .execute(rusqlite::params![i64::from(i) + 1, at, id])?;
            i += 1;
        }
        tx.commit()?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Fills a store with `n` memories (eight words each, random vectors of 384
/// dimensions) and times `samples` recalls after a first one (which loads
/// the vectors into memory), in milliseconds.
fn recall_latencies(root: &std::path::Path, n: u32, samples: u32) -> anyhow::Result<Vec<f64>> {
    // A vocabulary of 4,096 made-up words, so a query word is in a few
    // hundred memories, as names and topics are, not in most of them.
    const SYLLABLES: &[&str] = &[
        "ka", "lo", "mi", "ter", "van", "su", "ro", "dex", "pa", "lin", "or", "beh", "qui", "zo",
        "ne", "tas",
    ];
    let word = |i: u64| -> String {
        (0..3)
            .map(|k| SYLLABLES[((i >> (4 * k)) & 15) as usize])
            .collect()
    };
    const DIM: usize = 384;
    let home = Home::init(root)?;
    let mut db = home.store()?;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let vector = |next: &mut dyn FnMut() -> u64| -> Vec<f32> {
        (0..DIM)
            .map(|_| (next() % 20_000) as f32 / 10_000.0 - 1.0)
            .collect()
    };
    let actor = crate::store::Actor::operator();
    let grant = crate::grant::Grant {
        capabilities: crate::manifest::Capabilities::default(),
        dirs: BTreeMap::new(),
        config: BTreeMap::new(),
        concurrency: None,
        rate: None,
        review_below: Default::default(),
        denied: Vec::new(),
    };
    let tx = db.conn_mut().transaction()?;
    for i in 0..n {
        let text: Vec<String> = (0..8).map(|_| word(next() % 4096)).collect();
        let text = format!("{} {i}", text.join(" "));
        crate::memory::insert(
            &tx,
            &actor,
            &grant,
            &text,
            "{}",
            &[],
            None,
            "bench/random",
            vector(&mut next),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    tx.commit()?;
    let viewer = crate::memory::Viewer {
        grant: &grant,
        plugin: &actor.plugin,
    };
    let vectors = crate::memory::VectorCache::default();
    crate::memory::recall(
        db.conn(),
        &vectors,
        viewer,
        "warm",
        vector(&mut next),
        "bench/random",
        10,
        &crate::memory::Filter::default(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::new();
    for s in 0..samples {
        let query = format!("{} {}", word(u64::from(s) * 37 % 4096), word(next() % 4096));
        let q = vector(&mut next);
        let started = Instant::now();
        let found = crate::memory::recall(
            db.conn(),
            &vectors,
            viewer,
            &query,
            q,
            "bench/random",
            10,
            &crate::memory::Filter::default(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        out.push(started.elapsed().as_secs_f64() * 1000.0);
        if found.len() != 10.min(n as usize) {
            anyhow::bail!("a recall found {} of 10 memories", found.len());
        }
    }
    Ok(out)
}

/// Queues `n` no-op jobs for the bench plugin and times two workers
/// draining the queue (lease, run, complete).
fn queue_jobs(home: &Home, n: u32) -> anyhow::Result<f64> {
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
