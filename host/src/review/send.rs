//! Sends that need approval (`needs-review` in the outbox): approve lets
//! one out, reject keeps it in, edit replaces its message.

use rusqlite::Connection;

use super::Provenance;
use super::{Decision, Item, ReviewKind, missing};
use crate::error::CallError;
use crate::outbox;
use crate::records::{Event, insert_event};
use crate::store::Actor;

pub(super) fn send_summary(channel: &str, message: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(message).unwrap_or_default();
    let subject = ["subject", "title", "text"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|s| s.as_str()))
        .unwrap_or("");
    format!(
        "via {channel}: {}",
        subject.chars().take(80).collect::<String>()
    )
}

pub(super) fn send_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let channel: String = r.get(1)?;
    let message: String = r.get(2)?;
    let sources: String = r.get(7)?;
    Ok(Item {
        id: r.get(0)?,
        kind: ReviewKind::Send,
        plugin: r.get(3)?,
        created_at: r.get(4)?,
        summary: send_summary(&channel, &message),
        message: Some(message),
        original_message: r.get(9)?,
        provenance: Provenance {
            run: r.get(5)?,
            sources: serde_json::from_str(&sources).unwrap_or_default(),
            confidence: r.get(6)?,
            note: r.get(8)?,
        },
    })
}

pub(super) const SEND_COLUMNS: &str =
    "id, channel, message, plugin, created_at, run_id, confidence, sources, note, original_message";

/// Applies `decision` to send `item`.
pub(super) fn decide(
    conn: &Connection,
    operator: &Actor,
    item: &Item,
    decision: &Decision,
    at: &str,
) -> Result<(), CallError> {
    let changed = match decision {
        Decision::Approve => {
            let n = outbox::approve(conn, &item.id, at)?;
            let data = serde_json::json!({"outbox": item.id}).to_string();
            insert_event(conn, Event::SendApproved, None, None, operator, Some(&data))?;
            n
        }
        Decision::Reject { reason } => {
            let n = outbox::reject(conn, &item.id, at, reason.as_deref())?;
            let data = serde_json::json!({"outbox": item.id}).to_string();
            insert_event(conn, Event::SendRejected, None, None, operator, Some(&data))?;
            n
        }
        Decision::Edit { message } => {
            crate::limits::check_body(message)?;
            outbox::edit(conn, &item.id, message)?
        }
    };
    if changed {
        Ok(())
    } else {
        Err(missing(&item.id))
    }
}
