//! Plugin-registered actions. A `provider` plugin lists the actions it
//! offers in its manifest (`[[provides]]`: name, description, JSON Schema
//! input); `keel actions list` shows them beside the core actions. An agent
//! whose grant lists one calls it with `actions.invoke`: the input is
//! checked against the schema, then the provider runs, under its own grant,
//! as a run linked to the caller's (`parent_run`); the caller's `invoke` is
//! audited with the provider's run, and the provider's own calls are audited
//! under its run.

use std::ops::ControlFlow;

use serde::Serialize;

use crate::actions::CoreAction;
use crate::actions::WriteOptions;
use crate::error::CallError;
use crate::limits;
use crate::manifest::World;
use crate::plugins::{self, PluginRow};
use crate::run::{Cause, Outcome, RunCtx, RunReport};
use crate::store::{Actor, Store, Touched};

/// How deep `invoke` calls may nest (a provider invoking a provider...).
pub const MAX_INVOKE_DEPTH: u32 = 4;

/// Time allowed for loading a provider (compiling it on first use) on top
/// of its caller's deadline when the caller's job lease is extended.
const PREPARE_ALLOWANCE: std::time::Duration = std::time::Duration::from_secs(60);

/// One action a provider offers, as `keel actions list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Provided {
    /// `<plugin>/<action>`.
    pub name: String,
    /// `id@version` of the provider.
    pub provider: String,
    pub description: String,
    /// What the action does with the provider's grant.
    pub needs: Vec<String>,
    /// The JSON Schema of its input.
    pub input: serde_json::Value,
}

/// Every action the installed providers offer.
pub fn provided(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<Provided>> {
    Ok(plugins::list(conn)?
        .into_iter()
        .flat_map(|p| {
            let label = p.label();
            p.manifest
                .provides
                .iter()
                .map(|a| Provided {
                    name: format!("{}/{}", p.id, a.name),
                    provider: label.clone(),
                    description: a.description.clone(),
                    needs: a.needs.clone(),
                    input: a.input.clone(),
                })
                .collect::<Vec<_>>()
        })
        .collect())
}

/// Checks `input` against the schema of provider `row`'s action `action`.
pub fn check_input(row: &PluginRow, action: &str, input: &str) -> Result<(), CallError> {
    let Some(spec) = row.manifest.provides.iter().find(|a| a.name == action) else {
        let offered: Vec<&str> = row
            .manifest
            .provides
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        return Err(CallError::NotFound(format!(
            "{} provides no action `{action}`; it provides: {}",
            row.label(),
            offered.join(", ")
        )));
    };
    let value: serde_json::Value = serde_json::from_str(input)
        .map_err(|e| CallError::Invalid(format!("the input is not JSON: {e}")))?;
    let validator = jsonschema::validator_for(&spec.input).map_err(|e| {
        CallError::Internal(format!(
            "the schema of {}/{action} does not compile: {e}",
            row.id
        ))
    })?;
    if let Err(e) = validator.validate(&value) {
        let at = e.instance_path().to_string();
        let at = if at.is_empty() {
            "the input".to_string()
        } else {
            format!("input{at}")
        };
        return Err(CallError::Invalid(format!(
            "{at} does not match the schema of {}/{action}: {e}",
            row.id
        )));
    }
    Ok(())
}

/// Starts the provider runs `actions.invoke` asks for (the runtime
/// implements it).
pub trait Providers {
    /// How many `invoke` calls deep the calling run is (0 for a run nobody
    /// invoked).
    fn depth(&self) -> u32;
    /// Runs provider `plugin` for `cause` with `input` on the lent store
    /// `db`, and gives the store back with the run's report.
    fn run(
        &self,
        db: Store,
        plugin: &str,
        cause: Cause<'_>,
        input: &str,
    ) -> anyhow::Result<(RunReport, Store)>;
}

/// `actions.invoke` for the run `ctx`: checks, runs the provider, records.
pub fn call(
    ctx: &mut RunCtx,
    providers: &dyn Providers,
    action: &str,
    input: &str,
    opts: &WriteOptions,
) -> Result<String, CallError> {
    let actor = ctx.actor.clone();
    let (row, name) = match admit(ctx, providers, &actor, action, input, opts) {
        ControlFlow::Continue(provider) => provider,
        ControlFlow::Break(answer) => return answer,
    };
    let report = run_provider(ctx, providers, &actor, &row, name, input)?;
    ctx.db.begin_group();
    let (result, detail) = outcome(action, report);
    let key = opts.idempotency_key.as_deref();
    ctx.db
        .write::<String, _>(&actor, CoreAction::Invoke.as_str(), key, Ok(()), |_| {
            (result, Touched::detail(detail))
        })
}

/// Everything checked before the provider runs: sizes, the grant, the
/// provider and its input schema, the depth; a retried idempotency key is
/// answered from the first call. Continues with the provider and the
/// action's name within it, or breaks with the (audited) answer.
fn admit<'a>(
    ctx: &mut RunCtx,
    providers: &dyn Providers,
    actor: &Actor,
    action: &'a str,
    input: &str,
    opts: &WriteOptions,
) -> ControlFlow<Result<String, CallError>, (PluginRow, &'a str)> {
    if let Err(e) = check_sizes(action, input, opts) {
        return ControlFlow::Break(Err(ctx.db.refuse(actor, CoreAction::Invoke.as_str(), e)));
    }
    if let Err(reason) = ctx.grant.check_invoke(action) {
        return ControlFlow::Break(ctx.db.write::<String, _>(
            actor,
            CoreAction::Invoke.as_str(),
            None,
            Err((reason, Touched::detail(action))),
            |_| unreachable!("refused before the change"),
        ));
    }
    let refuse = |db: &mut Store, e: CallError| {
        let detail = Touched::detail(action);
        ControlFlow::Break(db.write::<String, _>(
            actor,
            CoreAction::Invoke.as_str(),
            None,
            Ok(()),
            |_| (Err(e), detail),
        ))
    };
    let provider = action.split_once('/').and_then(|(plugin, name)| {
        plugins::get(ctx.db.conn(), plugin)
            .ok()
            .flatten()
            .filter(|p| p.manifest.plugin.world == World::Provider)
            .map(|p| (p, name))
    });
    let Some((row, name)) = provider else {
        let e = CallError::NotFound(format!(
            "no provider offers `{action}`; see `keel actions list`"
        ));
        return refuse(&mut ctx.db, e);
    };
    if let Err(e) = check_input(&row, name, input) {
        return refuse(&mut ctx.db, e);
    }
    if providers.depth() >= MAX_INVOKE_DEPTH {
        let e = CallError::Limit(format!(
            "`{action}` would be {} invoke calls deep; at most {MAX_INVOKE_DEPTH}",
            providers.depth() + 1
        ));
        return refuse(&mut ctx.db, e);
    }
    let Some(key) = opts.idempotency_key.as_deref() else {
        return ControlFlow::Continue((row, name));
    };
    match ctx.db.key_used(&actor.plugin, key) {
        Ok(false) => ControlFlow::Continue((row, name)),
        Err(e) => ControlFlow::Break(Err(e.into())),
        // A retry: the write path replays the first output and audits it.
        Ok(true) => ControlFlow::Break(ctx.db.write::<String, _>(
            actor,
            CoreAction::Invoke.as_str(),
            Some(key),
            Ok(()),
            |_| {
                (
                    Err(CallError::Internal(
                        "an idempotent replay reached its change".into(),
                    )),
                    Touched::detail(action),
                )
            },
        )),
    }
}

/// The bounds on what the caller passes, checked before anything else.
fn check_sizes(action: &str, input: &str, opts: &WriteOptions) -> Result<(), CallError> {
    limits::check_len("action", action, limits::MAX_NAME_BYTES)?;
    limits::check_json("input", input)?;
    match &opts.idempotency_key {
        Some(key) => limits::check_len("idempotency key", key, limits::MAX_NAME_BYTES),
        None => Ok(()),
    }
}

/// Runs provider `row`'s action `name` as a nested run on this run's
/// connection: commits what this run wrote so far, lends the store to the
/// nested run, and takes it back (opening it again if the nested run could
/// not give it back). The inner error is a provider that could not start.
fn run_provider(
    ctx: &mut RunCtx,
    providers: &dyn Providers,
    actor: &Actor,
    row: &PluginRow,
    name: &str,
    input: &str,
) -> Result<anyhow::Result<RunReport>, CallError> {
    ctx.db.flush()?;
    let path = ctx.db.path().to_path_buf();
    let stand_in = Store::detached().map_err(|e| CallError::Internal(e.to_string()))?;
    let db = std::mem::replace(&mut ctx.db, stand_in);
    let cause = Cause::Invoke {
        by_run: actor.run_id.as_deref(),
        by_plugin: &actor.plugin,
        action: name,
        depth: providers.depth() + 1,
        deadline: ctx.deadline,
    };
    // The caller waits on the provider: its job stays its worker's for
    // as long as the caller may run, whatever loading the provider takes.
    if let Some(run) = &actor.run_id {
        let left = ctx
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        let until = chrono::Utc::now()
            + chrono::Duration::from_std(left + crate::jobs::LEASE_MARGIN + PREPARE_ALLOWANCE)
                .unwrap_or(chrono::TimeDelta::MAX);
        crate::jobs::extend_for_run(db.conn(), run, until)?;
    }
    match providers.run(db, &row.id, cause, input) {
        Ok((report, db)) => {
            ctx.db = db;
            Ok(Ok(report))
        }
        Err(e) => {
            // The nested run did not give the store back: open it again.
            ctx.db = Store::open(&path).map_err(|e| CallError::Unavailable(e.to_string()))?;
            Ok(Err(e))
        }
    }
}

/// What the caller of `action` receives from the provider's run, and the
/// audit detail.
fn outcome(action: &str, report: anyhow::Result<RunReport>) -> (Result<String, CallError>, String) {
    match report {
        Err(e) => (
            Err(CallError::Unavailable(format!(
                "{action} could not start: {e:#}"
            ))),
            action.to_string(),
        ),
        Ok(report) => {
            let detail = format!(
                "{action}: {} run {} {}",
                report.plugin, report.run, report.outcome
            );
            let result = match (report.outcome, report.output) {
                (Outcome::Ok, Some(output)) => {
                    limits::check_json("output", &output).map(|()| output)
                }
                (Outcome::Error, _) => Err(same_kind(
                    report.error.as_deref(),
                    format!("{action} failed: {}", report.detail),
                )),
                _ => Err(CallError::Unavailable(format!(
                    "{action} did not finish: {}",
                    report.detail
                ))),
            };
            (result, detail)
        }
    }
}

/// The caller gets the provider's error as the same variant.
fn same_kind(kind: Option<&str>, message: String) -> CallError {
    match kind {
        Some("denied") => CallError::Denied(message),
        Some("not-found") => CallError::NotFound(message),
        Some("conflict") => CallError::Conflict(message),
        Some("invalid") => CallError::Invalid(message),
        Some("limit") => CallError::Limit(message),
        Some("unavailable") => CallError::Unavailable(message),
        _ => CallError::Internal(message),
    }
}
