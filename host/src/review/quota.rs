//! Plugins whose runs reached a write quota: approving or rejecting
//! dismisses the plugin's item (its quota runs leave the queue together).

use rusqlite::Connection;

use super::Provenance;
use super::{Decision, Item, ReviewKind, missing};
use crate::error::CallError;

/// Plugins whose runs reached a write quota: one item per plugin, its
/// latest such run, until the operator dismisses it.
pub(super) const QUOTA_QUERY: &str = "SELECT id, plugin, max(ended_at), quota, count(*) FROM runs
    WHERE quota IS NOT NULL AND quota_reviewed_at IS NULL";

pub(super) fn quota_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let run: String = r.get(0)?;
    let quota: String = r.get(3)?;
    let runs: i64 = r.get(4)?;
    let (name, _) = quota.split_once(' ').unwrap_or((&quota, ""));
    Ok(Item {
        id: run.clone(),
        kind: ReviewKind::Quota,
        plugin: r.get(1)?,
        created_at: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
        summary: format!(
            "reached {quota} in run {run}{}: its further writes were refused; raise limits.{name} in its manifest if that was expected",
            if runs > 1 {
                format!(" (and {} runs before)", runs - 1)
            } else {
                String::new()
            }
        ),
        message: None,
        original_message: None,
        provenance: Provenance {
            run: Some(run),
            ..Provenance::default()
        },
    })
}

/// Applies `decision` to quota `item`: seen, whichever way.
pub(super) fn decide(
    conn: &Connection,
    item: &Item,
    decision: &Decision,
    at: &str,
) -> Result<(), CallError> {
    match decision {
        Decision::Approve | Decision::Reject { .. } => {
            let n = crate::plugins::dismiss_quota(conn, &item.plugin, at)?;
            if n > 0 {
                Ok(())
            } else {
                Err(missing(&item.id))
            }
        }
        Decision::Edit { .. } => Err(CallError::Invalid(format!(
            "{} is a quota item; approve or reject it to dismiss it, and raise the plugin's limits in its manifest if needed",
            item.id
        ))),
    }
}
