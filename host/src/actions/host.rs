//! `keel:host/actions`: every change goes through [`crate::actions`], which
//! checks the grant and uses the one write path.

use crate::actions::CoreAction;
use crate::actions::invoke::Providers;
use crate::actions::{self, Caller, WriteOptions};
use crate::bindings::actions::WriteOptions as WitWriteOptions;
use crate::bindings::actions::{Created, Host, SendReceipt, SendState, TaskEnd};
use crate::bindings::types::{self, Identity};
use crate::error::CallError;
use crate::run::{RunCtx, reply};
use crate::store::Store;

/// What `keel:host/actions`' host calls see: the run's context and what
/// starts the providers its `invoke` calls run.
pub struct ActionsView<'a> {
    pub run: &'a mut RunCtx,
    pub providers: &'a dyn Providers,
    /// A connector's sync progress, for `checkpoint` and `more-to-do`.
    pub sync: &'a mut crate::sync_state::SyncRun,
}

struct ActionsData;

impl wasmtime::component::HasData for ActionsData {
    type Data<'a> = ActionsView<'a>;
}

/// Adds `keel:host/actions` to `linker`, over an [`ActionsView`] of each
/// run.
pub fn add_to_linker<T: 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> ActionsView<'_>,
) -> wasmtime::Result<()> {
    crate::bindings::actions::add_to_linker::<T, ActionsData>(linker, get)
}

impl ActionsView<'_> {
    /// The store and the caller, borrowed apart so an action can use both.
    fn parts(&mut self) -> (&mut Store, Caller<'_>) {
        let run = &mut *self.run;
        let caller = Caller {
            actor: &run.actor,
            grant: &run.grant,
            policy: &run.policy,
        };
        (&mut run.db, caller)
    }

    /// Runs one write `action` against the run's write quotas: refused
    /// with `limit` (and audited) once a quota is reached; a call that
    /// fails, or by `wrote` writes nothing, takes nothing from them.
    fn counted<T>(
        &mut self,
        action: &str,
        call: impl FnOnce(&mut Store, Caller<'_>) -> Result<T, CallError>,
        wrote: impl FnOnce(&T) -> bool,
    ) -> Result<T, CallError> {
        if let Err(e) = self.run.take_write() {
            return Err(self.run.db.refuse(&self.run.actor, action, e));
        }
        let (db, caller) = self.parts();
        let result = call(db, caller);
        if !result.as_ref().is_ok_and(wrote) {
            self.run.quota.refund();
        }
        result
    }
}

fn options(o: WitWriteOptions) -> WriteOptions {
    WriteOptions {
        idempotency_key: o.idempotency_key,
        sources: o.sources,
        confidence: o.confidence,
        note: o.note,
    }
}

impl From<actions::Created> for Created {
    fn from(c: actions::Created) -> Self {
        Created {
            record: c.record.into(),
            existed: c.existed,
        }
    }
}

impl From<actions::SendReceipt> for SendReceipt {
    fn from(r: actions::SendReceipt) -> Self {
        SendReceipt {
            id: r.id,
            state: match r.state {
                crate::outbox::SendState::Queued => SendState::Queued,
                _ => SendState::NeedsReview,
            },
        }
    }
}

fn version(v: u64) -> Result<i64, CallError> {
    i64::try_from(v).map_err(|_| CallError::Invalid(format!("version {v} is out of range")))
}

impl Host for ActionsView<'_> {
    #[tracing::instrument(level = "debug", name = "actions.create", skip_all)]
    fn create(
        &mut self,
        kind: String,
        body: String,
        identity: Option<Identity>,
        opts: WitWriteOptions,
    ) -> wasmtime::Result<Result<Created, types::Error>> {
        let identity = identity
            .as_ref()
            .map(|i| (i.source.as_str(), i.external_id.as_str()));
        let opts = options(opts);
        reply(self.counted(
            CoreAction::Create.as_str(),
            |db, caller| actions::create(db, caller, &kind, &body, identity, &opts),
            |c| !c.existed,
        ))
    }

    #[tracing::instrument(level = "debug", name = "actions.update", skip_all)]
    fn update(
        &mut self,
        id: String,
        expected_version: u64,
        body: String,
        opts: WitWriteOptions,
    ) -> wasmtime::Result<Result<types::Record, types::Error>> {
        let opts = options(opts);
        let result = version(expected_version).and_then(|v| {
            self.counted(
                CoreAction::Update.as_str(),
                |db, caller| actions::update(db, caller, &id, v, &body, &opts),
                |_| true,
            )
        });
        reply(result)
    }

    #[tracing::instrument(level = "debug", name = "actions.link", skip_all)]
    fn link(
        &mut self,
        from: String,
        to: String,
        rel: String,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        reply(self.counted(
            CoreAction::Link.as_str(),
            |db, caller| actions::link(db, caller, &from, &to, &rel),
            |_| true,
        ))
    }

    #[tracing::instrument(level = "debug", name = "actions.schedule", skip_all)]
    fn schedule(
        &mut self,
        plugin: String,
        input: String,
        at: Option<String>,
        opts: WitWriteOptions,
    ) -> wasmtime::Result<Result<String, types::Error>> {
        if let Err(e) = self.run.quota.take_job() {
            return reply::<String, String>(Err(self.run.db.refuse(
                &self.run.actor,
                CoreAction::Schedule.as_str(),
                e,
            )));
        }
        let opts = options(opts);
        reply(self.counted(
            CoreAction::Schedule.as_str(),
            |db, caller| actions::schedule(db, caller, &plugin, &input, at.as_deref(), &opts),
            |_| true,
        ))
    }

    #[tracing::instrument(level = "debug", name = "actions.claim", skip_all)]
    fn claim(
        &mut self,
        task: String,
        ttl_ms: u32,
    ) -> wasmtime::Result<Result<types::Record, types::Error>> {
        reply(self.counted(
            CoreAction::Claim.as_str(),
            |db, caller| crate::actions::tasks::claim(db, caller, &task, ttl_ms),
            |_| true,
        ))
    }

    #[tracing::instrument(level = "debug", name = "actions.complete", skip_all)]
    fn complete(
        &mut self,
        task: String,
        end: TaskEnd,
        result: String,
        opts: WitWriteOptions,
    ) -> wasmtime::Result<Result<types::Record, types::Error>> {
        let end = match end {
            TaskEnd::Done => crate::actions::tasks::End::Done,
            TaskEnd::Failed => crate::actions::tasks::End::Failed,
            TaskEnd::Blocked => crate::actions::tasks::End::Blocked,
        };
        let opts = options(opts);
        reply(self.counted(
            CoreAction::Complete.as_str(),
            |db, caller| crate::actions::tasks::complete(db, caller, &task, end, &result, &opts),
            |_| true,
        ))
    }

    #[tracing::instrument(level = "debug", name = "actions.release", skip_all)]
    fn release(&mut self, task: String) -> wasmtime::Result<Result<types::Record, types::Error>> {
        reply(self.counted(
            CoreAction::Release.as_str(),
            |db, caller| crate::actions::tasks::release(db, caller, &task),
            |_| true,
        ))
    }

    #[tracing::instrument(level = "debug", name = "actions.invoke", skip_all)]
    fn invoke(
        &mut self,
        action: String,
        input: String,
        opts: WitWriteOptions,
    ) -> wasmtime::Result<Result<String, types::Error>> {
        reply(crate::actions::invoke::call(
            self.run,
            self.providers,
            &action,
            &input,
            &options(opts),
        ))
    }

    #[tracing::instrument(level = "debug", name = "actions.send", skip_all)]
    fn send(
        &mut self,
        channel: String,
        message: String,
        opts: WitWriteOptions,
    ) -> wasmtime::Result<Result<SendReceipt, types::Error>> {
        let opts = options(opts);
        reply(self.counted(
            CoreAction::Send.as_str(),
            |db, caller| actions::send(db, caller, &channel, &message, &opts),
            |_| true,
        ))
    }

    #[tracing::instrument(level = "debug", name = "actions.checkpoint", skip_all)]
    fn checkpoint(&mut self, cursor: String) -> wasmtime::Result<Result<(), types::Error>> {
        reply(crate::sync_state::checkpoint(self.run, self.sync, &cursor))
    }

    #[tracing::instrument(level = "debug", name = "actions.more-to-do", skip_all)]
    fn more_to_do(&mut self) -> wasmtime::Result<Result<(), types::Error>> {
        reply(crate::sync_state::more_to_do(self.run, self.sync))
    }
}
