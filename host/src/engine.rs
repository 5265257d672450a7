//! The wasmtime engine keel runs every plugin on: component model, pooling
//! allocator, fuel for CPU, epoch interruption for the wall-clock deadline,
//! and an on-disk cache of compiled components.

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::manifest::MAX_MEMORY_MB;

/// How often the epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The wasmtime release compiled components are cached for (part of the
/// cache key, beside the engine's own settings hash).
const WASMTIME_MAJOR: &str = "48";

/// Instances the pool keeps slots for; runs beyond this wait or fail cleanly.
const POOL_INSTANCES: u32 = 64;

/// The engine plus the thread that advances its epoch. Dropping it stops
/// the thread.
pub struct KeelEngine {
    engine: Engine,
    /// Set to stop the ticker; the ticker checks it every tick.
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
    settings_key: String,
}

impl std::fmt::Debug for KeelEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeelEngine")
            .field("settings_key", &self.settings_key)
            .finish()
    }
}

/// Feeds `Hash` output into sha256 so the engine's settings hash is stable
/// across processes (std's default hasher is seeded per process).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl KeelEngine {
    pub fn new() -> anyhow::Result<KeelEngine> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.consume_fuel(true);
        config.epoch_interruption(true);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 8)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 4)
            .max_memory_size(usize::try_from(MAX_MEMORY_MB << 20).unwrap_or(usize::MAX));
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("cannot start the WebAssembly engine")?;

        let mut hasher = ShaHasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        hasher.0.update(WASMTIME_MAJOR.as_bytes());
        let settings_key = hex::encode(&hasher.0.finalize()[..8]);

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("keel-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .context("cannot start the epoch thread")?
        };
        Ok(KeelEngine {
            engine,
            stop,
            ticker: Some(ticker),
            settings_key,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `bytes` (a component whose sha256 is `digest`), or loads the
    /// compiled form from `cache_dir` when this engine compiled it before.
    pub fn load(&self, cache_dir: &Path, digest: &str, bytes: &[u8]) -> anyhow::Result<Component> {
        let path = self.cache_path(cache_dir, digest);
        if path.exists() {
            match deserialize(&self.engine, &path) {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!("ignoring unusable compiled cache {}: {e}", path.display());
                }
            }
        }
        let component = compile(&self.engine, bytes)?;
        self.store_compiled(&component, &path);
        Ok(component)
    }

    /// Where the compiled form of `digest` lives for this engine's settings.
    pub fn cache_path(&self, cache_dir: &Path, digest: &str) -> PathBuf {
        let digest = digest.trim_start_matches("sha256:");
        cache_dir.join(format!("{digest}-{}.cwasm", self.settings_key))
    }

    /// Keeps the compiled form of an installed component so later runs
    /// start from the cache.
    pub fn cache(&self, cache_dir: &Path, digest: &str, component: &Component) {
        self.store_compiled(component, &self.cache_path(cache_dir, digest));
    }

    /// Writes the compiled form atomically; a failure only costs a recompile.
    fn store_compiled(&self, component: &Component, path: &Path) {
        let result = (|| -> anyhow::Result<()> {
            let bytes = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
            let dir = path.parent().context("cache path has a folder")?;
            std::fs::create_dir_all(dir)?;
            let tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::fs::write(tmp.path(), bytes)?;
            tmp.persist(path)?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(
                "could not cache the compiled component at {}: {e}",
                path.display()
            );
        }
    }
}

/// Compiles a component, with a message that says what the bytes are not.
pub fn compile(engine: &Engine, bytes: &[u8]) -> anyhow::Result<Component> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        anyhow::bail!("the file is not WebAssembly (it does not start with `\\0asm`)");
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        anyhow::bail!(
            "the file is a core WebAssembly module, not a component; build for `wasm32-wasip2` or wrap it with `wasm-tools component new`"
        );
    }
    Component::new(engine, bytes)
        .map_err(|e| anyhow::anyhow!("the component does not compile: {e}"))
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> anyhow::Result<Component> {
    // SAFETY: the file was written by `store_compiled` into keel's own cache
    // folder, named by the component digest and this engine's settings; the
    // operator's home is trusted like the keel binary itself.
    unsafe { Component::deserialize_file(engine, path) }.map_err(|e| anyhow::anyhow!("{e}"))
}

impl Drop for KeelEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}
