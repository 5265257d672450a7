//! Run start: a fresh `Store` and instance of the `bench` plugin through
//! keel (WASI from the grant, limiter, fuel, deadline) against a bare
//! wasmtime linker instantiating the same component on the same engine.

use std::time::{Duration, Instant};

use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::embedded::BENCH;
use crate::home::Home;
use crate::runtime::Runtime;
use crate::store::Store;

/// Run start p50 in µs, through keel and bare.
pub(super) struct Starts {
    pub keel: f64,
    pub bare: f64,
}

struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
    http: wasmtime_wasi_http::WasiHttpCtx,
    hooks: NoNetwork,
}

/// `wasi:http` linked (the bench plugin imports it) but sending nothing.
struct NoNetwork;

impl wasmtime_wasi_http::WasiHttpHooks for NoNetwork {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

impl wasmtime_wasi_http::WasiHttpView for Bare {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
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
pub(super) fn time_starts(
    runtime: &mut Runtime,
    mut db: Store,
    row: &crate::plugins::PluginRow,
    samples: usize,
) -> anyhow::Result<(Vec<Duration>, Store)> {
    db = runtime.start_only(db, row)?;
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        db = runtime.start_only(db, row)?;
        times.push(t.elapsed());
    }
    Ok((times, db))
}

pub(super) fn p50_us(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}

/// Times `samples` starts of the installed `bench` plugin through keel,
/// then as many of the same component on a bare linker.
pub(super) fn measure(
    home: &Home,
    runtime: &mut Runtime,
    db: Store,
    samples: usize,
) -> anyhow::Result<(Starts, Store)> {
    let row = crate::plugins::installed(&db, "bench")?;
    let (keel_samples, db) = time_starts(runtime, db, &row, samples)?;
    let bare_samples = bare_starts(home, runtime, samples)?;
    Ok((
        Starts {
            keel: p50_us(keel_samples),
            bare: p50_us(bare_samples),
        },
        db,
    ))
}

/// Defines the component's `keel:host` imports as functions that fail,
/// leaving WASI's as `wasmtime-wasi` defines them. (Stubbing every unknown
/// import would shadow WASI interfaces the component imports at a newer
/// patch version than the linker names, with resources that do not match.)
fn stub_keel_imports(
    linker: &mut Linker<Bare>,
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
) -> anyhow::Result<()> {
    use wasmtime::component::types::ComponentItem;
    for (name, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if !name.starts_with("keel:host/") {
            continue;
        }
        let mut stubs = linker.instance(name).map_err(|e| anyhow::anyhow!("{e}"))?;
        for (export, ty) in instance.exports(engine) {
            if let ComponentItem::ComponentFunc(_) = ty.ty {
                stubs
                    .func_new(export, |_, _, _, _| {
                        Err(wasmtime::Error::msg("not linked on the bare linker"))
                    })
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
    }
    Ok(())
}

/// The same component on a bare linker and the same engine: `samples`
/// instantiations after a first one that is not counted.
fn bare_starts(home: &Home, runtime: &Runtime, samples: usize) -> anyhow::Result<Vec<Duration>> {
    let engine = runtime.engine().engine().clone();
    let component = runtime.engine().load(
        &home.cache_dir(),
        &keel_registry::Digest::of(BENCH.component).to_string(),
        BENCH.component,
    )?;
    let mut linker: Linker<Bare> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    stub_keel_imports(&mut linker, &engine, &component)?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut bare_samples = Vec::with_capacity(samples);
    for i in 0..=samples {
        let t = Instant::now();
        let mut store = wasmtime::Store::new(
            &engine,
            Bare {
                wasi: WasiCtxBuilder::new().build(),
                table: ResourceTable::new(),
                http: wasmtime_wasi_http::WasiHttpCtx::new(),
                hooks: NoNetwork,
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
    Ok(bare_samples)
}
