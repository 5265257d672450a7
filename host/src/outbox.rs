//! Delivery: sends leave keel through the channel plugin that serves their
//! channel. `keel up`'s trigger pass queues one delivery job per queued or
//! approved send ([`queue_pending`]); a worker hands the send to the
//! channel's `deliver` export and, once the channel has it out, records the
//! receipt through the write path ([`record`]). The idempotency key is the
//! same on every attempt, so a delivery retried after a crash does not send
//! twice through a channel that honours it.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::CallError;
use crate::jobs::{self, Priority};
use crate::limits;
use crate::plugins::PluginRow;
use crate::records::{Event, insert_event};
use crate::store::{Actor, Store, Touched, now};

/// The `cause` of a delivery job.
pub const CAUSE: &str = "delivery";

/// The audited action of a channel plugin recording that a send is out.
pub const DELIVER: &str = "deliver";

/// Most sends queued for delivery in one trigger pass.
const BATCH: u32 = 500;

crate::store::stored_names! {
    /// Where a send is on its way out (WIT `send-state` names the first two).
    pub enum SendState ("a send state") {
        /// Waiting for its channel's delivery.
        Queued = "queued",
        /// Held for the operator: written with too little confidence.
        NeedsReview = "needs-review",
        /// Let through by the operator; waiting for delivery.
        Approved = "approved",
        /// Refused by the operator; never goes out.
        Rejected = "rejected",
        /// Out: the channel plugin recorded its receipt.
        Delivered = "delivered",
    }
}

impl SendState {
    /// Whether a send in this state may go out now.
    pub fn deliverable(self) -> bool {
        matches!(self, SendState::Queued | SendState::Approved)
    }
}

/// One send in the outbox, as a channel receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Send {
    pub id: String,
    pub channel: String,
    /// The message as approved (the operator's edit, if any).
    pub message: String,
    pub state: SendState,
}

impl Send {
    /// Whether the send may go out now.
    pub fn deliverable(&self) -> bool {
        self.state.deliverable()
    }
}

/// A send a plugin asks for, with its provenance.
#[derive(Debug)]
pub struct NewSend<'a> {
    pub channel: &'a str,
    pub message: &'a str,
    pub state: SendState,
    pub confidence: Option<f32>,
    pub plugin: &'a str,
    pub run_id: Option<&'a str>,
    pub sources: &'a [String],
    pub note: Option<&'a str>,
}

/// Puts `send` in the outbox, inside the write path's transaction; its id.
pub fn queue(conn: &Connection, send: &NewSend<'_>) -> Result<String, CallError> {
    let id = crate::store::new_id();
    conn.execute(
        "INSERT INTO outbox (id, channel, message, state, confidence, plugin, run_id, created_at, sources, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            id,
            send.channel,
            send.message,
            send.state,
            send.confidence.map(f64::from),
            send.plugin,
            send.run_id,
            now(),
            serde_json::to_string(send.sources)?,
            send.note
        ],
    )?;
    Ok(id)
}

/// The operator lets send `id` out; false if it was not waiting for review.
pub fn approve(conn: &Connection, id: &str, at: &str) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE outbox SET state = 'approved', decided_at = ?2 WHERE id = ?1 AND state = 'needs-review'",
        params![id, at],
    )?;
    Ok(n == 1)
}

/// The operator refuses send `id`; false if it was not waiting for review.
pub fn reject(
    conn: &Connection,
    id: &str,
    at: &str,
    reason: Option<&str>,
) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE outbox SET state = 'rejected', decided_at = ?2, decision_note = ?3
         WHERE id = ?1 AND state = 'needs-review'",
        params![id, at, reason],
    )?;
    Ok(n == 1)
}

/// The operator replaces the message of send `id`, keeping the plugin's
/// draft; false if it was not waiting for review.
pub fn edit(conn: &Connection, id: &str, message: &str) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE outbox SET original_message = COALESCE(original_message, message), message = ?2
         WHERE id = ?1 AND state = 'needs-review'",
        params![id, message],
    )?;
    Ok(n == 1)
}

/// The idempotency key every delivery attempt of send `id` carries.
pub fn key(id: &str) -> String {
    format!("keel-send-{id}")
}

/// The send in the outbox with this id.
pub fn load(conn: &Connection, id: &str) -> rusqlite::Result<Option<Send>> {
    conn.query_row(
        "SELECT id, channel, message, state FROM outbox WHERE id = ?1",
        [id],
        |r| {
            Ok(Send {
                id: r.get(0)?,
                channel: r.get(1)?,
                message: r.get(2)?,
                state: r.get(3)?,
            })
        },
    )
    .optional()
}

/// The outbox id a delivery job's input names.
pub fn send_of(input: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(input).ok()?;
    v.get("outbox")?.as_str().map(str::to_string)
}

/// Which installed plugin serves each channel.
fn servers(installed: &[PluginRow]) -> HashMap<&str, &str> {
    installed
        .iter()
        .filter_map(|p| p.manifest.channel.as_ref().map(|c| (p, c)))
        .flat_map(|(p, c)| c.serves.iter().map(|name| (name.as_str(), p.id.as_str())))
        .collect()
}

/// Queues a delivery job for each queued or approved send whose channel an
/// installed plugin serves. Sends for a channel nobody serves wait until a
/// channel plugin for it is installed. Runs inside the caller's
/// transaction; the job's firing key makes it once per send.
pub fn queue_pending(
    tx: &Connection,
    installed: &[PluginRow],
    now: &str,
) -> rusqlite::Result<usize> {
    let servers = servers(installed);
    if servers.is_empty() {
        return Ok(0);
    }
    let waiting: Vec<(String, String, SendState)> = tx
        .prepare_cached(
            "SELECT id, channel, state FROM outbox
             WHERE delivery_job IS NULL AND state IN ('queued', 'approved')
             ORDER BY created_at, id LIMIT ?1",
        )?
        .query_map([BATCH], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut queued = 0;
    for (send, channel, state) in waiting {
        // Only a send the operator approved goes out at the operator's
        // priority; one the plugin's confidence let through waits its turn
        // with other plugin work.
        let priority = if state == SendState::Approved {
            Priority::Operator
        } else {
            Priority::Event
        };
        let Some(plugin) = servers.get(channel.as_str()) else {
            continue;
        };
        let input = serde_json::json!({ "outbox": send }).to_string();
        let key = format!("deliver:{send}");
        if let Some(job) =
            jobs::enqueue::delivery(tx, (plugin, &input, CAUSE), now, priority, &key)?
        {
            tx.prepare_cached("UPDATE outbox SET delivery_job = ?2 WHERE id = ?1")?
                .execute(params![send, job])?;
            queued += 1;
        }
    }
    Ok(queued)
}

/// Records, as the channel plugin `actor`, that `send` is out: the send
/// becomes `delivered` with the channel's receipt, a `send.delivered` event
/// and an audit entry, in one transaction. Refused unless the plugin serves
/// the send's channel.
pub fn record(
    store: &mut Store,
    actor: &Actor,
    serves: &[String],
    send: &Send,
    receipt: &str,
    duplicate: bool,
) -> Result<(), CallError> {
    let detail = format!("outbox {} via {}", send.id, send.channel);
    let permit = if serves.contains(&send.channel) {
        Ok(())
    } else {
        Err((
            format!(
                "{} does not serve channel `{}`",
                actor.label(),
                send.channel
            ),
            Touched::detail(&detail),
        ))
    };
    store.write(actor, DELIVER, None, permit, |tx| {
        let result = (|| {
            limits::check_len("receipt id", receipt, limits::MAX_NAME_BYTES)?;
            let n = tx.execute(
                "UPDATE outbox SET state = 'delivered', delivered_at = ?2, delivered_by = ?3, receipt = ?4
                 WHERE id = ?1 AND state IN ('queued', 'approved')",
                params![send.id, now(), actor.label(), receipt],
            )?;
            if n != 1 {
                return Err(CallError::Conflict(format!(
                    "send {} is no longer waiting for delivery",
                    send.id
                )));
            }
            let data = serde_json::json!({
                "outbox": send.id,
                "channel": send.channel,
                "receipt": receipt,
                "duplicate": duplicate,
            })
            .to_string();
            insert_event(tx, Event::SendDelivered, None, None, actor, Some(&data))?;
            Ok(())
        })();
        let again = if duplicate { " (delivered before)" } else { "" };
        let touched = match &result {
            Ok(()) => Touched::detail(format!("{detail}: delivered, receipt {receipt}{again}")),
            Err(_) => Touched::detail(&detail),
        };
        (result, touched)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use crate::plugins;

    fn channel_row(s: &mut Store) -> PluginRow {
        let m = Manifest::parse(
            "[plugin]\nid = \"outbox-file\"\nversion = \"0.1.0\"\nworld = \"channel\"\n[channel]\nserves = [\"email\"]\n",
            "keel.toml",
        )
        .unwrap();
        let g = crate::grant::Grant::new(&m, &Default::default()).unwrap();
        plugins::upsert(s.conn(), &m, "sha256:00", &g).unwrap();
        plugins::get(s.conn(), "outbox-file").unwrap().unwrap()
    }

    fn put(s: &Store, id: &str, channel: &str, state: &str) {
        s.conn()
            .execute(
                "INSERT INTO outbox (id, channel, message, state, plugin, created_at) VALUES (?1, ?2, '{}', ?3, 'p', ?4)",
                params![id, channel, state, now()],
            )
            .unwrap();
    }

    /// M4: a send the plugin's own confidence let through is delivered at
    /// plugin priority; only the operator's approval earns operator
    /// priority.
    #[test]
    fn m4_only_approved_sends_deliver_at_operator_priority() {
        let mut s = Store::open_in_memory().unwrap();
        let row = channel_row(&mut s);
        put(&s, "sure", "email", "queued");
        put(&s, "approved", "email", "approved");
        assert_eq!(queue_pending(s.conn(), &[row], &now()).unwrap(), 2);
        let priority = |send: &str| -> i64 {
            s.conn()
                .query_row(
                    "SELECT priority FROM jobs WHERE fire_key = ?1",
                    [format!("deliver:{send}")],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(priority("sure"), Priority::Event as i64);
        assert_eq!(priority("approved"), Priority::Operator as i64);
    }

    #[test]
    fn one_job_per_deliverable_send_and_receipts_are_audited() {
        let mut s = Store::open_in_memory().unwrap();
        let row = channel_row(&mut s);
        for (id, channel, state) in [
            ("a", "email", "queued"),
            ("b", "email", "approved"),
            ("c", "email", "needs-review"),
            ("d", "email", "rejected"),
            ("e", "sms", "approved"),
        ] {
            put(&s, id, channel, state);
        }
        let installed = vec![row.clone()];
        assert_eq!(queue_pending(s.conn(), &installed, &now()).unwrap(), 2);
        // A second pass queues nothing more.
        assert_eq!(queue_pending(s.conn(), &installed, &now()).unwrap(), 0);
        let inputs: Vec<String> = s
            .conn()
            .prepare("SELECT input FROM jobs WHERE cause = 'delivery' ORDER BY input")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let sends: Vec<Option<String>> = inputs.iter().map(|i| send_of(i)).collect();
        assert_eq!(sends, [Some("a".to_string()), Some("b".to_string())]);

        let actor = Actor {
            plugin: row.id.clone(),
            version: Some(row.version.clone()),
            digest: None,
            run_id: None,
            trigger: None,
        };
        let serves = vec!["email".to_string()];
        let a = load(s.conn(), "a").unwrap().unwrap();
        record(&mut s, &actor, &serves, &a, "<a@keel>", false).unwrap();
        // Delivered once: recording it again is a conflict, nothing changes.
        let err = record(&mut s, &actor, &serves, &a, "<a@keel>", true).unwrap_err();
        assert!(matches!(err, CallError::Conflict(_)), "{err:?}");
        // A channel may only deliver what it serves.
        let e = load(s.conn(), "e").unwrap().unwrap();
        let err = record(&mut s, &actor, &serves, &e, "x", false).unwrap_err();
        assert!(matches!(err, CallError::Denied(_)), "{err:?}");
        assert_eq!(load(s.conn(), "a").unwrap().unwrap().state, "delivered");
        assert_eq!(load(s.conn(), "e").unwrap().unwrap().state, "approved");

        let trail: Vec<(String, String, String)> = crate::store::audit::list(
            s.conn(),
            &crate::store::audit::Filter {
                plugin: Some("outbox-file".into()),
                ..Default::default()
            },
        )
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.outcome, e.detail))
        .collect();
        assert_eq!(
            trail,
            [
                (
                    "deliver".to_string(),
                    "allowed".to_string(),
                    "outbox a via email: delivered, receipt <a@keel>".to_string()
                ),
                (
                    "deliver".to_string(),
                    "conflict".to_string(),
                    "outbox a via email: send a is no longer waiting for delivery".to_string()
                ),
                (
                    "deliver".to_string(),
                    "denied".to_string(),
                    "outbox e via sms: outbox-file@0.1.0 does not serve channel `sms`".to_string()
                ),
            ]
        );
        let events: i64 = s
            .conn()
            .query_row(
                "SELECT count(*) FROM events WHERE name = 'send.delivered'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(events, 1);
    }
}
