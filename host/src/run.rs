//! A run's context: what every `keel:host` interface's host calls share
//! (the store, the plugin's actor and grant, the deadline, the write
//! quota), why the run happens and what it did. Each capability implements
//! its interface over this context or a narrow view holding it (the
//! `records`, `memory`, `llm` and `actions` folders); this module implements
//! the run's own small interfaces, `types`, `config` and `log`.

mod config;
mod log;

use std::time::Instant;

use serde::Serialize;
use wasmtime::component::{HasData, Linker};

use crate::bindings::types;
use crate::error::CallError;
use crate::grant::Grant;
use crate::manifest::Policy;
use crate::store::{Actor, Touched};

/// What every host call of one run works with.
pub struct RunCtx {
    pub db: crate::store::Store,
    pub actor: Actor,
    pub grant: std::sync::Arc<Grant>,
    pub policy: Policy,
    /// `id@version`, for log lines.
    pub label: String,
    /// The operator's home (the models' configuration lives there).
    pub home: crate::home::Home,
    /// The run's wall-clock deadline; a model call gives up before it.
    pub deadline: Instant,
    /// The plugin and run that caused this run, when another plugin's run
    /// did (`config.caller`).
    pub caller: Option<(String, Option<String>)>,
    /// The run's writes against its plugin's write quotas.
    pub quota: crate::quota::WriteQuota,
    /// Log lines the run has written.
    pub log_lines: u32,
}

/// Selects the [`RunCtx`] out of the store data for the generated linker
/// code.
pub struct RunData;

impl HasData for RunData {
    type Data<'a> = &'a mut RunCtx;
}

/// Adds the run's own interfaces (`types`, `config`, `log`) to `linker`.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut RunCtx,
) -> wasmtime::Result<()> {
    types::add_to_linker::<T, RunData>(linker, get)?;
    crate::bindings::config::add_to_linker::<T, RunData>(linker, get)?;
    crate::bindings::log::add_to_linker::<T, RunData>(linker, get)
}

impl RunCtx {
    /// Takes one write from the run's write quotas; `limit` once one is
    /// reached. The store is asked once per block of writes.
    pub(crate) fn take_write(&mut self) -> Result<(), CallError> {
        if self.quota.take_held() {
            return Ok(());
        }
        let RunCtx { db, quota, .. } = self;
        db.in_call(|conn| quota.take(conn))
    }

    /// Audits a refused call; the error for the guest.
    pub(crate) fn refuse(
        &mut self,
        action: &str,
        reason: String,
        touched: Touched,
    ) -> types::Error {
        let actor = self.actor.clone();
        let r: Result<(), CallError> =
            self.db
                .write(&actor, action, None, Err((reason, touched)), |_| {
                    (Ok(()), Touched::default())
                });
        r.err()
            .map(types::Error::from)
            .unwrap_or_else(|| types::Error::Internal("a refused call was allowed".into()))
    }

    /// Audits a failed call; the error for the guest.
    pub(crate) fn fail(&mut self, action: &str, error: CallError, detail: String) -> types::Error {
        let actor = self.actor.clone();
        let r: Result<(), CallError> = self.db.write(&actor, action, None, Ok(()), |_| {
            (Err(error), Touched::detail(detail))
        });
        r.err()
            .map(types::Error::from)
            .unwrap_or_else(|| types::Error::Internal("a failed call was recorded as done".into()))
    }
}

impl types::Host for RunCtx {}

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

/// Turns the write path's result into what the guest receives.
pub(crate) fn reply<T, U: From<T>>(
    r: Result<T, CallError>,
) -> wasmtime::Result<Result<U, types::Error>> {
    Ok(r.map(U::from).map_err(types::Error::from))
}

crate::store::stored_names! {
    /// How a run ended, as the `runs` table and reports name it.
    pub enum Outcome ("a run outcome") {
        /// Still running (or its process died before recording its end).
        Running = "running",
        Ok = "ok",
        /// The plugin returned an error.
        Error = "error",
        Trap = "trap",
        /// It ran past its deadline.
        Deadline = "deadline",
        /// It used all of its fuel.
        Fuel = "fuel",
        /// It needed more than its memory limit.
        Memory = "memory",
        /// Its process died while it ran; the supervisor closed it.
        Lost = "lost",
    }
}

/// Why a run happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause<'a> {
    /// The operator ran it (`keel run`).
    Manual,
    /// A durable job with this id fired.
    Job(&'a str),
    /// An event job: the plugin subscribes to event `seq`.
    Event { job: &'a str, seq: i64 },
    /// A delivery job: a channel plugin delivers outbox entry `send`
    /// (attempt `attempt`, from 1).
    Delivery {
        job: &'a str,
        send: &'a str,
        attempt: u32,
    },
    /// Another run called one of this provider's actions (`invoke`),
    /// `depth` calls deep. The provider's time counts against its
    /// caller's: it runs no later than the caller's `deadline`.
    Invoke {
        by_run: Option<&'a str>,
        by_plugin: &'a str,
        action: &'a str,
        depth: u32,
        deadline: Instant,
    },
}

impl Cause<'_> {
    /// The trigger as the run records it (`runs.trigger_json`).
    pub fn describe(&self, input: Option<&str>) -> String {
        match *self {
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
        .to_string()
    }

    /// The job the run executes, if a job caused it.
    pub fn job(&self) -> Option<&str> {
        match *self {
            Cause::Manual | Cause::Invoke { .. } => None,
            Cause::Job(job) | Cause::Event { job, .. } | Cause::Delivery { job, .. } => Some(job),
        }
    }

    /// The run that invoked this one.
    pub fn parent_run(&self) -> Option<&str> {
        match *self {
            Cause::Invoke { by_run, .. } => by_run,
            _ => None,
        }
    }

    /// How many `invoke` calls deep the run is.
    pub fn depth(&self) -> u32 {
        match *self {
            Cause::Invoke { depth, .. } => depth,
            _ => 0,
        }
    }
}

/// What a run did, as the operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run: String,
    pub plugin: String,
    pub outcome: Outcome,
    pub detail: String,
    /// For outcome `error`: the plugin's error variant (`denied`,
    /// `unavailable`, ...), which decides whether a job is retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A connector's counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncCounts>,
    /// An agent's one-line summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// A channel's receipt for what it delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    /// A provider's output (JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// A connector's source has more to bring in: it said so, or it was
    /// stopped after checkpointing. `keel up` queues the next sync at once.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
    pub fuel_consumed: u64,
    pub memory_peak: u64,
    pub wall_us: u64,
    /// Bytes its network requests and connections moved in.
    pub bytes_in: u64,
    /// Bytes they moved out.
    pub bytes_out: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncCounts {
    pub created: u32,
    pub updated: u32,
    pub unchanged: u32,
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    #[test]
    fn an_outcome_fills_its_column_in_text_output() {
        assert_eq!(format!("{:<8}|", Outcome::Ok), "ok      |");
        assert_eq!(format!("{:<3}|", Outcome::Deadline), "deadline|");
        assert_eq!("lost".parse::<Outcome>(), Ok(Outcome::Lost));
        assert!("done".parse::<Outcome>().is_err());
    }
}
