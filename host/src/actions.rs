//! The action registry: the named operations plugins call to change the
//! world. Each core action checks the caller's grant, validates its input
//! and goes through [`Store::write`], the one write path.

mod host;
pub use host::{ActionsView, add_to_linker};
pub mod invoke;
pub mod tasks;

use serde::{Deserialize, Serialize};

use crate::error::CallError;
use crate::grant::Grant;
use crate::limits;
use crate::manifest::{Policy, valid_kind};
use crate::outbox::{self, NewSend, SendState};
use crate::records::{self, Event, Provenance, Record};
use crate::store::{Actor, Store, Touched, now};

crate::store::stored_names! {
    /// The actions keel itself provides, as grants and the audit log name
    /// them.
    pub enum CoreAction ("a core action") {
        Create = "create",
        Update = "update",
        Link = "link",
        Schedule = "schedule",
        Send = "send",
        Claim = "claim",
        Complete = "complete",
        Release = "release",
        /// Runs an action a provider plugin offers (`actions.invoke`).
        Invoke = "invoke",
    }
}

/// One entry of the registry, as `keel actions list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ActionSpec {
    pub name: &'static str,
    pub provider: &'static str,
    pub description: &'static str,
    /// What the grant must contain.
    pub needs: &'static str,
    /// JSON Schema of the input.
    pub input: serde_json::Value,
}

/// The core actions, provided by the host.
pub fn core_actions() -> Vec<ActionSpec> {
    use serde_json::json;
    let opts = json!({"type": "object", "properties": {
        "idempotency-key": {"type": "string"}, "sources": {"type": "array", "items": {"type": "string"}},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1}, "note": {"type": "string"}}});
    vec![
        ActionSpec {
            name: CoreAction::Create.as_str(),
            provider: "keel",
            description: "Create a record; an existing identity returns the existing record",
            needs: "actions: create; write: the kind",
            input: json!({"type": "object", "required": ["kind", "body"], "properties": {
                "kind": {"type": "string"}, "body": {"type": "object"},
                "identity": {"type": "object", "properties": {"source": {"type": "string"}, "external-id": {"type": "string"}}},
                "options": opts}}),
        },
        ActionSpec {
            name: CoreAction::Update.as_str(),
            provider: "keel",
            description: "Replace a record's body if it is still at the expected version",
            needs: "actions: update; write: the record's kind",
            input: json!({"type": "object", "required": ["id", "expected-version", "body"], "properties": {
                "id": {"type": "string"}, "expected-version": {"type": "integer", "minimum": 1},
                "body": {"type": "object"}, "options": opts}}),
        },
        ActionSpec {
            name: CoreAction::Link.as_str(),
            provider: "keel",
            description: "Add a typed link between two records",
            needs: "actions: link; write: the from kind; read or write: the to kind",
            input: json!({"type": "object", "required": ["from", "to", "rel"], "properties": {
                "from": {"type": "string"}, "to": {"type": "string"}, "rel": {"type": "string"}}}),
        },
        ActionSpec {
            name: CoreAction::Schedule.as_str(),
            provider: "keel",
            description: "Store a durable job that runs a plugin with an input at a time",
            needs: "actions: schedule; schedule: the plugin",
            input: json!({"type": "object", "required": ["plugin", "input"], "properties": {
                "plugin": {"type": "string"}, "input": {}, "at": {"type": "string", "format": "date-time"},
                "options": opts}}),
        },
        ActionSpec {
            name: CoreAction::Send.as_str(),
            provider: "keel",
            description: "Queue a message for a channel; low confidence waits for review",
            needs: "actions: send; send: the channel",
            input: json!({"type": "object", "required": ["channel", "message"], "properties": {
                "channel": {"type": "string"}, "message": {"type": "object"}, "options": opts}}),
        },
        ActionSpec {
            name: CoreAction::Claim.as_str(),
            provider: "keel",
            description: "Lease an open core/task exclusively for a while (release gives it back)",
            needs: "actions: claim; read: core/task",
            input: json!({"type": "object", "required": ["task", "ttl-ms"], "properties": {
                "task": {"type": "string"}, "ttl-ms": {"type": "integer", "minimum": 1, "maximum": crate::actions::tasks::MAX_CLAIM_MS}}}),
        },
        ActionSpec {
            name: CoreAction::Complete.as_str(),
            provider: "keel",
            description: "End a claimed core/task as done, failed or blocked, with a result",
            needs: "actions: complete; a live claim on the task",
            input: json!({"type": "object", "required": ["task", "end", "result"], "properties": {
                "task": {"type": "string"}, "end": {"enum": ["done", "failed", "blocked"]},
                "result": {}, "options": opts}}),
        },
    ]
}

/// The caller of an action: who, and under which grant and policy.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub actor: &'a Actor,
    pub grant: &'a Grant,
    pub policy: &'a Policy,
}

/// Why and how safely a write happens (mirrors WIT `write-options`).
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub idempotency_key: Option<String>,
    pub sources: Vec<String>,
    pub confidence: Option<f32>,
    pub note: Option<String>,
}

/// The result of `create`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Created {
    pub record: Record,
    pub existed: bool,
}

/// Where a send went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SendReceipt {
    pub id: String,
    pub state: SendState,
}

fn deny(reason: String, touched: Touched) -> Result<(), (String, Touched)> {
    Err((reason, touched))
}

/// Size checks made before the grant check (the grant check needs these
/// values); a failure is audited like any refused call.
fn precheck(
    store: &mut Store,
    caller: Caller<'_>,
    action: CoreAction,
    checks: impl FnOnce() -> Result<(), CallError>,
) -> Result<(), CallError> {
    checks().map_err(|e| store.refuse(caller.actor, action.as_str(), e))
}

fn check_key(opts: &WriteOptions) -> Result<(), CallError> {
    match &opts.idempotency_key {
        Some(key) => limits::check_len("idempotency key", key, limits::MAX_NAME_BYTES),
        None => Ok(()),
    }
}

/// Puts a version written with less confidence than the writer's review
/// gate (the operator's, made stricter by the manifest) up for review (a
/// write without a confidence makes no claim and is not).
pub(crate) fn flag_unsure(
    tx: &rusqlite::Connection,
    caller: Caller<'_>,
    record: &Record,
    prov: &Provenance,
) -> Result<(), CallError> {
    let gate = caller.policy.under(caller.grant.review_below);
    if gate.flags_write(prov.confidence) {
        records::flag_for_review(tx, &record.id, record.version)?;
    }
    Ok(())
}

/// Validates options and turns them into provenance. A source must be a
/// record the caller may read; one it may not read is refused exactly like
/// one that does not exist, so sources reveal nothing.
pub(crate) fn provenance(
    conn: &rusqlite::Connection,
    grant: &Grant,
    opts: &WriteOptions,
) -> Result<Provenance, CallError> {
    if opts.sources.len() > limits::MAX_SOURCES {
        return Err(CallError::Limit(format!(
            "{} sources given; at most {} are kept",
            opts.sources.len(),
            limits::MAX_SOURCES
        )));
    }
    for source in &opts.sources {
        limits::check_len("source id", source, limits::MAX_NAME_BYTES)?;
        let readable = records::kind_of(conn, source)?.is_some_and(|k| grant.can_read(&k));
        if !readable {
            return Err(CallError::Invalid(format!(
                "source record {source} does not exist or may not be read under this grant"
            )));
        }
    }
    if let Some(c) = opts.confidence
        && !(0.0..=1.0).contains(&c)
    {
        return Err(CallError::Invalid(format!(
            "confidence {c} is outside 0.0..=1.0"
        )));
    }
    if let Some(note) = &opts.note {
        limits::check_len("note", note, limits::MAX_NOTE_BYTES)?;
    }
    Ok(Provenance {
        sources: opts.sources.clone(),
        models: Vec::new(),
        confidence: opts.confidence,
        note: opts.note.clone(),
    })
}

/// The answer to `create` for an identity that exists: the record when the
/// caller may read its kind; otherwise only that it exists, with its id and
/// no body (and a conflict that does not name the other kind when the kinds
/// differ).
fn existing_identity(
    grant: &Grant,
    existing: Record,
    kind: &str,
    (source, external_id): (&str, &str),
) -> Result<Created, CallError> {
    let readable = grant.can_read(&existing.kind);
    if existing.kind != kind {
        return Err(CallError::Conflict(if readable {
            format!(
                "identity ({source}, {external_id}) belongs to a `{}` record, not `{kind}`",
                existing.kind
            )
        } else {
            format!("identity ({source}, {external_id}) belongs to a record of another kind")
        }));
    }
    let record = if readable {
        existing
    } else {
        Record {
            body: "{}".into(),
            created_at: String::new(),
            updated_at: String::new(),
            created_by: String::new(),
            updated_by: String::new(),
            ..existing
        }
    };
    Ok(Created {
        record,
        existed: true,
    })
}

/// `create`: a new record, or the existing one for a known identity.
pub fn create(
    store: &mut Store,
    caller: Caller<'_>,
    kind: &str,
    body: &str,
    identity: Option<(&str, &str)>,
    opts: &WriteOptions,
) -> Result<Created, CallError> {
    precheck(store, caller, CoreAction::Create, || {
        limits::check_len("kind", kind, limits::MAX_NAME_BYTES)?;
        check_key(opts)
    })?;
    let permit = caller
        .grant
        .check_write(CoreAction::Create.as_str(), kind)
        .and_then(|()| match identity {
            Some((source, _)) => caller
                .grant
                .check_identity_source(&caller.actor.plugin, source),
            None => Ok(()),
        })
        .or_else(|reason| deny(reason, Touched::detail(format!("kind {kind}"))));
    store.write(
        caller.actor,
        CoreAction::Create.as_str(),
        opts.idempotency_key.as_deref(),
        permit,
        |tx| {
            let mut touched = Touched::detail(format!("kind {kind}"));
            let result = (|| {
                if !valid_kind(kind) {
                    return Err(CallError::Invalid(format!(
                        "kind `{kind}` must look like `namespace/name`"
                    )));
                }
                limits::check_body(body)?;
                if let Some((source, external_id)) = identity {
                    limits::check_len("identity source", source, limits::MAX_NAME_BYTES)?;
                    limits::check_len("identity external id", external_id, limits::MAX_NAME_BYTES)?;
                    if let Some(existing) = records::find_identity(tx, source, external_id)? {
                        touched = Touched::record(
                            &existing.id,
                            existing.version,
                            format!("identity ({source}, {external_id}) exists: nothing written"),
                        );
                        return existing_identity(
                            caller.grant,
                            existing,
                            kind,
                            (source, external_id),
                        );
                    }
                }
                let prov = provenance(tx, caller.grant, opts)?;
                let record = records::insert_new(tx, caller.actor, kind, body, identity, &prov)?;
                flag_unsure(tx, caller, &record, &prov)?;
                // The identity is what ties the record to its source: the
                // audit shows it, so "which file made this" needs no join.
                let detail = match identity {
                    Some((source, external_id)) => {
                        format!("kind {kind}, identity ({source}, {external_id})")
                    }
                    None => format!("kind {kind}"),
                };
                touched = Touched::record(&record.id, 1, detail);
                Ok(Created {
                    record,
                    existed: false,
                })
            })();
            (result, touched)
        },
    )
}

/// `update`: a new version, only if the record is still at `expected`.
pub fn update(
    store: &mut Store,
    caller: Caller<'_>,
    id: &str,
    expected: i64,
    body: &str,
    opts: &WriteOptions,
) -> Result<Record, CallError> {
    precheck(store, caller, CoreAction::Update, || {
        limits::check_len("record id", id, limits::MAX_NAME_BYTES)?;
        check_key(opts)
    })?;
    // A record's kind never changes, so checking it before the transaction
    // is as good as inside it.
    let kind = records::get(store.conn(), id)?.map(|r| r.kind);
    let permit = match &kind {
        Some(kind) => caller
            .grant
            .check_write_record(CoreAction::Update.as_str(), id, kind)
            .or_else(|reason| {
                deny(
                    reason,
                    Touched::record(id, expected, format!("kind {kind}")),
                )
            }),
        None => caller
            .grant
            .allows_action(CoreAction::Update.as_str())
            .then_some(())
            .ok_or((
                "action `update` is not granted".to_string(),
                Touched::detail(id),
            )),
    };
    store.write(
        caller.actor,
        CoreAction::Update.as_str(),
        opts.idempotency_key.as_deref(),
        permit,
        |tx| {
            let mut touched = Touched::record(id, expected, "");
            let result = (|| {
                limits::check_body(body)?;
                let current = records::get(tx, id)?
                    .ok_or_else(|| CallError::NotFound(format!("no record with id {id}")))?;
                if current.version != expected {
                    touched = Touched::record(id, current.version, "");
                    return Err(CallError::Conflict(format!(
                        "record {id} is at version {}, not {expected}; read it again and retry",
                        current.version
                    )));
                }
                let prov = provenance(tx, caller.grant, opts)?;
                let record = records::update_body(tx, caller.actor, &current, body, &prov)?;
                flag_unsure(tx, caller, &record, &prov)?;
                touched = Touched::record(id, record.version, format!("kind {}", record.kind));
                Ok(record)
            })();
            (result, touched)
        },
    )
}

/// `link`: a typed edge, idempotent.
pub fn link(
    store: &mut Store,
    caller: Caller<'_>,
    from: &str,
    to: &str,
    rel: &str,
) -> Result<(), CallError> {
    precheck(store, caller, CoreAction::Link, || {
        limits::check_len("record id", from, limits::MAX_NAME_BYTES)?;
        limits::check_len("record id", to, limits::MAX_NAME_BYTES)?;
        limits::check_len("relation", rel, limits::MAX_NAME_BYTES)
    })?;
    let detail = format!("{rel} -> {to}");
    let from_kind = records::kind_of(store.conn(), from)?;
    let to_kind = records::kind_of(store.conn(), to)?;
    let grant = caller.grant;
    let permit = grant
        .check_link(
            from_kind.as_deref().map(|k| (from, k)),
            to_kind.as_deref().map(|k| (to, k)),
        )
        .map_err(|reason| (reason, Touched::detail(&detail)));
    let mut touched = Touched::detail(&detail);
    touched.record_id = Some(from.to_string());
    store.write(
        caller.actor,
        CoreAction::Link.as_str(),
        None,
        permit,
        |tx| {
            let result = (|| {
                if rel.is_empty()
                    || !rel
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '-' || c == '/')
                {
                    return Err(CallError::Invalid(format!(
                        "relation `{rel}` must be lowercase letters, `-` and `/`"
                    )));
                }
                for id in [from, to] {
                    if records::get(tx, id)?.is_none() {
                        return Err(CallError::NotFound(format!("no record with id {id}")));
                    }
                }
                records::insert_link(tx, caller.actor, from, to, rel)?;
                Ok(())
            })();
            (result, touched)
        },
    )
}

/// `schedule`: a durable job for the scheduler.
pub fn schedule(
    store: &mut Store,
    caller: Caller<'_>,
    plugin: &str,
    input: &str,
    at: Option<&str>,
    opts: &WriteOptions,
) -> Result<String, CallError> {
    precheck(store, caller, CoreAction::Schedule, || {
        limits::check_len("plugin id", plugin, limits::MAX_NAME_BYTES)?;
        check_key(opts)
    })?;
    let detail = format!("plugin {plugin}");
    let grant = caller.grant;
    let permit = grant
        .check_schedule(plugin)
        .map_err(|reason| (reason, Touched::detail(&detail)));
    store.write(
        caller.actor,
        CoreAction::Schedule.as_str(),
        opts.idempotency_key.as_deref(),
        permit,
        |tx| {
            let mut touched = Touched::detail(&detail);
            let result = (|| {
                limits::check_json("input", input)?;
                // A time in the past is now: an early time must not put a
                // job ahead of the ones already due.
                let now_s = now();
                let run_at = match at {
                    Some(at) => chrono::DateTime::parse_from_rfc3339(at)
                        .map_err(|e| {
                            CallError::Invalid(format!("time `{at}` is not RFC 3339 ({e})"))
                        })?
                        .with_timezone(&chrono::Utc)
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                        .max(now_s.clone()),
                    None => now_s.clone(),
                };
                if crate::plugins::get(tx, plugin)?.is_none() {
                    return Err(CallError::NotFound(format!(
                        "no installed plugin `{plugin}`"
                    )));
                }
                let run = caller.actor.run_id.as_deref();
                let id = crate::jobs::enqueue::schedule(tx, plugin, input, &run_at, run)?;
                let data =
                    serde_json::json!({"job": id, "plugin": plugin, "at": run_at}).to_string();
                records::insert_event(
                    tx,
                    Event::JobScheduled,
                    None,
                    None,
                    caller.actor,
                    Some(&data),
                )?;
                touched = Touched::detail(format!("job {id} for {plugin} at {run_at}"));
                Ok(id)
            })();
            (result, touched)
        },
    )
}

/// `send`: an outbox entry, queued or waiting for review.
pub fn send(
    store: &mut Store,
    caller: Caller<'_>,
    channel: &str,
    message: &str,
    opts: &WriteOptions,
) -> Result<SendReceipt, CallError> {
    precheck(store, caller, CoreAction::Send, || {
        limits::check_len("channel", channel, limits::MAX_NAME_BYTES)?;
        check_key(opts)
    })?;
    let detail = format!("channel {channel}");
    let grant = caller.grant;
    let permit = grant
        .check_send(channel)
        .map_err(|reason| (reason, Touched::detail(&detail)));
    store.write(
        caller.actor,
        CoreAction::Send.as_str(),
        opts.idempotency_key.as_deref(),
        permit,
        |tx| {
            let mut touched = Touched::detail(&detail);
            let result = (|| {
                limits::check_body(message)?;
                let prov = provenance(tx, caller.grant, opts)?;
                // The operator's gate, which the manifest can only tighten.
                let gate = caller.policy.under(caller.grant.review_below);
                let state = if gate.holds_send(prov.confidence) {
                    SendState::NeedsReview
                } else {
                    SendState::Queued
                };
                let id = outbox::queue(
                    tx,
                    &NewSend {
                        channel,
                        message,
                        state,
                        confidence: prov.confidence,
                        plugin: &caller.actor.plugin,
                        run_id: caller.actor.run_id.as_deref(),
                        sources: &prov.sources,
                        note: prov.note.as_deref(),
                    },
                )?;
                let event = match state {
                    SendState::Queued => Event::SendQueued,
                    _ => Event::SendNeedsReview,
                };
                let data = serde_json::json!({"outbox": id, "channel": channel}).to_string();
                records::insert_event(tx, event, None, None, caller.actor, Some(&data))?;
                touched = Touched::detail(format!("outbox {id} via {channel}: {state}"));
                Ok(SendReceipt { id, state })
            })();
            (result, touched)
        },
    )
}
