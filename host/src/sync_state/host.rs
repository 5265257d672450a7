//! `keel:host/sync-state`: a connector's keyed state ([`crate::sync_state`]).
//! Like working memory it is the plugin's own bookkeeping: refused and
//! failed calls are audited, the rest are not.

use crate::bindings::sync_state::{Host, Page};
use crate::bindings::types;
use crate::error::CallError;
use crate::run::RunCtx;
use crate::store::Touched;
use crate::sync_state::{self, SyncRun};

/// What `keel:host/sync-state`'s host calls see: the run's context and
/// whether it is a connector's sync.
pub struct SyncStateView<'a> {
    pub run: &'a mut RunCtx,
    pub sync: &'a SyncRun,
}

struct SyncStateData;

impl wasmtime::component::HasData for SyncStateData {
    type Data<'a> = SyncStateView<'a>;
}

/// Adds `keel:host/sync-state` to `linker`, over a [`SyncStateView`] of
/// each run.
pub fn add_to_linker<T: 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> SyncStateView<'_>,
) -> wasmtime::Result<()> {
    crate::bindings::sync_state::add_to_linker::<T, SyncStateData>(linker, get)
}

impl SyncStateView<'_> {
    /// Runs `call` if the run may use sync state; a refusal or failure is
    /// audited as `action` and becomes the guest's error.
    fn serve<T>(
        &mut self,
        action: &str,
        call: impl FnOnce(&mut RunCtx) -> Result<T, CallError>,
    ) -> wasmtime::Result<Result<T, types::Error>> {
        if let Err(reason) = self.sync.permit(action, &self.run.label) {
            return Ok(Err(self.run.refuse(action, reason, Touched::default())));
        }
        Ok(match call(&mut *self.run) {
            Ok(value) => Ok(value),
            Err(e @ CallError::Denied(_)) => {
                Err(self
                    .run
                    .refuse(action, e.message().to_string(), Touched::default()))
            }
            Err(e) => {
                let detail = e.message().to_string();
                Err(self.run.fail(action, e, detail))
            }
        })
    }
}

impl Host for SyncStateView<'_> {
    #[tracing::instrument(level = "debug", name = "sync-state.get", skip_all)]
    fn get(
        &mut self,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<String>>, types::Error>> {
        self.serve("sync-state.get", |run| {
            sync_state::get(run.db.conn(), &run.actor.plugin, &keys)
        })
    }

    #[tracing::instrument(level = "debug", name = "sync-state.set", skip_all)]
    fn set(
        &mut self,
        entries: Vec<(String, Option<String>)>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        self.serve("sync-state.set", |run| {
            let plugin = run.actor.plugin.clone();
            run.db
                .in_call(|conn| sync_state::set(conn, &plugin, &entries))
        })
    }

    #[tracing::instrument(level = "debug", name = "sync-state.scan", skip_all)]
    fn scan(
        &mut self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<Page, types::Error>> {
        self.serve("sync-state.scan", |run| {
            let page = sync_state::scan(
                run.db.conn(),
                &run.actor.plugin,
                &prefix,
                after.as_deref(),
                limit,
            )?;
            Ok(Page {
                entries: page.entries,
                next: page.next,
            })
        })
    }
}
