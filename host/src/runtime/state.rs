//! What one run's wasmtime `Store` holds: WASI from the grant, the memory
//! limiter, and the `keel:host` interfaces' state, each reached through its
//! capability's view.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::Runtime;
use crate::actions::ActionsView;
use crate::actions::invoke::Providers;
use crate::engine::KeelEngine;
use crate::home::Home;
use crate::manifest::DirAccess;
use crate::memory::MemoryView;
use crate::plugins::PluginRow;
use crate::run::{Cause, RunCtx, RunReport};
use crate::store::Store;
use crate::sync_state::{SyncRun, SyncStateView};

/// Everything one run's `Store` holds.
pub struct RunState {
    /// When the run's wall-clock deadline passes.
    pub(super) deadline: Instant,
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    pub(super) host: HostState,
    pub(super) http: WasiHttpCtx,
    /// The send hook every `wasi:http` request goes through.
    pub(super) sender: crate::net::Sender,
    /// The run's network attempts, until they are audited.
    pub(super) net: crate::net::NetLog,
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RunState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.sender,
        }
    }
}

/// Caps linear memory and remembers the peak and whether the cap was hit.
#[derive(Debug, Clone, Copy)]
pub struct MemoryLimiter {
    pub(super) cap: usize,
    pub(super) peak: usize,
    pub(super) hit: bool,
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

/// The linker every plugin is instantiated against: WASI (whose reach the
/// per-run context decides) and the `keel:host` interfaces.
pub fn linker(engine: &wasmtime::Engine) -> anyhow::Result<Linker<RunState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Linked for every plugin; install refuses the import to one with no
    // HTTP endpoint, and the sender refuses whatever is not an endpoint.
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let wired = crate::run::add_to_linker(&mut linker, |s: &mut RunState| &mut s.host.run)
        .and_then(|()| {
            crate::records::add_to_linker(&mut linker, |s: &mut RunState| &mut s.host.run)
        })
        .and_then(|()| crate::llm::add_to_linker(&mut linker, |s: &mut RunState| &mut s.host.run))
        .and_then(|()| {
            crate::secrets::add_to_linker(&mut linker, |s: &mut RunState| &mut s.host.run)
        })
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
                sync: &mut s.host.sync,
            })
        })
        .and_then(|()| {
            crate::sync_state::add_to_linker(&mut linker, |s: &mut RunState| SyncStateView {
                run: &mut s.host.run,
                sync: &s.host.sync,
            })
        });
    wired.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(linker)
}

/// Builds the `Store` for one run: WASI from the grant, the memory cap,
/// fuel and the deadline.
pub(super) fn new_store(
    engine: &wasmtime::Engine,
    row: &PluginRow,
    host: HostState,
) -> anyhow::Result<wasmtime::Store<RunState>> {
    let net = crate::net::NetLog::default();
    let mut wasi = WasiCtxBuilder::new();
    // Sockets reach only the grant's endpoints (each connect checked and
    // audited); a plugin without endpoints has no TCP and no name lookup.
    // Name lookup is the system's: a plugin with endpoints can look up any
    // name, though it can connect only to its endpoints' addresses.
    let reach = std::sync::Arc::new(crate::net::Reach::new(
        &row.label(),
        &host.run.grant.endpoints,
        net.clone(),
    ));
    wasi.allow_tcp(reach.any())
        .allow_udp(false)
        .allow_ip_name_lookup(reach.any())
        .socket_addr_check(reach.check());
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
    // Runs are synchronous, one per thread: a file operation may block this
    // thread rather than hop to tokio's blocking pool and back, which made
    // each stat of a large folder's walk cost about 0.2 ms.
    wasi.allow_blocking_current_thread(true);
    let limits = &row.manifest.limits;
    let cap = usize::try_from(limits.memory_mb << 20).unwrap_or(usize::MAX);
    let policy = net_policy(row, &host, net.clone())?;
    let mut http = WasiHttpCtx::new();
    http.set_field_size_limit(HTTP_FIELDS_BYTES);
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
        http,
        sender: crate::net::Sender(Arc::new(policy)),
        net,
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
        let run = &mut state.host.run;
        state
            .net
            .write(&mut run.db, &run.actor, false)
            .map_err(|e| wasmtime::Error::msg(format!("cannot audit the run's requests: {e}")))?;
        run.db
            .flush()
            .map_err(|e| wasmtime::Error::msg(format!("cannot commit the run's writes: {e}")))?;
        if Instant::now() >= state.deadline {
            return Err(Trap::Interrupt.into());
        }
        Ok(UpdateDeadline::Continue(1))
    });
    Ok(store)
}

/// Most bytes of headers (in memory) one `wasi:http` fields resource holds.
const HTTP_FIELDS_BYTES: usize = 64 * 1024;

/// What the run's requests are checked against: the grant's endpoints, its
/// secrets' values (read only when it has some), the home's TLS roots, the
/// deadline.
fn net_policy(
    row: &PluginRow,
    host: &HostState,
    log: crate::net::NetLog,
) -> anyhow::Result<crate::net::Policy> {
    let run = &host.run;
    let grant = &run.grant;
    // Header templates exist only on HTTP: a plugin without an HTTP
    // endpoint has its secrets read only when it asks (`secrets.get`).
    let http = grant
        .endpoints
        .values()
        .any(|e| matches!(e, crate::manifest::Endpoint::Http { .. }));
    let secrets = match http {
        false => Default::default(),
        true => grant
            .secrets
            .iter()
            .map(|(name, stored)| {
                let value = crate::secrets::reveal(run.home.root(), run.db.conn(), stored).ok();
                (name.clone(), value)
            })
            .collect(),
    };
    // Loading the roots is skipped for a plugin that cannot reach anything.
    let tls = match grant.endpoints.is_empty() {
        true => None,
        false => Some(
            run.home
                .cache::<crate::net::TlsCache>()
                .get(run.home.root())?,
        ),
    };
    Ok(crate::net::Policy {
        label: row.label(),
        endpoints: grant.endpoints.clone(),
        secrets,
        tls,
        deadline: run.deadline,
        body_cap: crate::net::MAX_BODY_BYTES,
        log,
    })
}

/// What the `keel:host` interfaces of one run hold: the run's context, its
/// working memory of scope `run`, what starts the providers it invokes,
/// and a connector's sync progress.
pub struct HostState {
    pub(super) run: RunCtx,
    pub(super) working: crate::memory::RunMemory,
    pub(super) nested: Nested,
    pub(super) sync: SyncRun,
}

/// Starts a provider's run for an `invoke` from a run `depth` calls deep,
/// on a runtime of its own over the same engine.
pub(super) struct Nested {
    pub(super) home: Home,
    pub(super) engine: Arc<KeelEngine>,
    pub(super) depth: u32,
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
