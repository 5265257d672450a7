//! Record versions written with low confidence: approve keeps one, edit
//! writes the operator's body as the next version, reject restores the
//! version before it.

use rusqlite::params;

use rusqlite::Connection;

use super::Provenance;
use super::{Decision, Item, ReviewKind, missing};
use crate::error::CallError;
use crate::store::Actor;

/// A version's item id: `<record id>@<version>`.
pub(super) fn version_id(record: &str, version: i64) -> String {
    format!("{record}@{version}")
}

pub(super) fn version_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let record: String = r.get(0)?;
    let version: i64 = r.get(1)?;
    let kind: String = r.get(2)?;
    let actor: String = r.get(3)?;
    let confidence: Option<f64> = r.get(6)?;
    let sources: String = r.get(7)?;
    Ok(Item {
        id: version_id(&record, version),
        kind: ReviewKind::LowConfidence,
        plugin: actor.split('@').next().unwrap_or_default().to_string(),
        created_at: r.get(4)?,
        summary: format!(
            "{kind} {record} v{version} by {actor}, confidence {:.2}",
            confidence.unwrap_or(0.0)
        ),
        message: Some(r.get(9)?),
        original_message: None,
        provenance: Provenance {
            run: r.get(5)?,
            sources: serde_json::from_str(&sources).unwrap_or_default(),
            confidence,
            note: r.get(8)?,
        },
    })
}

pub(super) const VERSION_QUERY: &str =
    "SELECT v.record_id, v.version, r.kind, v.actor, v.at, v.run_id,
    v.confidence, v.sources, v.note, v.body
    FROM versions v JOIN records r ON r.id = v.record_id WHERE v.review = 'pending'";

/// A low-confidence version: approve keeps it; edit writes the operator's
/// body as the next version; reject restores the version before it (a
/// first version has none to restore: it stays, marked rejected).
pub(super) fn decide(
    conn: &Connection,
    operator: &Actor,
    item: &Item,
    decision: &Decision,
) -> Result<(), CallError> {
    let (record_id, version) = item
        .id
        .rsplit_once('@')
        .and_then(|(r, v)| v.parse::<i64>().ok().map(|v| (r, v)))
        .ok_or_else(|| missing(&item.id))?;
    let current = crate::records::get(conn, record_id)?.ok_or_else(|| missing(&item.id))?;
    let moved_on = || {
        CallError::Conflict(format!(
            "{} is at version {} now; review what changed since, or approve this one to keep it in the history",
            record_id, current.version
        ))
    };
    let note = |text: String| crate::records::Provenance {
        note: Some(text),
        ..Default::default()
    };
    let review = match decision {
        Decision::Approve => "approved",
        Decision::Edit { message } => {
            if current.version != version {
                return Err(moved_on());
            }
            crate::limits::check_body(message)?;
            if !matches!(
                serde_json::from_str(message),
                Ok(serde_json::Value::Object(_))
            ) {
                return Err(CallError::Invalid(
                    "the edited body must be a JSON object".into(),
                ));
            }
            let prov = note(format!("edited in review of v{version}"));
            crate::records::update_body(conn, operator, &current, message, &prov)?;
            "edited"
        }
        Decision::Reject { reason } => {
            if version > 1 {
                if current.version != version {
                    return Err(moved_on());
                }
                let before: String = conn.query_row(
                    "SELECT body FROM versions WHERE record_id = ?1 AND version = ?2",
                    params![record_id, version - 1],
                    |r| r.get(0),
                )?;
                let why = reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                let prov = note(format!(
                    "rejected v{version}, v{} restored{why}",
                    version - 1
                ));
                crate::records::update_body(conn, operator, &current, &before, &prov)?;
            }
            "rejected"
        }
    };
    if crate::records::decide_review(conn, record_id, version, review)? {
        Ok(())
    } else {
        Err(missing(&item.id))
    }
}
