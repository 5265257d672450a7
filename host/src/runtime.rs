//! Runs: one invocation of a plugin export in a fresh `Store`, from a
//! pre-instantiated component, under the plugin's limits, with its WASI
//! context built from the grant alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::OptionalExtension;
use wasmtime::component::{InstancePre, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::actions::ActionsView;
use crate::actions::invoke::Providers;
use crate::bindings::types::{Outgoing, SyncResult, Trigger, TriggerKind};
use crate::bindings::{AgentPre, ChannelPre, ConnectorPre, ProviderPre};
use crate::engine::KeelEngine;
use crate::grant::Grant;
use crate::home::Home;
use crate::limits;
use crate::manifest::{DirAccess, World};
use crate::memory::MemoryView;
use crate::plugins::{self, PluginRow, RunEnd};
pub use crate::run::{Cause, RunReport, SyncCounts};
use crate::run::{Outcome, RunCtx};
use crate::store::{Actor, Store, new_id};

/// Everything one run's `Store` holds.
pub struct RunState {
    /// When the run's wall-clock deadline passes.
    deadline: Instant,
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    host: HostState,
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps linear memory and remembers the peak and whether the cap was hit.
#[derive(Debug, Clone, Copy)]
pub struct MemoryLimiter {
    cap: usize,
    peak: usize,
    hit: bool,
}

/// Most table elements one run may have.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

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

/// The linker every plugin is instantiated against: WASI (whose reach the
/// per-run context decides) and the `keel:host` interfaces.
pub fn linker(engine: &wasmtime::Engine) -> anyhow::Result<Linker<RunState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
    let wired = crate::run::add_to_linker(&mut linker, |s: &mut RunState| &mut s.host.run)
        .and_then(|()| {
            crate::records::add_to_linker(&mut linker, |s: &mut RunState| &mut s.host.run)
        })
        .and_then(|()| crate::llm::add_to_linker(&mut linker, |s: &mut RunState| &mut s.host.run))
        .and_then(|()| {
            crate::memory::add_to_linker(&mut linker, |s: &mut RunState| MemoryView {
                run: &mut s.host.run,
                working: &mut s.host.working,
            })
        })
        .and_then(|()| {
            crate::actions::add_to_linker(&mut linker, |s: &mut RunState| ActionsView {
                run: &mut s.host.run,
                providers: &s.host.nested,
            })
        });
    wired.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(linker)
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

    /// Builds the `Store` for one run: WASI from the grant, the memory cap,
    /// fuel and the deadline.
    pub fn new_store(
        engine: &wasmtime::Engine,
        row: &PluginRow,
        host: HostState,
    ) -> anyhow::Result<wasmtime::Store<RunState>> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for (name, binding) in &row.grant.dirs {
            let perms = match binding.access {
                DirAccess::Read => FsPerms::ReadOnly,
                DirAccess::ReadWrite => FsPerms::ReadWrite,
            };
            wasi.preopened_dir(&binding.path, format!("/{name}"), perms)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| {
                    format!(
                        "cannot open directory `{name}` = {} for {}; rebind it with `keel plugin install --dir {name}=PATH`",
                        binding.path.display(),
                        row.label()
                    )
                })?;
        }
        let limits = &row.manifest.limits;
        let cap = usize::try_from(limits.memory_mb << 20).unwrap_or(usize::MAX);
        let state = RunState {
            deadline: host.run.deadline,
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                cap,
                peak: 0,
                hit: false,
            },
            host,
        };
        let mut store = wasmtime::Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        store
            .set_fuel(limits.fuel)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // Every epoch tick: commit the run's grouped writes (so the store's
        // write lock is never held long while the guest computes) and end
        // the run once its deadline has passed.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            state.host.run.db.flush().map_err(|e| {
                wasmtime::Error::msg(format!("cannot commit the run's writes: {e}"))
            })?;
            if Instant::now() >= state.deadline {
                return Err(Trap::Interrupt.into());
            }
            Ok(UpdateDeadline::Continue(1))
        });
        Ok(store)
    }

    /// Instantiates a plugin in a fresh store and drops it, without calling
    /// anything: the run start `keel bench` measures.
    pub fn start_only(&mut self, db: Store, row: &PluginRow) -> anyhow::Result<Store> {
        let engine = self.engine.engine().clone();
        let prepared = self.prepare(row)?;
        let (pre, grant) = (prepared.pre.clone(), prepared.grant.clone());
        let host = self.host_ctx(db, row, grant, None, None, 0);
        let mut store = Self::new_store(&engine, row, host)?;
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
        let row = installed(&db, plugin)?;
        if let Some(input) = input {
            limits::check_json("input", input)
                .map_err(|e| anyhow::anyhow!("--input for {}: {}", row.label(), e.message()))?;
        }
        let world = row.manifest.plugin.world;
        if world == World::Connector && input.is_some() {
            anyhow::bail!(
                "{} is a connector; it takes no --input (it syncs from its cursor)",
                row.label()
            );
        }
        let delivery = match (world, cause) {
            (World::Channel, Cause::Delivery { send, attempt, .. }) => {
                let found = crate::outbox::load(db.conn(), send)?
                    .filter(crate::outbox::Send::deliverable)
                    .with_context(|| format!("send {send} is not waiting for delivery"))?;
                Some((found, attempt))
            }
            (World::Channel, _) => anyhow::bail!(
                "{} is a channel; `keel up` delivers queued and approved sends through it",
                row.label()
            ),
            (_, Cause::Delivery { .. }) => anyhow::bail!(
                "{} is not a channel plugin; it cannot deliver sends",
                row.label()
            ),
            _ => None,
        };
        // A provider performs one action: named by `invoke`, or by the
        // operator's `--input {"action": NAME, "input": ...}`.
        let (perform, invoke_depth) = match (world, cause) {
            (World::Provider, Cause::Invoke { action, depth, .. }) => (
                Some((action.to_string(), input.unwrap_or("{}").to_string())),
                depth,
            ),
            (World::Provider, Cause::Manual) => {
                let wanted: serde_json::Value = serde_json::from_str(input.unwrap_or("null"))
                    .unwrap_or(serde_json::Value::Null);
                let (Some(action), Some(given)) = (wanted["action"].as_str(), wanted.get("input"))
                else {
                    anyhow::bail!(
                        "{} is a provider; run one of its actions with --input '{{\"action\": NAME, \"input\": {{...}}}}'",
                        row.label()
                    );
                };
                crate::actions::invoke::check_input(&row, action, &given.to_string())
                    .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
                (Some((action.to_string(), given.to_string())), 0)
            }
            (World::Provider, _) => anyhow::bail!(
                "{} is a provider; other plugins call its actions with `invoke`",
                row.label()
            ),
            (_, Cause::Invoke { .. }) => anyhow::bail!(
                "{} is not a provider; it has no actions to invoke",
                row.label()
            ),
            _ => (None, 0),
        };
        let engine = self.engine.engine().clone();
        let prepared = self.prepare(&row)?;
        let (pre, grant) = (prepared.pre.clone(), prepared.grant.clone());
        let run_id = new_id();
        let trigger_json = match cause {
            Cause::Manual => serde_json::json!({"kind": "manual", "input": input}),
            Cause::Job(job) => serde_json::json!({"kind": "schedule", "job": job, "input": input}),
            Cause::Event { job, seq } => {
                serde_json::json!({"kind": "event", "job": job, "event": seq})
            }
            Cause::Delivery { job, send, attempt } => {
                serde_json::json!({"kind": "delivery", "job": job, "outbox": send, "attempt": attempt})
            }
            Cause::Invoke {
                by_run,
                by_plugin,
                action,
                ..
            } => {
                serde_json::json!({"kind": "invoke", "action": action, "by_run": by_run, "by_plugin": by_plugin})
            }
        }
        .to_string();
        let export = match world {
            World::Connector => "sync",
            World::Agent => "handle",
            World::Channel => "deliver",
            World::Provider => "perform",
        };
        let job = match cause {
            Cause::Manual | Cause::Invoke { .. } => None,
            Cause::Job(job) | Cause::Event { job, .. } | Cause::Delivery { job, .. } => Some(job),
        };
        let parent = match cause {
            Cause::Invoke { by_run, .. } => by_run,
            _ => None,
        };
        plugins::start_run(db.conn(), &run_id, &row, export, &trigger_json, job, parent)
            .context("cannot record the run's start")?;
        let cursor = plugins::cursor(db.conn(), &row.id)?;
        let mut db = db;
        db.begin_group();
        let mut host = self.host_ctx(
            db,
            &row,
            grant,
            Some(run_id.clone()),
            Some(trigger_json),
            invoke_depth,
        );
        if let Cause::Invoke { deadline, .. } = cause {
            host.run.deadline = host.run.deadline.min(deadline);
        }
        host.run.caller = caused_by(&host.run.db, cause)?;
        let (mut woken_by, mut woken_record) = match cause {
            Cause::Event { seq, .. } => event_for(&mut host.run, seq)?,
            _ => (None, None),
        };
        let mut store = Self::new_store(&engine, &row, host)?;

        let span = tracing::info_span!("run", plugin = %row.label(), run = %run_id);
        let _guard = span.enter();
        let started = Instant::now();
        let mut sync = None;
        let mut summary = None;
        let mut receipt = None;
        let mut output = None;
        let mut new_cursor = None;
        let call: wasmtime::Result<Result<(), crate::bindings::types::Error>> = match world {
            World::Connector => ConnectorPre::new(pre)
                .and_then(|p| p.instantiate(&mut store))
                .and_then(|c| c.call_sync(&mut store, cursor.as_deref()))
                .map(|r| {
                    r.map(
                        |SyncResult {
                             cursor,
                             created,
                             updated,
                             unchanged,
                         }| {
                            sync = Some(SyncCounts {
                                created,
                                updated,
                                unchanged,
                            });
                            new_cursor = Some(cursor);
                        },
                    )
                }),
            World::Agent => {
                let trigger = Trigger {
                    kind: match cause {
                        Cause::Manual => TriggerKind::Manual,
                        Cause::Event { .. } => TriggerKind::Event,
                        Cause::Job(_) | Cause::Delivery { .. } | Cause::Invoke { .. } => {
                            TriggerKind::Schedule
                        }
                    },
                    input: input.map(str::to_string),
                    event: woken_by.take(),
                    record: woken_record.take(),
                };
                AgentPre::new(pre)
                    .and_then(|p| p.instantiate(&mut store))
                    .and_then(|a| a.call_handle(&mut store, &trigger))
                    .map(|r| r.map(|o| summary = Some(o.summary)))
            }
            World::Channel => {
                let (send, attempt) = delivery.as_ref().context("a channel run without a send")?;
                let message = Outgoing {
                    id: send.id.clone(),
                    channel: send.channel.clone(),
                    message: send.message.clone(),
                    idempotency_key: crate::outbox::key(&send.id),
                    attempt: *attempt,
                };
                ChannelPre::new(pre)
                    .and_then(|p| p.instantiate(&mut store))
                    .and_then(|c| c.call_deliver(&mut store, &message))
                    .map(|r| r.map(|r| receipt = Some(r)))
            }
            World::Provider => {
                let (action, given) = perform
                    .as_ref()
                    .context("a provider run without an action")?;
                ProviderPre::new(pre)
                    .and_then(|p| p.instantiate(&mut store))
                    .and_then(|p| p.call_perform(&mut store, action, given))
                    .map(|r| r.map(|o| output = Some(o)))
            }
        };
        let wall_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let fuel_left = store.get_fuel().unwrap_or(0);
        let limits = row.manifest.limits.clone();
        let state = store.into_data();
        let limiter = state.limiter;
        let HostState {
            run:
                RunCtx {
                    mut db,
                    actor,
                    mut quota,
                    ..
                },
            working: run_memory,
            ..
        } = state.host;
        // A channel's delivery counts once the send is marked delivered,
        // in the run's own last transaction.
        let call = match (call, &delivery, &receipt) {
            (Ok(Ok(())), Some((send, _)), Some(r)) => {
                let serves = row
                    .manifest
                    .channel
                    .as_ref()
                    .map(|c| c.serves.clone())
                    .unwrap_or_default();
                Ok(
                    crate::outbox::record(&mut db, &actor, &serves, send, &r.id, r.duplicate)
                        .map_err(crate::bindings::types::Error::from),
                )
            }
            (call, ..) => call,
        };
        // What the run took from the day's write quota and did not use
        // goes back for the plugin's other runs.
        db.in_call(|conn| Ok(quota.give_back(conn)?))
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("cannot give back the run's unused write quota")?;
        db.end_group()
            .context("cannot commit the run's last writes")?;

        let mut error = None;
        let (outcome, detail) = match call {
            Ok(Ok(())) => (Outcome::Ok, String::new()),
            Ok(Err(e)) => {
                error = Some(error_kind(&e).to_string());
                (Outcome::Error, format!("{} returned {e:?}", row.label()))
            }
            Err(err) => classify(&err, &limiter, &limits, &row.label()),
        };
        let cursor_too_big = new_cursor
            .as_ref()
            .and_then(|c: &Option<String>| c.as_ref())
            .is_some_and(|c| c.len() > limits::MAX_CURSOR_BYTES);
        let (outcome, detail) = if cursor_too_big {
            new_cursor = None;
            (
                Outcome::Error,
                format!(
                    "{} returned a cursor over {} bytes; it was not stored",
                    row.label(),
                    limits::MAX_CURSOR_BYTES
                ),
            )
        } else {
            (outcome, detail)
        };
        let end = RunEnd {
            outcome,
            detail: detail.clone(),
            fuel_consumed: limits.fuel.saturating_sub(fuel_left),
            // What the host held for the run counts as the run's memory.
            memory_peak: (limiter.peak + run_memory.peak()) as u64,
            wall_us,
            cursor: if outcome == Outcome::Ok {
                new_cursor
            } else {
                None
            },
            quota: quota.reached().map(str::to_string),
        };
        plugins::finish_run(db.conn_mut(), &run_id, &row.id, &end)
            .context("cannot record the run's end")?;
        let report = RunReport {
            run: run_id,
            plugin: row.label(),
            outcome,
            detail,
            error,
            sync,
            summary,
            receipt: receipt.map(|r| r.id),
            output,
            fuel_consumed: end.fuel_consumed,
            memory_peak: end.memory_peak,
            wall_us,
        };
        Ok((report, db))
    }
}

/// The installed plugin `id`, or an error that says how to install it.
pub fn installed(db: &Store, id: &str) -> anyhow::Result<PluginRow> {
    plugins::get(db.conn(), id)?.with_context(|| {
        format!("no plugin `{id}` is installed; see `keel plugin list` or install it with `keel plugin install PATH`")
    })
}

impl Runtime {
    fn host_ctx(
        &self,
        db: Store,
        row: &PluginRow,
        grant: Arc<Grant>,
        run: Option<String>,
        trigger: Option<String>,
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
            nested: Nested {
                home: self.home.clone(),
                engine: self.engine.clone(),
                depth: invoke_depth,
            },
        }
    }
}

/// What the `keel:host` interfaces of one run hold: the run's context, its
/// working memory of scope `run`, and what starts the providers it invokes.
pub struct HostState {
    run: RunCtx,
    working: crate::memory::RunMemory,
    nested: Nested,
}

/// Starts a provider's run for an `invoke` from a run `depth` calls deep,
/// on a runtime of its own over the same engine.
struct Nested {
    home: Home,
    engine: Arc<KeelEngine>,
    depth: u32,
}

impl Providers for Nested {
    fn depth(&self) -> u32 {
        self.depth
    }

    fn run(
        &self,
        db: Store,
        plugin: &str,
        cause: Cause<'_>,
        input: &str,
    ) -> anyhow::Result<(RunReport, Store)> {
        Runtime::with_engine(&self.home, self.engine.clone())
            .and_then(|mut runtime| runtime.invoke(db, plugin, cause, Some(input)))
    }
}

/// The plugin and run that caused a run, when another plugin's run did: the
/// invoking run, or the run that scheduled the job.
fn caused_by(db: &Store, cause: Cause<'_>) -> anyhow::Result<Option<(String, Option<String>)>> {
    Ok(match cause {
        Cause::Invoke {
            by_plugin, by_run, ..
        } => Some((by_plugin.to_string(), by_run.map(str::to_string))),
        Cause::Job(job) => db
            .conn()
            .query_row(
                "SELECT r.plugin, r.id FROM jobs j JOIN runs r ON r.id = j.created_by_run WHERE j.id = ?1",
                [job],
                |r| Ok((r.get::<_, String>(0)?, Some(r.get::<_, String>(1)?))),
            )
            .optional()?,
        _ => None,
    })
}

/// The event that woke a plugin, and its record when the plugin may read
/// it (handing the record over is audited like a read).
fn event_for(
    host: &mut RunCtx,
    seq: i64,
) -> anyhow::Result<(
    Option<crate::bindings::types::Event>,
    Option<crate::bindings::types::Record>,
)> {
    let event: Option<(String, Option<String>, String)> = host
        .db
        .conn()
        .query_row(
            "SELECT name, record_id, at FROM events WHERE seq = ?1",
            [seq],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((name, record_id, at)) = event else {
        anyhow::bail!("event {seq} no longer exists");
    };
    let record = match &record_id {
        Some(id) => {
            let grant = host.grant.clone();
            host.db
                .read(&host.actor, "trigger.record", |conn| {
                    let found = crate::records::get(conn, id)
                        .map_err(crate::error::CallError::from)
                        .and_then(|r| {
                            r.ok_or_else(|| {
                                crate::error::CallError::NotFound(format!("no record with id {id}"))
                            })
                        })
                        .and_then(|r| {
                            grant
                                .check_read_record(&r.id, &r.kind)
                                .map(|()| r)
                                .map_err(crate::error::CallError::Denied)
                        });
                    let touched = match &found {
                        Ok(r) => crate::store::Touched::record(
                            &r.id,
                            r.version,
                            format!("event {seq} {name}"),
                        ),
                        Err(_) => crate::store::Touched::detail(format!("event {seq} {name}")),
                    };
                    (found, touched)
                })
                .ok()
        }
        None => None,
    };
    let event = crate::bindings::types::Event {
        seq: u64::try_from(seq).unwrap_or(0),
        name,
        record_id,
        at,
    };
    Ok((Some(event), record.map(Into::into)))
}

fn error_kind(e: &crate::bindings::types::Error) -> &'static str {
    use crate::bindings::types::Error as E;
    match e {
        E::Denied(_) => "denied",
        E::NotFound(_) => "not-found",
        E::Conflict(_) => "conflict",
        E::Invalid(_) => "invalid",
        E::Limit(_) => "limit",
        E::Unavailable(_) => "unavailable",
        E::Internal(_) => "internal",
    }
}

/// Names what ended a trapped run.
fn classify(
    err: &wasmtime::Error,
    limiter: &MemoryLimiter,
    limits: &crate::manifest::Limits,
    label: &str,
) -> (Outcome, String) {
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => (
            Outcome::Deadline,
            format!(
                "{label} ran past its {} ms deadline and was stopped",
                limits.timeout_ms
            ),
        ),
        Some(Trap::OutOfFuel) => (
            Outcome::Fuel,
            format!(
                "{label} used all of its {} fuel and was stopped",
                limits.fuel
            ),
        ),
        _ if limiter.hit => (
            Outcome::Memory,
            format!(
                "{label} needed more than its {} MiB memory limit and was stopped",
                limits.memory_mb
            ),
        ),
        _ => {
            let text = format!("{err:?}");
            let first = text.lines().take(3).collect::<Vec<_>>().join(" | ");
            (Outcome::Trap, format!("{label} trapped: {first}"))
        }
    }
}
