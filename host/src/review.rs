//! The review queue: what waits for the operator: sends that need approval
//! (`needs-review` in the outbox), record versions written with low
//! confidence, jobs that were dead-lettered, jobs `keel up` stopped (a
//! plugin waking itself, a cascade past the depth limit), and tasks whose
//! claims kept expiring. Every decision goes through the write path with
//! the operator as actor, so it is audited like any other change.

mod job;
mod quota;
mod send;
mod task;
mod version;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::error::CallError;
use crate::store::{Actor, Store, Touched, now};
use job::{JOB_COLUMNS, JOB_FROM, job_item};
use quota::{QUOTA_QUERY, quota_item};
use send::{SEND_COLUMNS, send_item};
use task::{TASK_QUERY, task_item};
use version::{VERSION_QUERY, version_item};

crate::store::stored_names! {
    /// What an item waiting for the operator is.
    pub enum ReviewKind ("a review item kind") {
        /// A send that needs approval.
        Send = "send",
        /// A record version written with low confidence.
        LowConfidence = "low-confidence",
        /// A job that was dead-lettered.
        DeadJob = "dead-job",
        /// A job `keel up` stopped (a loop, a cascade past the depth limit).
        StoppedCascade = "stopped-cascade",
        /// A task whose claims kept expiring.
        BlockedTask = "blocked-task",
        /// A plugin whose runs reached a write quota.
        Quota = "quota",
    }
}

/// One item waiting for a decision.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Item {
    pub id: String,
    pub kind: ReviewKind,
    pub plugin: String,
    pub created_at: String,
    /// One line: the channel and subject, or the job's last error.
    pub summary: String,
    /// For sends: the message as JSON text (edited, if the operator did);
    /// for low-confidence versions: the body written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For sends: the plugin's own draft, when the operator edited it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_message: Option<String>,
    pub provenance: Provenance,
}

/// Who produced the item and why.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Provenance {
    pub run: Option<String>,
    pub sources: Vec<String>,
    pub confidence: Option<f64>,
    pub note: Option<String>,
}

/// Everything waiting for the operator, oldest first.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<Item>> {
    let mut items: Vec<Item> = conn
        .prepare(&format!(
            "SELECT {SEND_COLUMNS} FROM outbox WHERE state = 'needs-review' ORDER BY created_at, id"
        ))?
        .query_map([], send_item)?
        .collect::<rusqlite::Result<_>>()?;
    let jobs: Vec<Item> = conn
        .prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.state IN ('dead', 'stopped') AND j.reviewed_at IS NULL
             ORDER BY j.updated_at, j.id"
        ))?
        .query_map([], job_item)?
        .collect::<rusqlite::Result<_>>()?;
    items.extend(jobs);
    let versions: Vec<Item> = conn
        .prepare(VERSION_QUERY)?
        .query_map([], version_item)?
        .collect::<rusqlite::Result<_>>()?;
    items.extend(versions);
    let tasks: Vec<Item> = conn
        .prepare(TASK_QUERY)?
        .query_map([], task_item)?
        .collect::<rusqlite::Result<_>>()?;
    items.extend(tasks);
    let quotas: Vec<Item> = conn
        .prepare(&format!("{QUOTA_QUERY} GROUP BY plugin"))?
        .query_map([], quota_item)?
        .collect::<rusqlite::Result<_>>()?;
    items.extend(quotas);
    items.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    Ok(items)
}

/// One item, if it is waiting for a decision.
pub fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<Item>> {
    let send = conn
        .query_row(
            &format!("SELECT {SEND_COLUMNS} FROM outbox WHERE id = ?1 AND state = 'needs-review'"),
            [id],
            send_item,
        )
        .optional()?;
    if send.is_some() {
        return Ok(send);
    }
    let task = conn
        .query_row(&format!("{TASK_QUERY} AND id = ?1"), [id], task_item)
        .optional()?;
    if task.is_some() {
        return Ok(task);
    }
    let quota = conn
        .query_row(
            &format!(
                "{QUOTA_QUERY} AND plugin = (SELECT plugin FROM runs WHERE id = ?1) GROUP BY plugin"
            ),
            [id],
            quota_item,
        )
        .optional()?
        .filter(|item| item.id == id);
    if quota.is_some() {
        return Ok(quota);
    }
    if let Some((record, version)) = id.rsplit_once('@')
        && let Ok(version) = version.parse::<i64>()
    {
        return conn
            .query_row(
                &format!("{VERSION_QUERY} AND v.record_id = ?1 AND v.version = ?2"),
                params![record, version],
                version_item,
            )
            .optional();
    }
    conn.query_row(
        &format!(
            "SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.id = ?1 AND j.state IN ('dead', 'stopped') AND j.reviewed_at IS NULL"
        ),
        [id],
        job_item,
    )
    .optional()
}

/// A decision the operator takes on an item.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Send it (a send), or run it again (a dead job).
    Approve,
    /// Do not send it (a send), or dismiss it (a dead job).
    Reject { reason: Option<String> },
    /// Replace a send's message; it stays in review until approved.
    Edit { message: String },
}

fn missing(id: &str) -> CallError {
    CallError::NotFound(format!(
        "no review item {id} is waiting; see `keel review list`"
    ))
}

/// Applies `decision` to item `id` through the write path, as the operator.
pub fn decide(store: &mut Store, id: &str, decision: &Decision) -> Result<Item, CallError> {
    let action = match decision {
        Decision::Approve => "review.approve",
        Decision::Reject { .. } => "review.reject",
        Decision::Edit { .. } => "review.edit",
    };
    let operator = Actor::operator();
    let Some(item) = get(store.conn(), id)? else {
        return Err(store.refuse(&operator, action, missing(id)));
    };
    let detail = format!("{} {} from {}", item.kind, item.id, item.plugin);
    store.write(&operator, action, None, Ok(()), |conn| {
        let result = apply(conn, &operator, &item, decision);
        (result, Touched::detail(detail.clone()))
    })?;
    Ok(item)
}

fn apply(
    conn: &Connection,
    operator: &Actor,
    item: &Item,
    decision: &Decision,
) -> Result<(), CallError> {
    let at = now();
    match item.kind {
        ReviewKind::Send => send::decide(conn, operator, item, decision, &at),
        ReviewKind::DeadJob | ReviewKind::StoppedCascade => job::decide(conn, item, decision, &at),
        ReviewKind::LowConfidence => version::decide(conn, operator, item, decision),
        ReviewKind::BlockedTask => task::decide(conn, operator, item, decision),
        ReviewKind::Quota => quota::decide(conn, item, decision, &at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::{self, WriteOptions};
    use crate::testing::Fixture;

    fn queue_send(s: &mut Store, confidence: f32) -> String {
        let fx = Fixture::plugin("mailer", &[], &["send"], "send = [\"email\"]").review_below(0.8);
        let c = fx.caller();
        let opts = WriteOptions {
            confidence: Some(confidence),
            note: Some("reply to Ann".into()),
            ..WriteOptions::default()
        };
        actions::send(
            s,
            c,
            "email",
            r#"{"subject":"Re: lunch","text":"yes"}"#,
            &opts,
        )
        .unwrap()
        .id
    }

    fn state(s: &Store, id: &str) -> String {
        s.conn()
            .query_row("SELECT state FROM outbox WHERE id = ?1", [id], |r| r.get(0))
            .unwrap()
    }

    /// A send by `fx` with `confidence`; its outbox state.
    fn send_state(s: &mut Store, fx: &Fixture, confidence: f32) -> crate::outbox::SendState {
        let opts = WriteOptions {
            confidence: Some(confidence),
            ..WriteOptions::default()
        };
        actions::send(s, fx.caller(), "email", r#"{"text":"hi"}"#, &opts)
            .unwrap()
            .state
    }

    /// M4: a plugin claiming full confidence no longer skips review: until
    /// the operator relaxes the gate, every send of a new plugin waits.
    #[test]
    fn m4_confidence_one_still_reviewed_by_default() {
        let mut s = Store::open_in_memory().unwrap();
        let fresh = Fixture::plugin("mailer", &[], &["send"], "send = [\"email\"]");
        assert_eq!(send_state(&mut s, &fresh, 1.0), "needs-review");
        assert_eq!(send_state(&mut s, &fresh, 0.99), "needs-review");
        let items = list(s.conn()).unwrap();
        assert_eq!(items.len(), 2);
        assert!(items.iter().all(|i| i.kind == "send"), "{items:?}");
        // Relaxed by the operator, a sure send goes out.
        let relaxed = fresh.review_below(0.9);
        assert_eq!(send_state(&mut s, &relaxed, 1.0), "queued");
        assert_eq!(send_state(&mut s, &relaxed, 0.5), "needs-review");
    }

    /// M4: the manifest's `policy.review_below` is a proposal that can only
    /// make the operator's gate stricter.
    #[test]
    fn m4_manifest_cannot_relax_review_gate() {
        let mut s = Store::open_in_memory().unwrap();
        let base = || Fixture::plugin("mailer", &[], &["send"], "send = [\"email\"]");
        // The plugin proposes to let everything through: the operator's
        // default still holds every send, and the operator's 0.9 still
        // holds a 0.6.
        let loose = base().proposes(0.0);
        assert_eq!(send_state(&mut s, &loose, 1.0), "needs-review");
        let loose = loose.review_below(0.9);
        assert_eq!(send_state(&mut s, &loose, 0.6), "needs-review");
        assert_eq!(send_state(&mut s, &loose, 0.95), "queued");
        // A stricter proposal wins over a looser operator gate.
        let strict = base().review_below(0.5).proposes(0.8);
        assert_eq!(send_state(&mut s, &strict, 0.7), "needs-review");
        assert_eq!(send_state(&mut s, &strict, 0.8), "queued");
        let gate = strict.policy.under(strict.grant.review_below);
        assert_eq!(gate, crate::manifest::ReviewGate::Below(0.8));
    }

    #[test]
    fn low_confidence_sends_wait_and_decisions_are_audited() {
        let mut s = Store::open_in_memory().unwrap();
        let sure = queue_send(&mut s, 0.95);
        let unsure = queue_send(&mut s, 0.4);
        let other = queue_send(&mut s, 0.1);
        let items = list(s.conn()).unwrap();
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, [unsure.as_str(), other.as_str()]);
        assert_eq!(items[0].summary, "via email: Re: lunch");
        assert_eq!(items[0].provenance.note.as_deref(), Some("reply to Ann"));
        assert_eq!(state(&s, &sure), "queued");

        let edited = r#"{"subject":"Re: lunch","text":"yes, 12:30"}"#;
        decide(
            &mut s,
            &unsure,
            &Decision::Edit {
                message: edited.into(),
            },
        )
        .unwrap();
        let item = get(s.conn(), &unsure).unwrap().unwrap();
        assert_eq!(item.message.as_deref(), Some(edited));
        assert_eq!(
            item.original_message.as_deref(),
            Some(r#"{"subject":"Re: lunch","text":"yes"}"#)
        );
        decide(&mut s, &unsure, &Decision::Approve).unwrap();
        decide(
            &mut s,
            &other,
            &Decision::Reject {
                reason: Some("wrong tone".into()),
            },
        )
        .unwrap();
        assert_eq!(
            (state(&s, &unsure), state(&s, &other)),
            ("approved".into(), "rejected".into())
        );
        assert!(list(s.conn()).unwrap().is_empty());
        // A decided item cannot be decided again.
        let err = decide(&mut s, &other, &Decision::Approve).unwrap_err();
        assert!(matches!(err, CallError::NotFound(_)), "{err:?}");

        let ops: Vec<(String, String)> = crate::store::audit::list(
            s.conn(),
            &crate::store::audit::Filter {
                plugin: Some("operator".into()),
                ..Default::default()
            },
        )
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.outcome))
        .collect();
        let expected = [
            "review.edit",
            "review.approve",
            "review.reject",
            "review.approve",
        ];
        let outcomes = ["allowed", "allowed", "allowed", "not-found"];
        let want: Vec<(String, String)> = expected
            .iter()
            .zip(outcomes)
            .map(|(a, o)| (a.to_string(), o.to_string()))
            .collect();
        assert_eq!(ops, want);
        assert_eq!(crate::store::audit::verify(s.conn()).unwrap().broken, None);
    }

    /// Writes `body` for kind `note/x` with `confidence` as plugin `unsure`
    /// (threshold 0.8): a create, or an update of `id`.
    fn write_unsure(s: &mut Store, id: Option<&str>, body: &str, confidence: f32) -> String {
        let fx =
            Fixture::plugin("unsure", &["note/x"], &["create", "update"], "").review_below(0.8);
        let c = fx.caller();
        let opts = WriteOptions {
            confidence: Some(confidence),
            note: Some("a guess".into()),
            ..WriteOptions::default()
        };
        match id {
            None => {
                actions::create(s, c, "note/x", body, None, &opts)
                    .unwrap()
                    .record
                    .id
            }
            Some(id) => {
                let at = crate::records::get(s.conn(), id).unwrap().unwrap().version;
                actions::update(s, c, id, at, body, &opts).unwrap().id
            }
        }
    }

    fn bodies(s: &Store, id: &str) -> Vec<(String, Option<String>)> {
        crate::records::history(s.conn(), id)
            .unwrap()
            .into_iter()
            .map(|v| (v.body, v.review))
            .collect()
    }

    #[test]
    fn unsure_versions_wait_and_are_kept_edited_or_reverted() {
        let mut s = Store::open_in_memory().unwrap();
        let sure = write_unsure(&mut s, None, r#"{"t":"sure"}"#, 0.9);
        let a = write_unsure(&mut s, None, r#"{"t":"a1"}"#, 0.5);
        write_unsure(&mut s, Some(&a), r#"{"t":"a2"}"#, 0.3);
        let b = write_unsure(&mut s, None, r#"{"t":"b1"}"#, 0.2);
        let items = list(s.conn()).unwrap();
        // Oldest first; ids made in the same millisecond need not sort in
        // the order they were made, so compare as sets.
        let mut ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        ids.sort_unstable();
        let mut want = [format!("{a}@1"), format!("{a}@2"), format!("{b}@1")];
        want.sort_unstable();
        assert_eq!(ids, want);
        assert!(
            items
                .iter()
                .all(|i| i.kind == "low-confidence" && i.plugin == "unsure")
        );
        let a2 = items.iter().find(|i| i.id == format!("{a}@2")).unwrap();
        assert_eq!(
            a2.summary,
            format!("note/x {a} v2 by unsure@0.1.0, confidence 0.30")
        );
        assert_eq!(a2.provenance.note.as_deref(), Some("a guess"));
        assert!(bodies(&s, &sure)[0].1.is_none());

        // Keep a's first version; a's second is rejected: v1's body returns.
        decide(&mut s, &format!("{a}@1"), &Decision::Approve).unwrap();
        decide(
            &mut s,
            &format!("{a}@2"),
            &Decision::Reject {
                reason: Some("wrong".into()),
            },
        )
        .unwrap();
        assert_eq!(
            bodies(&s, &a),
            [
                (r#"{"t":"a1"}"#.to_string(), Some("approved".to_string())),
                (r#"{"t":"a2"}"#.to_string(), Some("rejected".to_string())),
                (r#"{"t":"a1"}"#.to_string(), None),
            ]
        );
        let restored = &crate::records::history(s.conn(), &a).unwrap()[2];
        assert_eq!(restored.actor, "operator");
        assert_eq!(
            restored.note.as_deref(),
            Some("rejected v2, v1 restored: wrong")
        );

        // An edit must be an object; then it is the next version.
        let bad = decide(
            &mut s,
            &format!("{b}@1"),
            &Decision::Edit {
                message: "[1]".into(),
            },
        );
        assert!(matches!(bad, Err(CallError::Invalid(_))), "{bad:?}");
        decide(
            &mut s,
            &format!("{b}@1"),
            &Decision::Edit {
                message: r#"{"t":"b fixed"}"#.into(),
            },
        )
        .unwrap();
        assert_eq!(bodies(&s, &b)[1], (r#"{"t":"b fixed"}"#.to_string(), None));
        assert_eq!(bodies(&s, &b)[0].1.as_deref(), Some("edited"));
        assert!(list(s.conn()).unwrap().is_empty());

        // A version the record has moved past can be kept but not edited.
        write_unsure(&mut s, Some(&sure), r#"{"t":"unsure now"}"#, 0.1);
        write_unsure(&mut s, Some(&sure), r#"{"t":"sure again"}"#, 0.95);
        let err = decide(
            &mut s,
            &format!("{sure}@2"),
            &Decision::Reject { reason: None },
        )
        .unwrap_err();
        assert!(matches!(err, CallError::Conflict(_)), "{err:?}");
        decide(&mut s, &format!("{sure}@2"), &Decision::Approve).unwrap();
        assert_eq!(crate::store::audit::verify(s.conn()).unwrap().broken, None);
    }

    #[test]
    fn dead_jobs_can_be_retried_or_dismissed() {
        let mut s = Store::open_in_memory().unwrap();
        for id in ["j1", "j2"] {
            s.conn()
                .execute(
                    "INSERT INTO jobs (id, plugin, input, run_at, state, attempts, last_error, created_at, updated_at)
                     VALUES (?1, 'p', '{}', '2026-01-01T00:00:00.000Z', 'dead', 5, 'unavailable: down', ?2, ?2)",
                    params![id, now()],
                )
                .unwrap();
        }
        let items = list(s.conn()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].summary, "dead after 5 attempts: unavailable: down");
        decide(&mut s, "j1", &Decision::Approve).unwrap();
        decide(&mut s, "j2", &Decision::Reject { reason: None }).unwrap();
        let err = decide(
            &mut s,
            "j2",
            &Decision::Edit {
                message: "{}".into(),
            },
        )
        .unwrap_err();
        assert!(matches!(err, CallError::NotFound(_)));
        let j1: (String, i64) = s
            .conn()
            .query_row(
                "SELECT state, attempts FROM jobs WHERE id = 'j1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(j1, ("queued".to_string(), 0));
        assert!(list(s.conn()).unwrap().is_empty());
    }
}
