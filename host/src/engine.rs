//! The wasmtime engine keel runs every plugin on: component model, pooling
//! allocator, fuel for CPU, epoch interruption for the wall-clock deadline,
//! and an on-disk cache of compiled components.
//!
//! A compiled file is native code that wasmtime maps and runs without
//! checking it, so each one ends with an HMAC-SHA256 under a key of the home
//! (`HOME/cache.key`, 0600), over the engine settings, the component digest
//! and the bytes. The MAC is checked on the bytes in memory before they are
//! deserialized; a file that fails it (tampered, truncated, copied from
//! another home) is compiled again from the component, never run.

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use hmac::{Hmac, Mac};
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

/// The MAC key's file, beside the cache folder.
const MAC_KEY_FILE: &str = "cache.key";
/// Bytes of the MAC at the end of a compiled file.
const MAC_LEN: usize = 32;
/// Largest compiled file read back; a bigger one is recompiled.
const MAX_COMPILED_BYTES: u64 = 512 << 20;

/// Where a compiled file came from, for tests and tracing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loaded {
    /// The cache file held keel's MAC and was deserialized.
    Cache,
    /// Compiled from the component (no usable cache file).
    Compiled,
}

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
        Ok(self.load_from(cache_dir, digest, bytes)?.0)
    }

    /// [`KeelEngine::load`], saying whether the cache was used.
    pub fn load_from(
        &self,
        cache_dir: &Path,
        digest: &str,
        bytes: &[u8],
    ) -> anyhow::Result<(Component, Loaded)> {
        let path = self.cache_path(cache_dir, digest);
        if path.exists() {
            match self.read_compiled(cache_dir, digest, &path) {
                Ok(component) => return Ok((component, Loaded::Cache)),
                Err(e) => {
                    tracing::warn!("recompiling instead of using {}: {e}", path.display());
                }
            }
        }
        let component = compile(&self.engine, bytes)?;
        self.store_compiled(cache_dir, digest, &component, &path);
        Ok((component, Loaded::Compiled))
    }

    /// The MAC a compiled file for `digest` must end with.
    fn mac(&self, key: &[u8; 32], digest: &str, compiled: &[u8]) -> anyhow::Result<Hmac<Sha256>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key)
            .map_err(|e| anyhow::anyhow!("cache MAC key: {e}"))?;
        mac.update(b"keel-cwasm/1\n");
        mac.update(self.settings_key.as_bytes());
        mac.update(b"\n");
        mac.update(digest.trim_start_matches("sha256:").as_bytes());
        mac.update(b"\n");
        mac.update(compiled);
        Ok(mac)
    }

    /// Reads a compiled file, checks its MAC, then deserializes the bytes
    /// checked (not the file again, which could have changed meanwhile).
    fn read_compiled(
        &self,
        cache_dir: &Path,
        digest: &str,
        path: &Path,
    ) -> anyhow::Result<Component> {
        let size = std::fs::metadata(path)?.len();
        if size > MAX_COMPILED_BYTES {
            anyhow::bail!("it is over {MAX_COMPILED_BYTES} bytes");
        }
        let file = std::fs::read(path)?;
        let Some(split) = file.len().checked_sub(MAC_LEN) else {
            anyhow::bail!("it is too short to carry keel's MAC");
        };
        let (compiled, tag) = file.split_at(split);
        let key = mac_key(cache_dir, false)?;
        self.mac(&key, digest, compiled)?
            .verify_slice(tag)
            .map_err(|_| {
                anyhow::anyhow!("its MAC does not verify (not written by this home's keel)")
            })?;
        deserialize(&self.engine, compiled)
    }

    /// Where the compiled form of `digest` lives for this engine's settings.
    pub fn cache_path(&self, cache_dir: &Path, digest: &str) -> PathBuf {
        let digest = digest.trim_start_matches("sha256:");
        cache_dir.join(format!("{digest}-{}.cwasm", self.settings_key))
    }

    /// Keeps the compiled form of an installed component so later runs
    /// start from the cache.
    pub fn cache(&self, cache_dir: &Path, digest: &str, component: &Component) {
        self.store_compiled(
            cache_dir,
            digest,
            component,
            &self.cache_path(cache_dir, digest),
        );
    }

    /// Writes the compiled form and its MAC atomically (0600, as temporary
    /// files are made); a failure only costs a recompile.
    fn store_compiled(&self, cache_dir: &Path, digest: &str, component: &Component, path: &Path) {
        let result = (|| -> anyhow::Result<()> {
            let mut bytes = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
            let key = mac_key(cache_dir, true)?;
            let tag = self.mac(&key, digest, &bytes)?.finalize().into_bytes();
            bytes.extend_from_slice(&tag);
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

/// The home's key for compiled files, made (0600) when `create` and absent.
fn mac_key(cache_dir: &Path, create: bool) -> anyhow::Result<[u8; 32]> {
    let path = cache_dir.with_file_name(MAC_KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| anyhow::anyhow!("{} is not a 32-byte key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let dir = path.parent().context("the cache key has a folder")?;
            let tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::fs::write(tmp.path(), key)?;
            // Another process may have made it first: use theirs.
            if tmp.persist_noclobber(&path).is_err() {
                return mac_key(cache_dir, false);
            }
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, compiled: &[u8]) -> anyhow::Result<Component> {
    // SAFETY: the bytes carry an HMAC under the home's cache key, checked
    // just before this on these same bytes in memory, so they are what this
    // home's keel serialized for this digest and engine settings.
    unsafe { Component::deserialize(engine, compiled) }.map_err(|e| anyhow::anyhow!("{e}"))
}

impl Drop for KeelEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: the preamble of an empty one.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    #[test]
    fn m3_tampered_compiled_cache_is_recompiled_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        let engine = KeelEngine::new().unwrap();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(EMPTY_COMPONENT)));
        let (_, from) = engine.load_from(&cache, &digest, EMPTY_COMPONENT).unwrap();
        assert_eq!(from, Loaded::Compiled);
        let (_, from) = engine.load_from(&cache, &digest, EMPTY_COMPONENT).unwrap();
        assert_eq!(from, Loaded::Cache);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.path().join(MAC_KEY_FILE)), 0o600);
            assert_eq!(mode(&engine.cache_path(&cache, &digest)), 0o600);
        }
        let path = engine.cache_path(&cache, &digest);
        // Garbage in the file: recompiled, and the file is keel's again.
        std::fs::write(&path, b"garbage, or native code someone wrote").unwrap();
        let (_, from) = engine.load_from(&cache, &digest, EMPTY_COMPONENT).unwrap();
        assert_eq!(from, Loaded::Compiled);
        assert_eq!(
            engine
                .load_from(&cache, &digest, EMPTY_COMPONENT)
                .unwrap()
                .1,
            Loaded::Cache
        );
        // A real compiled component without this home's MAC (made by
        // another keel, or by wasmtime directly) is not deserialized.
        let foreign = compile(engine.engine(), EMPTY_COMPONENT)
            .unwrap()
            .serialize()
            .unwrap();
        std::fs::write(&path, &foreign).unwrap();
        assert_eq!(
            engine
                .load_from(&cache, &digest, EMPTY_COMPONENT)
                .unwrap()
                .1,
            Loaded::Compiled
        );
        // A file made for another component does not pass for this one.
        let other = format!("sha256:{}", "ab".repeat(32));
        std::fs::copy(&path, engine.cache_path(&cache, &other)).unwrap();
        assert_eq!(
            engine.load_from(&cache, &other, EMPTY_COMPONENT).unwrap().1,
            Loaded::Compiled
        );
    }
}
