//! What a run is asked to do, checked before anything is recorded: the
//! export it calls and what that export is given.

use anyhow::Context;

use crate::manifest::World;
use crate::plugins::PluginRow;
use crate::run::Cause;
use crate::store::Store;

/// The export a run calls, with what it is given.
pub(super) enum Work {
    /// A connector syncs from its cursor.
    Sync,
    /// An agent handles a trigger.
    Handle,
    /// A channel delivers one send (attempt `attempt`, from 1).
    Deliver {
        send: crate::outbox::Send,
        attempt: u32,
    },
    /// A provider performs one action on its input (JSON).
    Perform { action: String, input: String },
}

impl Work {
    /// The export's name, as the run records it.
    pub(super) fn export(&self) -> &'static str {
        match self {
            Work::Sync => "sync",
            Work::Handle => "handle",
            Work::Deliver { .. } => "deliver",
            Work::Perform { .. } => "perform",
        }
    }
}

/// What `row`'s run for `cause` does, or why it cannot run: a connector
/// takes no input, only a channel delivers (and only sends waiting for
/// delivery), only a provider is invoked.
pub(super) fn work_for(
    db: &Store,
    row: &PluginRow,
    cause: Cause<'_>,
    input: Option<&str>,
) -> anyhow::Result<Work> {
    if let Some(input) = input {
        crate::limits::check_json("input", input)
            .map_err(|e| anyhow::anyhow!("--input for {}: {}", row.label(), e.message()))?;
    }
    match (row.manifest.plugin.world, cause) {
        (World::Connector, _) if input.is_some() => anyhow::bail!(
            "{} is a connector; it takes no --input (it syncs from its cursor)",
            row.label()
        ),
        (World::Channel, Cause::Delivery { send, attempt, .. }) => {
            let send = crate::outbox::load(db.conn(), send)?
                .filter(crate::outbox::Send::deliverable)
                .with_context(|| format!("send {send} is not waiting for delivery"))?;
            Ok(Work::Deliver { send, attempt })
        }
        (World::Channel, _) => anyhow::bail!(
            "{} is a channel; `keel up` delivers queued and approved sends through it",
            row.label()
        ),
        (_, Cause::Delivery { .. }) => anyhow::bail!(
            "{} is not a channel plugin; it cannot deliver sends",
            row.label()
        ),
        (World::Provider, cause) => perform(row, cause, input),
        (_, Cause::Invoke { .. }) => anyhow::bail!(
            "{} is not a provider; it has no actions to invoke",
            row.label()
        ),
        (World::Connector, _) => Ok(Work::Sync),
        (World::Agent, _) => Ok(Work::Handle),
    }
}

/// A provider performs one action: named by `invoke`, or by the operator's
/// `--input {"action": NAME, "input": ...}`.
fn perform(row: &PluginRow, cause: Cause<'_>, input: Option<&str>) -> anyhow::Result<Work> {
    match cause {
        Cause::Invoke { action, .. } => Ok(Work::Perform {
            action: action.to_string(),
            input: input.unwrap_or("{}").to_string(),
        }),
        Cause::Manual => {
            let wanted: serde_json::Value =
                serde_json::from_str(input.unwrap_or("null")).unwrap_or(serde_json::Value::Null);
            let (Some(action), Some(given)) = (wanted["action"].as_str(), wanted.get("input"))
            else {
                anyhow::bail!(
                    "{} is a provider; run one of its actions with --input '{{\"action\": NAME, \"input\": {{...}}}}'",
                    row.label()
                );
            };
            crate::actions::invoke::check_input(row, action, &given.to_string())
                .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
            Ok(Work::Perform {
                action: action.to_string(),
                input: given.to_string(),
            })
        }
        _ => anyhow::bail!(
            "{} is a provider; other plugins call its actions with `invoke`",
            row.label()
        ),
    }
}
