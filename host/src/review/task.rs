//! Tasks the supervisor blocked because their claims kept expiring:
//! approve reopens one, reject fails it.

use rusqlite::Connection;

use super::Provenance;
use super::{Decision, Item, ReviewKind, missing};
use crate::error::CallError;
use crate::store::Actor;

pub(super) fn task_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let title: Option<String> = r.get(3)?;
    let why: Option<String> = r.get(4)?;
    Ok(Item {
        id: r.get(0)?,
        kind: ReviewKind::BlockedTask,
        plugin: r.get(1)?,
        created_at: r.get(2)?,
        summary: format!("{}: {}", title.unwrap_or_default(), why.unwrap_or_default()),
        message: None,
        original_message: None,
        provenance: Provenance::default(),
    })
}

/// Tasks the supervisor blocked because their claims kept expiring.
pub(super) const TASK_QUERY: &str =
    "SELECT id, created_by, updated_at, json_extract(body, '$.title'),
    json_extract(body, '$.escalated') FROM records
    WHERE kind = 'core/task' AND json_extract(body, '$.state') = 'blocked'
      AND json_extract(body, '$.escalated') IS NOT NULL";

/// A blocked task: approve reopens it (its claim count starts again),
/// reject marks it failed.
pub(super) fn decide(
    conn: &Connection,
    operator: &Actor,
    item: &Item,
    decision: &Decision,
) -> Result<(), CallError> {
    let current = crate::records::get(conn, &item.id)?.ok_or_else(|| missing(&item.id))?;
    let mut body: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&current.body).map_err(|e| CallError::Internal(e.to_string()))?;
    let (state, note) = match decision {
        Decision::Approve => ("open", "reopened by the operator".to_string()),
        Decision::Reject { reason } => (
            "failed",
            format!(
                "failed by the operator{}",
                reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        ),
        Decision::Edit { .. } => {
            return Err(CallError::Invalid(format!(
                "{} is a blocked task; approve it to reopen it or reject it to fail it",
                item.id
            )));
        }
    };
    body.remove("escalated");
    body.insert("state".into(), serde_json::json!(state));
    if state == "open" {
        body.insert("claims".into(), serde_json::json!(0));
    }
    let prov = crate::records::Provenance {
        note: Some(note),
        ..Default::default()
    };
    let text = serde_json::Value::Object(body).to_string();
    crate::records::update_body(conn, operator, &current, &text, &prov)?;
    Ok(())
}
