//! The review queue: what waits for the operator: sends that need approval
//! (`needs-review` in the outbox), record versions written with low
//! confidence, jobs that were dead-lettered, jobs `keel up` stopped (a
//! plugin waking itself, a cascade past the depth limit), and tasks whose
//! claims kept expiring. Every decision goes through the write path with
//! the operator as actor, so it is audited like any other change.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::error::CallError;
use crate::records::insert_event;
use crate::store::{Actor, Store, Touched, now};
use crate::{jobs, outbox};

/// One item waiting for a decision.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Item {
    pub id: String,
    /// `send`, `low-confidence`, `dead-job`, `stopped-cascade`,
    /// `blocked-task` or `quota`.
    pub kind: String,
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

fn send_summary(channel: &str, message: &str) -> String {
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

fn send_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let channel: String = r.get(1)?;
    let message: String = r.get(2)?;
    let sources: String = r.get(7)?;
    Ok(Item {
        id: r.get(0)?,
        kind: "send".into(),
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

const SEND_COLUMNS: &str =
    "id, channel, message, plugin, created_at, run_id, confidence, sources, note, original_message";

fn job_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let attempts: i64 = r.get(4)?;
    let error: Option<String> = r.get(3)?;
    let state: String = r.get(6)?;
    let (kind, summary) = if state == "stopped" {
        ("stopped-cascade", error.unwrap_or_default())
    } else {
        (
            "dead-job",
            format!(
                "dead after {attempts} attempt{}: {}",
                if attempts == 1 { "" } else { "s" },
                error.unwrap_or_default()
            ),
        )
    };
    Ok(Item {
        id: r.get(0)?,
        kind: kind.into(),
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

const JOB_COLUMNS: &str = "j.id, j.plugin, j.updated_at, j.last_error, j.attempts,
    COALESCE(j.created_by_run, e.run_id), j.state";
const JOB_FROM: &str = "jobs j LEFT JOIN events e ON e.seq = j.event_seq";

fn task_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let title: Option<String> = r.get(3)?;
    let why: Option<String> = r.get(4)?;
    Ok(Item {
        id: r.get(0)?,
        kind: "blocked-task".into(),
        plugin: r.get(1)?,
        created_at: r.get(2)?,
        summary: format!("{}: {}", title.unwrap_or_default(), why.unwrap_or_default()),
        message: None,
        original_message: None,
        provenance: Provenance::default(),
    })
}

/// A version's item id: `<record id>@<version>`.
fn version_id(record: &str, version: i64) -> String {
    format!("{record}@{version}")
}

fn version_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let record: String = r.get(0)?;
    let version: i64 = r.get(1)?;
    let kind: String = r.get(2)?;
    let actor: String = r.get(3)?;
    let confidence: Option<f64> = r.get(6)?;
    let sources: String = r.get(7)?;
    Ok(Item {
        id: version_id(&record, version),
        kind: "low-confidence".into(),
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

const VERSION_QUERY: &str = "SELECT v.record_id, v.version, r.kind, v.actor, v.at, v.run_id,
    v.confidence, v.sources, v.note, v.body
    FROM versions v JOIN records r ON r.id = v.record_id WHERE v.review = 'pending'";

/// Tasks the supervisor blocked because their claims kept expiring.
const TASK_QUERY: &str = "SELECT id, created_by, updated_at, json_extract(body, '$.title'),
    json_extract(body, '$.escalated') FROM records
    WHERE kind = 'core/task' AND json_extract(body, '$.state') = 'blocked'
      AND json_extract(body, '$.escalated') IS NOT NULL";

/// Plugins whose runs reached a write quota: one item per plugin, its
/// latest such run, until the operator dismisses it.
const QUOTA_QUERY: &str = "SELECT id, plugin, max(ended_at), quota, count(*) FROM runs
    WHERE quota IS NOT NULL AND quota_reviewed_at IS NULL";

fn quota_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let run: String = r.get(0)?;
    let quota: String = r.get(3)?;
    let runs: i64 = r.get(4)?;
    let (name, _) = quota.split_once(' ').unwrap_or((&quota, ""));
    Ok(Item {
        id: run.clone(),
        kind: "quota".into(),
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
    let changed = match (item.kind.as_str(), decision) {
        ("send", Decision::Approve) => {
            let n = usize::from(outbox::approve(conn, &item.id, &at)?);
            let data = serde_json::json!({"outbox": item.id}).to_string();
            insert_event(conn, "send.approved", None, None, operator, Some(&data))?;
            n
        }
        ("send", Decision::Reject { reason }) => {
            let n = usize::from(outbox::reject(conn, &item.id, &at, reason.as_deref())?);
            let data = serde_json::json!({"outbox": item.id}).to_string();
            insert_event(conn, "send.rejected", None, None, operator, Some(&data))?;
            n
        }
        ("send", Decision::Edit { message }) => {
            crate::limits::check_body(message)?;
            usize::from(outbox::edit(conn, &item.id, message)?)
        }
        // Approving a stopped job runs it as the start of a new chain: the
        // operator is now its cause.
        ("dead-job" | "stopped-cascade", Decision::Approve) => {
            usize::from(jobs::enqueue::retry_reviewed(conn, &item.id, &at)?)
        }
        ("dead-job" | "stopped-cascade", Decision::Reject { .. }) => {
            usize::from(jobs::enqueue::dismiss_reviewed(conn, &item.id, &at)?)
        }
        ("dead-job" | "stopped-cascade", Decision::Edit { .. }) => {
            return Err(CallError::Invalid(format!(
                "{} is a {}; approve it to run it (again) or reject it to dismiss it",
                item.id,
                item.kind.replace('-', " ")
            )));
        }
        ("blocked-task", decision) => return decide_task(conn, operator, item, decision),
        // Seen: the plugin's quota runs leave the queue together.
        ("quota", Decision::Approve | Decision::Reject { .. }) => {
            let n = crate::plugins::dismiss_quota(conn, &item.plugin, &at)?;
            return if n > 0 {
                Ok(())
            } else {
                Err(missing(&item.id))
            };
        }
        ("quota", Decision::Edit { .. }) => {
            return Err(CallError::Invalid(format!(
                "{} is a quota item; approve or reject it to dismiss it, and raise the plugin's limits in its manifest if needed",
                item.id
            )));
        }
        ("low-confidence", decision) => return decide_version(conn, operator, item, decision),
        (other, _) => {
            return Err(CallError::Internal(format!(
                "unknown review item kind {other}"
            )));
        }
    };
    if changed == 1 {
        Ok(())
    } else {
        Err(missing(&item.id))
    }
}

/// A low-confidence version: approve keeps it; edit writes the operator's
/// body as the next version; reject restores the version before it (a
/// first version has none to restore: it stays, marked rejected).
fn decide_version(
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

/// A blocked task: approve reopens it (its claim count starts again),
/// reject marks it failed.
fn decide_task(
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
    fn send_state(s: &mut Store, fx: &Fixture, confidence: f32) -> outbox::SendState {
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

        let ops: Vec<(String, String)> = crate::audit::list(
            s.conn(),
            &crate::audit::Filter {
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
        assert_eq!(crate::audit::verify(s.conn()).unwrap().broken, None);
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
        assert_eq!(crate::audit::verify(s.conn()).unwrap().broken, None);
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
