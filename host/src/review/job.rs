//! Jobs that were dead-lettered, and jobs `keel up` stopped (a plugin
//! waking itself, a cascade past the depth limit): approve runs one
//! (again), reject dismisses it.

use rusqlite::Connection;

use super::Provenance;
use super::{Decision, Item, ReviewKind, missing};
use crate::error::CallError;
use crate::jobs::{self, JobState};

pub(super) fn job_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let attempts: i64 = r.get(4)?;
    let error: Option<String> = r.get(3)?;
    let state: JobState = r.get(6)?;
    let (kind, summary) = if state == JobState::Stopped {
        (ReviewKind::StoppedCascade, error.unwrap_or_default())
    } else {
        (
            ReviewKind::DeadJob,
            format!(
                "dead after {attempts} attempt{}: {}",
                if attempts == 1 { "" } else { "s" },
                error.unwrap_or_default()
            ),
        )
    };
    Ok(Item {
        id: r.get(0)?,
        kind,
        plugin: r.get(1)?,
        created_at: r.get(2)?,
        summary,
        message: None,
        original_message: None,
        provenance: Provenance {
            run: r.get(5)?,
            ..Provenance::default()
        },
    })
}

pub(super) const JOB_COLUMNS: &str = "j.id, j.plugin, j.updated_at, j.last_error, j.attempts,
    COALESCE(j.created_by_run, e.run_id), j.state";
pub(super) const JOB_FROM: &str = "jobs j LEFT JOIN events e ON e.seq = j.event_seq";

/// Applies `decision` to job `item`. Approving a stopped job runs it as
/// the start of a new chain: the operator is now its cause.
pub(super) fn decide(
    conn: &Connection,
    item: &Item,
    decision: &Decision,
    at: &str,
) -> Result<(), CallError> {
    let changed = match decision {
        Decision::Approve => jobs::enqueue::retry_reviewed(conn, &item.id, at)?,
        Decision::Reject { .. } => jobs::enqueue::dismiss_reviewed(conn, &item.id, at)?,
        Decision::Edit { .. } => {
            return Err(CallError::Invalid(format!(
                "{} is a {}; approve it to run it (again) or reject it to dismiss it",
                item.id,
                item.kind.as_str().replace('-', " ")
            )));
        }
    };
    if changed {
        Ok(())
    } else {
        Err(missing(&item.id))
    }
}
