//! A run's end: the channel's delivery settled, unused quota given back,
//! the outcome named, the run recorded and reported.

use anyhow::Context;
use wasmtime::Trap;

use super::call::{CallResult, Called};
use super::state::{HostState, MemoryLimiter, RunState};
use super::work::Work;
use crate::limits;
use crate::plugins::{self, PluginRow, RunEnd};
use crate::run::{Outcome, RunCtx, RunReport};
use crate::store::Store;
use crate::sync_state::SyncRun;

/// What the run cost, measured as its store is dropped.
pub(super) struct Spent {
    pub wall_us: u64,
    pub fuel_left: u64,
}

/// Records the end of run `run_id` of `row` and reports it; the store is
/// handed back.
pub(super) fn finish(
    state: RunState,
    row: &PluginRow,
    run_id: String,
    work: &Work,
    (result, called): (CallResult, Called),
    spent: Spent,
) -> anyhow::Result<(RunReport, Store)> {
    let limits = &row.manifest.limits;
    let RunState {
        limiter,
        host,
        table,
        net,
        ..
    } = state;
    // Dropping the run's resources ends its open requests, so every
    // attempt is audited below with the bytes it moved.
    drop(table);
    let HostState {
        run:
            RunCtx {
                mut db,
                actor,
                mut quota,
                ..
            },
        working: run_memory,
        sync,
        ..
    } = host;
    net.write(&mut db, &actor, true)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot audit the run's network requests")?;
    let result = settle(&mut db, &actor, row, work, result, &called);
    // What the run took from the day's write quota and did not use
    // goes back for the plugin's other runs.
    db.in_call(|conn| Ok(quota.give_back(conn)?))
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot give back the run's unused write quota")?;
    db.end_group()
        .context("cannot commit the run's last writes")?;

    let (outcome, detail, error) = outcome_of(&result, &limiter, row);
    let (cursor, outcome, detail) = kept_cursor(called.cursor, outcome, detail, row);
    let more = sync.more(outcome);
    let detail = with_progress(detail, &sync, more);
    let end = RunEnd {
        outcome,
        detail: detail.clone(),
        fuel_consumed: limits.fuel.saturating_sub(spent.fuel_left),
        // What the host held for the run counts as the run's memory.
        memory_peak: (limiter.peak + run_memory.peak()) as u64,
        wall_us: spent.wall_us,
        cursor: if outcome == Outcome::Ok { cursor } else { None },
        quota: quota.reached().map(str::to_string),
        bytes: net.totals(),
    };
    plugins::finish_run(db.conn_mut(), &run_id, &row.id, &end)
        .context("cannot record the run's end")?;
    let report = RunReport {
        run: run_id,
        plugin: row.label(),
        outcome,
        detail,
        error,
        sync: called.sync,
        summary: called.summary,
        receipt: called.receipt.map(|r| r.id),
        output: called.output,
        more,
        fuel_consumed: end.fuel_consumed,
        memory_peak: end.memory_peak,
        wall_us: spent.wall_us,
        bytes_in: end.bytes.0,
        bytes_out: end.bytes.1,
    };
    Ok((report, db))
}

/// A channel's delivery counts once the send is marked delivered, in the
/// run's own last transaction.
fn settle(
    db: &mut Store,
    actor: &crate::store::Actor,
    row: &PluginRow,
    work: &Work,
    result: CallResult,
    called: &Called,
) -> CallResult {
    match (result, work, &called.receipt) {
        (Ok(Ok(())), Work::Deliver { send, .. }, Some(r)) => {
            let serves = row
                .manifest
                .channel
                .as_ref()
                .map(|c| c.serves.clone())
                .unwrap_or_default();
            Ok(
                crate::outbox::record(db, actor, &serves, send, &r.id, r.duplicate)
                    .map_err(crate::bindings::types::Error::from),
            )
        }
        (result, ..) => result,
    }
}

/// The cursor a connector returned, unless it is too big to store (which
/// makes the run an error).
fn kept_cursor(
    cursor: Option<Option<String>>,
    outcome: Outcome,
    detail: String,
    row: &PluginRow,
) -> (Option<Option<String>>, Outcome, String) {
    let too_big = cursor
        .as_ref()
        .and_then(|c| c.as_ref())
        .is_some_and(|c| c.len() > limits::MAX_CURSOR_BYTES);
    if !too_big {
        return (cursor, outcome, detail);
    }
    let detail = format!(
        "{} returned a cursor over {} bytes; it was not stored",
        row.label(),
        limits::MAX_CURSOR_BYTES
    );
    (None, Outcome::Error, detail)
}

/// A stopped sync's detail says how far it got: its checkpoints, and that
/// the next run goes on from the last one.
fn with_progress(detail: String, sync: &SyncRun, more: bool) -> String {
    let n = sync.checkpoints();
    match (n, more, detail.is_empty()) {
        (0, false, _) | (_, false, true) => detail,
        (0, true, _) => "it has more to do; the next sync goes on".into(),
        (_, true, true) => {
            format!("it has more to do after {n} checkpoints; the next sync goes on")
        }
        (_, true, false) => {
            format!("{detail} after {n} checkpoints; the next sync goes on from the last")
        }
        (_, false, false) => {
            format!("{detail} ({n} checkpoints kept; the next sync goes on from the last)")
        }
    }
}

/// The outcome, its detail, and for a plugin's own error its variant.
fn outcome_of(
    result: &CallResult,
    limiter: &MemoryLimiter,
    row: &PluginRow,
) -> (Outcome, String, Option<String>) {
    match result {
        Ok(Ok(())) => (Outcome::Ok, String::new(), None),
        Ok(Err(e)) => (
            Outcome::Error,
            format!("{} returned {e:?}", row.label()),
            Some(error_kind(e).to_string()),
        ),
        Err(err) => {
            let (outcome, detail) = classify(err, limiter, &row.manifest.limits, &row.label());
            (outcome, detail, None)
        }
    }
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
