//! One module per WIT interface, each implementing the generated `Host`
//! trait on [`HostCtx`], the per-run state a plugin's host calls see.

mod config;
mod log;

use wasmtime::component::{HasData, Linker};

use crate::bindings::types;
use crate::error::CallError;
use crate::grant::Grant;
use crate::manifest::Policy;
use crate::records::Record;
use crate::store::Actor;

/// What one run's host calls work with.
pub struct HostCtx {
    pub db: crate::store::Store,
    pub actor: Actor,
    pub grant: std::sync::Arc<Grant>,
    pub policy: Policy,
    /// `id@version`, for log lines.
    pub label: String,
    /// Where providers invoked from this run are loaded from.
    pub home: crate::home::Home,
    pub engine: std::sync::Arc<crate::engine::KeelEngine>,
    /// How many `invoke` calls deep this run is (0 for a run nobody
    /// invoked).
    pub invoke_depth: u32,
    /// The run's wall-clock deadline; a model call gives up before it.
    pub deadline: std::time::Instant,
    /// Working memory of scope `run`.
    pub run_memory: crate::memory::RunMemory,
    /// The plugin and run that caused this run, when another plugin's run
    /// did (`config.caller`).
    pub caller: Option<(String, Option<String>)>,
    /// The run's writes against its plugin's write quotas.
    pub quota: crate::quota::WriteQuota,
    /// Log lines the run has written.
    pub log_lines: u32,
}

/// Selects [`HostCtx`] out of the store data for the generated linker code.
pub struct HostCtxData;

impl HasData for HostCtxData {
    type Data<'a> = &'a mut HostCtx;
}

/// Adds every `keel:host` import to `linker`.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut HostCtx,
) -> wasmtime::Result<()> {
    crate::bindings::Connector::add_to_linker::<T, HostCtxData>(linker, get)
}

impl HostCtx {
    /// Takes one write from the run's write quotas; `limit` once one is
    /// reached. The store is asked once per block of writes.
    pub(crate) fn take_write(&mut self) -> Result<(), CallError> {
        if self.quota.take_held() {
            return Ok(());
        }
        let HostCtx { db, quota, .. } = self;
        db.in_call(|conn| quota.take(conn))
    }
}

impl types::Host for HostCtx {}

impl From<CallError> for types::Error {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Denied(m) => types::Error::Denied(m),
            CallError::NotFound(m) => types::Error::NotFound(m),
            CallError::Conflict(m) => types::Error::Conflict(m),
            CallError::Invalid(m) => types::Error::Invalid(m),
            CallError::Limit(m) => types::Error::Limit(m),
            CallError::Unavailable(m) => types::Error::Unavailable(m),
            CallError::Internal(m) => types::Error::Internal(m),
        }
    }
}

impl From<Record> for types::Record {
    fn from(r: Record) -> Self {
        types::Record {
            id: r.id,
            kind: r.kind,
            body: r.body,
            version: u64::try_from(r.version).unwrap_or(0),
            created_at: r.created_at,
            updated_at: r.updated_at,
            created_by: r.created_by,
            updated_by: r.updated_by,
        }
    }
}

/// Turns the write path's result into what the guest receives.
pub(crate) fn reply<T, U: From<T>>(
    r: Result<T, CallError>,
) -> wasmtime::Result<Result<U, types::Error>> {
    Ok(r.map(U::from).map_err(types::Error::from))
}
