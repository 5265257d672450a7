//! Runs: one invocation of a plugin export in a fresh `Store`, from a
//! pre-instantiated component, under the plugin's limits, with its WASI
//! context built from the grant alone. [`Runtime::invoke`] reads as the
//! steps of a run: [`work`] (what the run is asked to do), [`state`] (its
//! store), [`wake`] (why it runs), [`call`] (the export), [`end`] (its
//! outcome, recorded).

mod call;
mod end;
mod state;
mod wake;
mod work;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use wasmtime::component::{InstancePre, Linker};

use crate::engine::KeelEngine;
use crate::grant::Grant;
use crate::home::Home;
use crate::plugins::{self, PluginRow};
use crate::run::RunCtx;
pub use crate::run::{Cause, RunReport, SyncCounts};
use crate::store::{Actor, Store, new_id};
pub use state::{HostState, RunState, linker};

/// A plugin ready to run: its row and its pre-instantiated component.
struct Prepared {
    row: PluginRow,
    pre: InstancePre<RunState>,
    /// Shared by every run of this plugin in this process.
    grant: Arc<Grant>,
}

/// Owns the engine and linker and the prepared plugins of one process.
pub struct Runtime {
    /// Shared by the runtimes of one process (one per worker thread).
    engine: Arc<KeelEngine>,
    linker: Linker<RunState>,
    home: Home,
    prepared: HashMap<String, Prepared>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("home", &self.home).finish()
    }
}

impl Runtime {
    pub fn new(home: &Home) -> anyhow::Result<Runtime> {
        Runtime::with_engine(home, Arc::new(KeelEngine::new()?))
    }

    /// A runtime on an engine another runtime already uses.
    pub fn with_engine(home: &Home, engine: Arc<KeelEngine>) -> anyhow::Result<Runtime> {
        let linker = linker(engine.engine())?;
        Ok(Runtime {
            engine,
            linker,
            home: home.clone(),
            prepared: HashMap::new(),
        })
    }

    pub fn engine(&self) -> &KeelEngine {
        &self.engine
    }

    pub fn linker(&self) -> &Linker<RunState> {
        &self.linker
    }

    /// Loads (from the compiled cache when warm) and pre-instantiates an
    /// installed plugin, once per process.
    fn prepare(&mut self, row: &PluginRow) -> anyhow::Result<&Prepared> {
        let fresh = self
            .prepared
            .get(&row.id)
            .is_none_or(|p| p.row.digest != row.digest);
        if fresh {
            let path = self.home.component_path(&row.id);
            let bytes = std::fs::read(&path).with_context(|| {
                format!(
                    "cannot read {}'s component at {}; reinstall it with `keel plugin install`",
                    row.label(),
                    path.display()
                )
            })?;
            // The file in the home must still be what was installed (and
            // what the compiled cache is keyed by).
            let found = keel_registry::Digest::of(&bytes).to_string();
            if found != row.digest {
                anyhow::bail!(
                    "{}'s component at {} is {found}, not the {} that was installed; reinstall it with `keel plugin install`",
                    row.label(),
                    path.display(),
                    row.digest
                );
            }
            let component = self
                .engine
                .load(&self.home.cache_dir(), &row.digest, &bytes)
                .with_context(|| format!("cannot load {}", row.label()))?;
            let pre = self
                .linker
                .instantiate_pre(&component)
                .map_err(|e| anyhow::anyhow!("cannot link {}: {e}", row.label()))?;
            self.prepared.insert(
                row.id.clone(),
                Prepared {
                    row: row.clone(),
                    pre,
                    grant: Arc::new(row.grant.clone()),
                },
            );
        }
        Ok(&self.prepared[&row.id])
    }
    /// Instantiates a plugin in a fresh store and drops it, without calling
    /// anything: the run start `keel bench` measures.
    pub fn start_only(&mut self, db: Store, row: &PluginRow) -> anyhow::Result<Store> {
        let engine = self.engine.engine().clone();
        let prepared = self.prepare(row)?;
        let (pre, grant) = (prepared.pre.clone(), prepared.grant.clone());
        let host = self.host_ctx(db, row, grant, (None, None), 0);
        let mut store = state::new_store(&engine, row, host)?;
        pre.instantiate(&mut store)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(store.into_data().host.run.db)
    }

    /// Runs `plugin` once: `sync` for a connector, `handle` for an agent
    /// (with `input` as a manual trigger). The run is recorded whatever
    /// its outcome; the store is handed back.
    pub fn run(
        &mut self,
        db: Store,
        plugin: &str,
        input: Option<&str>,
    ) -> anyhow::Result<(RunReport, Store)> {
        self.invoke(db, plugin, Cause::Manual, input)
    }
    /// Runs `plugin` once for `cause`; see [`Runtime::run`].
    pub fn invoke(
        &mut self,
        db: Store,
        plugin: &str,
        cause: Cause<'_>,
        input: Option<&str>,
    ) -> anyhow::Result<(RunReport, Store)> {
        let row = plugins::installed(&db, plugin)?;
        let work = work::work_for(&db, &row, cause, input)?;
        let engine = self.engine.engine().clone();
        let prepared = self.prepare(&row)?;
        let (pre, grant) = (prepared.pre.clone(), prepared.grant.clone());
        let run_id = new_id();
        let trigger_json = cause.describe(input);
        plugins::start_run(
            db.conn(),
            &run_id,
            &row,
            work.export(),
            &trigger_json,
            cause.job(),
            cause.parent_run(),
        )
        .context("cannot record the run's start")?;
        let cursor = plugins::cursor(db.conn(), &row.id)?;
        let mut db = db;
        db.begin_group();
        let ids = (Some(run_id.clone()), Some(trigger_json));
        let mut host = self.host_ctx(db, &row, grant, ids, cause.depth());
        host.sync = crate::sync_state::SyncRun::for_export(work.export());
        if let Cause::Invoke { deadline, .. } = cause {
            host.run.deadline = host.run.deadline.min(deadline);
        }
        host.run.caller = wake::caused_by(&host.run.db, cause)?;
        let (event, record) = match cause {
            Cause::Event { seq, .. } => wake::event_for(&mut host.run, seq)?,
            _ => (None, None),
        };
        let mut store = state::new_store(&engine, &row, host)?;

        let span = tracing::info_span!("run", plugin = %row.label(), run = %run_id, world = row.manifest.plugin.world.as_str());
        let _guard = span.enter();
        let started = Instant::now();
        let given = call::Given {
            cause,
            input,
            cursor,
            event,
            record,
        };
        let called = call::call(&mut store, pre, &work, given)?;
        let spent = end::Spent {
            wall_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            fuel_left: store.get_fuel().unwrap_or(0),
        };
        end::finish(store.into_data(), &row, run_id, &work, called, spent)
    }
}

impl Runtime {
    fn host_ctx(
        &self,
        db: Store,
        row: &PluginRow,
        grant: Arc<Grant>,
        (run, trigger): (Option<String>, Option<String>),
        invoke_depth: u32,
    ) -> HostState {
        let run = RunCtx {
            db,
            actor: Actor {
                plugin: row.id.clone(),
                version: Some(row.version.clone()),
                digest: Some(row.digest.clone()),
                run_id: run,
                trigger,
            },
            grant,
            policy: row.manifest.policy.clone(),
            label: row.label(),
            home: self.home.clone(),
            deadline: Instant::now() + Duration::from_millis(row.manifest.limits.timeout_ms),
            quota: crate::quota::WriteQuota::new(&row.id, &row.label(), &row.manifest.limits),
            caller: None,
            log_lines: 0,
        };
        HostState {
            run,
            working: crate::memory::RunMemory::default(),
            nested: state::Nested {
                home: self.home.clone(),
                engine: self.engine.clone(),
                depth: invoke_depth,
            },
            sync: crate::sync_state::SyncRun::for_export("start"),
        }
    }
}
