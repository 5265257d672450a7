//! Calling a run's export on its instance: what the guest returned, and
//! what the run keeps of it.

use wasmtime::component::InstancePre;

use super::state::RunState;
use super::work::Work;
use crate::bindings::types::{self, Outgoing, SyncResult, Trigger, TriggerKind};
use crate::bindings::{AgentPre, ChannelPre, ConnectorPre, ProviderPre};
use crate::run::{Cause, SyncCounts};

/// What a run's export gave back.
#[derive(Default)]
pub(super) struct Called {
    /// A connector's counts.
    pub sync: Option<SyncCounts>,
    /// A connector's new cursor.
    pub cursor: Option<Option<String>>,
    /// An agent's one-line summary.
    pub summary: Option<String>,
    /// A channel's receipt.
    pub receipt: Option<crate::bindings::types::Receipt>,
    /// A provider's output.
    pub output: Option<String>,
}

/// The guest's result: `Err` for a trap, `Ok(Err)` for its own error.
pub(super) type CallResult = wasmtime::Result<Result<(), types::Error>>;

/// What a run was handed: its trigger's input, the cursor a connector
/// syncs from, and the event (and record) that woke an agent.
pub(super) struct Given<'a> {
    pub cause: Cause<'a>,
    pub input: Option<&'a str>,
    pub cursor: Option<String>,
    pub event: Option<types::Event>,
    pub record: Option<types::Record>,
}

/// Instantiates `pre` in `store` and calls the export `work` names.
pub(super) fn call(
    store: &mut wasmtime::Store<RunState>,
    pre: InstancePre<RunState>,
    work: &Work,
    given: Given<'_>,
) -> anyhow::Result<(CallResult, Called)> {
    let mut got = Called::default();
    let result = match work {
        Work::Sync => ConnectorPre::new(pre)
            .and_then(|p| p.instantiate(&mut *store))
            .and_then(|c| c.call_sync(&mut *store, given.cursor.as_deref()))
            .map(|r| r.map(|synced| keep_sync(&mut got, synced))),
        Work::Handle => {
            let trigger = Trigger {
                kind: match given.cause {
                    Cause::Manual => TriggerKind::Manual,
                    Cause::Event { .. } => TriggerKind::Event,
                    Cause::Job(_) | Cause::Delivery { .. } | Cause::Invoke { .. } => {
                        TriggerKind::Schedule
                    }
                },
                input: given.input.map(str::to_string),
                event: given.event,
                record: given.record,
            };
            AgentPre::new(pre)
                .and_then(|p| p.instantiate(&mut *store))
                .and_then(|a| a.call_handle(&mut *store, &trigger))
                .map(|r| r.map(|o| got.summary = Some(o.summary)))
        }
        Work::Deliver { send, attempt } => {
            let message = Outgoing {
                id: send.id.clone(),
                channel: send.channel.clone(),
                message: send.message.clone(),
                idempotency_key: crate::outbox::key(&send.id),
                attempt: *attempt,
            };
            ChannelPre::new(pre)
                .and_then(|p| p.instantiate(&mut *store))
                .and_then(|c| c.call_deliver(&mut *store, &message))
                .map(|r| r.map(|r| got.receipt = Some(r)))
        }
        Work::Perform { action, input } => ProviderPre::new(pre)
            .and_then(|p| p.instantiate(&mut *store))
            .and_then(|p| p.call_perform(&mut *store, action, input))
            .map(|r| r.map(|o| got.output = Some(o))),
    };
    Ok((result, got))
}

fn keep_sync(got: &mut Called, synced: SyncResult) {
    let SyncResult {
        cursor,
        created,
        updated,
        unchanged,
    } = synced;
    got.sync = Some(SyncCounts {
        created,
        updated,
        unchanged,
    });
    got.cursor = Some(cursor);
}
