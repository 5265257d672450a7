//! Tasks and claims: how agents hand work to each other. A `core/task`
//! record is `open`, `claimed`, `done`, `failed` or `blocked`. [`claim`]
//! leases an open task to one plugin for a while (of racing claimers one
//! wins), [`complete`] ends it with a result, [`release`] gives it back.
//! Each is a new version of the task through the one write path, so a
//! task's history shows who held it and what came of it. The
//! [`supervise`] pass of `keel up` reopens tasks whose claim expired,
//! blocks (for the operator) a task whose claims keep expiring, and closes
//! runs whose process died.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde_json::{Map, Value, json};

use crate::actions::CoreAction;
use crate::actions::{Caller, WriteOptions};
use crate::error::CallError;
use crate::jobs::stamp;
use crate::limits;
use crate::records::{self, Provenance, Record};
use crate::store::{Actor, Store, Touched};

/// The kind claims work on.
pub const TASK: &str = "core/task";
/// Longest claim one call may take: an hour.
pub const MAX_CLAIM_MS: u32 = 3_600_000;
/// Claims that may expire on one task before the supervisor stops
/// reopening it and sends it to the review queue.
pub const MAX_EXPIRED_CLAIMS: i64 = 3;

/// How a claimed task ended (mirrors WIT `task-end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Done,
    Failed,
    Blocked,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Done => "done",
            End::Failed => "failed",
            End::Blocked => "blocked",
        }
    }
}

/// The supervisor's identity in versions and the audit log.
pub fn supervisor() -> Actor {
    Actor {
        plugin: "supervisor".into(),
        ..Actor::operator()
    }
}

/// The task `id` and its body as a JSON object, or why it is not a task.
fn load(conn: &Connection, id: &str) -> Result<(Record, Map<String, Value>), CallError> {
    let record = records::get(conn, id)?
        .ok_or_else(|| CallError::NotFound(format!("no record with id {id}")))?;
    if record.kind != TASK {
        return Err(CallError::Invalid(format!(
            "record {id} is a {}, not a {TASK}",
            record.kind
        )));
    }
    let body = match serde_json::from_str(&record.body) {
        Ok(Value::Object(map)) => map,
        _ => {
            return Err(CallError::Invalid(format!(
                "task {id} has a body that is not a JSON object"
            )));
        }
    };
    Ok((record, body))
}

fn text<'a>(body: &'a Map<String, Value>, key: &str) -> &'a str {
    body.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Who holds the claim and until when, if the task is claimed.
fn holder(body: &Map<String, Value>) -> Option<(String, String)> {
    if text(body, "state") != "claimed" {
        return None;
    }
    let claim = body.get("claim")?;
    Some((
        claim.get("by")?.as_str()?.to_string(),
        claim.get("until")?.as_str()?.to_string(),
    ))
}

/// Writes `body` as the task's next version.
fn write_body(
    tx: &Connection,
    actor: &Actor,
    current: &Record,
    body: Map<String, Value>,
    prov: &Provenance,
) -> Result<Record, CallError> {
    let body = Value::Object(body).to_string();
    limits::check_body(&body)?;
    records::update_body(tx, actor, current, &body, prov)
}

fn note(text: String) -> Provenance {
    Provenance {
        note: Some(text),
        ..Provenance::default()
    }
}

/// `claim`: leases task `id` to the caller for `ttl_ms`.
pub fn claim(
    store: &mut Store,
    caller: Caller<'_>,
    id: &str,
    ttl_ms: u32,
) -> Result<Record, CallError> {
    let checks = limits::check_len("record id", id, limits::MAX_NAME_BYTES).and_then(|()| {
        if (1..=MAX_CLAIM_MS).contains(&ttl_ms) {
            Ok(())
        } else {
            Err(CallError::Invalid(format!(
                "a claim lasts 1 to {MAX_CLAIM_MS} ms, not {ttl_ms}"
            )))
        }
    });
    super::precheck(store, caller, CoreAction::Claim, || checks)?;
    let grant = caller.grant;
    let permit = if !grant.allows_action(CoreAction::Claim.as_str()) {
        Err("action `claim` is not granted".to_string())
    } else if !grant.can_read(TASK) {
        Err(format!("reading {TASK} is not granted"))
    } else {
        Ok(())
    };
    let permit = permit.map_err(|reason| (reason, Touched::detail(format!("task {id}"))));
    let actor = caller.actor;
    store.write(actor, CoreAction::Claim.as_str(), None, permit, |tx| {
        let mut touched = Touched::detail(format!("task {id}"));
        let result = (|| {
            let (current, mut body) = load(tx, id)?;
            touched = Touched::record(id, current.version, "");
            let now = Utc::now();
            let now_s = stamp(now);
            match (text(&body, "state"), holder(&body)) {
                ("open", _) => {}
                ("claimed", Some((_, until))) if until <= now_s => {}
                ("claimed", Some((by, until))) => {
                    return Err(CallError::Conflict(format!(
                        "task {id} is claimed by {by} until {until}"
                    )));
                }
                (state, _) => {
                    return Err(CallError::Conflict(format!(
                        "task {id} is {state}; only open tasks can be claimed"
                    )));
                }
            }
            let until = stamp(now + chrono::Duration::milliseconds(i64::from(ttl_ms)));
            let claims = body.get("claims").and_then(Value::as_i64).unwrap_or(0) + 1;
            body.insert("state".into(), json!("claimed"));
            body.insert(
                "claim".into(),
                json!({"by": actor.plugin, "run": actor.run_id, "until": until}),
            );
            body.insert("claims".into(), json!(claims));
            let record = write_body(
                tx,
                actor,
                &current,
                body,
                &note(format!("claimed until {until}")),
            )?;
            touched = Touched::record(id, record.version, format!("claimed until {until}"));
            Ok(record)
        })();
        (result, touched)
    })
}

/// Checks that the caller holds a live claim on the task.
fn check_holder(
    id: &str,
    body: &Map<String, Value>,
    actor: &Actor,
    now: &str,
) -> Result<(), CallError> {
    match holder(body) {
        Some((by, until)) if by == actor.plugin && until.as_str() > now => Ok(()),
        Some((by, until)) if by == actor.plugin => Err(CallError::Conflict(format!(
            "your claim on task {id} expired at {until}; claim it again"
        ))),
        Some((by, _)) => Err(CallError::Conflict(format!(
            "task {id} is claimed by {by}, not {}",
            actor.plugin
        ))),
        None => Err(CallError::Conflict(format!(
            "task {id} is {}, not claimed; claim it first",
            text(body, "state")
        ))),
    }
}

/// `complete`: ends a task the caller holds, keeping `result` in it.
pub fn complete(
    store: &mut Store,
    caller: Caller<'_>,
    id: &str,
    end: End,
    result: &str,
    opts: &WriteOptions,
) -> Result<Record, CallError> {
    super::precheck(store, caller, CoreAction::Complete, || {
        limits::check_len("record id", id, limits::MAX_NAME_BYTES)?;
        limits::check_json("result", result)
    })?;
    let permit = if caller.grant.allows_action(CoreAction::Complete.as_str()) {
        Ok(())
    } else {
        Err((
            "action `complete` is not granted".to_string(),
            Touched::detail(format!("task {id}")),
        ))
    };
    let actor = caller.actor;
    store.write(
        actor,
        CoreAction::Complete.as_str(),
        opts.idempotency_key.as_deref(),
        permit,
        |tx| {
            let mut touched = Touched::detail(format!("task {id}"));
            let outcome = (|| {
                let (current, mut body) = load(tx, id)?;
                touched = Touched::record(id, current.version, "");
                check_holder(id, &body, actor, &stamp(Utc::now()))?;
                let value: Value = serde_json::from_str(result)
                    .map_err(|e| CallError::Invalid(format!("result is not JSON: {e}")))?;
                body.insert("state".into(), json!(end.as_str()));
                body.remove("claim");
                body.insert("result".into(), value);
                body.insert("ended_by".into(), json!(actor.plugin));
                // The same provenance checks (sources counted and found,
                // note size, confidence range) and review gate as any write.
                let prov = crate::actions::provenance(tx, caller.grant, opts)?;
                let record = write_body(tx, actor, &current, body, &prov)?;
                crate::actions::flag_unsure(tx, caller, &record, &prov)?;
                touched = Touched::record(id, record.version, end.as_str());
                Ok(record)
            })();
            (outcome, touched)
        },
    )
}

/// `release`: gives back a claim the caller holds.
pub fn release(store: &mut Store, caller: Caller<'_>, id: &str) -> Result<Record, CallError> {
    super::precheck(store, caller, CoreAction::Release, || {
        limits::check_len("record id", id, limits::MAX_NAME_BYTES)
    })?;
    let permit = if caller.grant.allows_action(CoreAction::Claim.as_str()) {
        Ok(())
    } else {
        Err((
            "action `claim` is not granted".to_string(),
            Touched::detail(format!("task {id}")),
        ))
    };
    let actor = caller.actor;
    store.write(actor, CoreAction::Release.as_str(), None, permit, |tx| {
        let mut touched = Touched::detail(format!("task {id}"));
        let outcome = (|| {
            let (current, mut body) = load(tx, id)?;
            touched = Touched::record(id, current.version, "");
            check_holder(id, &body, actor, &stamp(Utc::now()))?;
            body.insert("state".into(), json!("open"));
            body.remove("claim");
            let record = write_body(tx, actor, &current, body, &note("released".into()))?;
            touched = Touched::record(id, record.version, "released");
            Ok(record)
        })();
        (outcome, touched)
    })
}

/// What one supervisor pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Supervised {
    /// Tasks whose claim expired, open again.
    pub reopened: usize,
    /// Tasks whose claims expired too often, blocked for the operator.
    pub escalated: usize,
    /// Runs left `running` by a process that died, closed as `lost`.
    pub lost_runs: usize,
}

/// The supervisor pass: reopens tasks whose claim expired (or blocks them
/// for review after [`MAX_EXPIRED_CLAIMS`]) and closes runs that outlived
/// their deadline by a minute without ending (their process died).
pub fn supervise(store: &mut Store, now: DateTime<Utc>) -> Result<Supervised, CallError> {
    let now_s = stamp(now);
    let mut done = Supervised::default();
    let expired: Vec<String> = store
        .conn()
        .prepare_cached(
            "SELECT id FROM records WHERE kind = ?1
               AND json_extract(body, '$.state') = 'claimed'
               AND json_extract(body, '$.claim.until') <= ?2
             ORDER BY id LIMIT 500",
        )?
        .query_map(params![TASK, now_s], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let actor = supervisor();
    for id in expired {
        let escalated = store.write(&actor, "task.reclaim", None, Ok(()), |tx| {
            let mut touched = Touched::detail(format!("task {id}"));
            let outcome = (|| {
                let (current, mut body) = load(tx, &id)?;
                let Some((by, until)) = holder(&body).filter(|(_, until)| *until <= now_s) else {
                    return Err(CallError::Conflict(format!(
                        "task {id} was claimed again or ended"
                    )));
                };
                let claims = body.get("claims").and_then(Value::as_i64).unwrap_or(0);
                let escalate = claims >= MAX_EXPIRED_CLAIMS;
                body.remove("claim");
                let why = if escalate {
                    let why = format!(
                        "{claims} claims expired without an end (the last by {by}, at {until})"
                    );
                    body.insert("state".into(), json!("blocked"));
                    body.insert("escalated".into(), json!(why));
                    why
                } else {
                    body.insert("state".into(), json!("open"));
                    format!("the claim by {by} expired at {until}")
                };
                let record = write_body(tx, &actor, &current, body, &note(why.clone()))?;
                touched = Touched::record(&id, record.version, why);
                Ok(escalate)
            })();
            (outcome, touched)
        });
        match escalated {
            Ok(true) => done.escalated += 1,
            Ok(false) => done.reopened += 1,
            // Claimed again or ended between the query and the write.
            Err(CallError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    done.lost_runs = close_lost_runs(store.conn(), now)?;
    Ok(done)
}

/// Grace after a run's deadline before it counts as lost.
const LOST_GRACE_MS: i64 = 60_000;

/// Closes runs still `running` a minute past their plugin's deadline: the
/// process running them died (a run past its deadline is always stopped).
fn close_lost_runs(conn: &Connection, now: DateTime<Utc>) -> rusqlite::Result<usize> {
    let running: Vec<(String, String, Option<i64>)> = conn
        .prepare_cached(
            "SELECT r.id, r.started_at, json_extract(p.manifest, '$.limits.timeout_ms')
             FROM runs r LEFT JOIN plugins p ON p.id = r.plugin
             WHERE r.outcome = 'running'",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut closed = 0;
    for (id, started, timeout) in running {
        let Ok(started) = DateTime::parse_from_rfc3339(&started) else {
            continue;
        };
        let timeout =
            timeout.unwrap_or(i64::try_from(crate::manifest::MAX_TIMEOUT_MS).unwrap_or(0));
        let limit = started.with_timezone(&Utc)
            + chrono::Duration::milliseconds(timeout.saturating_add(LOST_GRACE_MS));
        if limit < now {
            closed += usize::from(crate::plugins::close_lost_run(conn, &id, &stamp(now))?);
        }
    }
    Ok(closed)
}

#[cfg(test)]
mod tests;
