//! What a run learns about why it runs: the plugin and run that caused it,
//! and the event (and record) that woke it.

use rusqlite::OptionalExtension;

use crate::run::{Cause, RunCtx};
use crate::store::Store;

/// The plugin and run that caused a run, when another plugin's run did: the
/// invoking run, or the run that scheduled the job.
pub(super) fn caused_by(
    db: &Store,
    cause: Cause<'_>,
) -> anyhow::Result<Option<(String, Option<String>)>> {
    Ok(match cause {
        Cause::Invoke {
            by_plugin, by_run, ..
        } => Some((by_plugin.to_string(), by_run.map(str::to_string))),
        Cause::Job(job) => db
            .conn()
            .query_row(
                "SELECT r.plugin, r.id FROM jobs j JOIN runs r ON r.id = j.created_by_run WHERE j.id = ?1",
                [job],
                |r| Ok((r.get::<_, String>(0)?, Some(r.get::<_, String>(1)?))),
            )
            .optional()?,
        _ => None,
    })
}

/// The event that woke a plugin, and its record when the plugin may read
/// it (handing the record over is audited like a read).
pub(super) fn event_for(
    host: &mut RunCtx,
    seq: i64,
) -> anyhow::Result<(
    Option<crate::bindings::types::Event>,
    Option<crate::bindings::types::Record>,
)> {
    let event: Option<(String, Option<String>, String)> = host
        .db
        .conn()
        .query_row(
            "SELECT name, record_id, at FROM events WHERE seq = ?1",
            [seq],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((name, record_id, at)) = event else {
        anyhow::bail!("event {seq} no longer exists");
    };
    let record = match &record_id {
        Some(id) => {
            let grant = host.grant.clone();
            host.db
                .read(&host.actor, "trigger.record", |conn| {
                    let found = crate::records::get(conn, id)
                        .map_err(crate::error::CallError::from)
                        .and_then(|r| {
                            r.ok_or_else(|| {
                                crate::error::CallError::NotFound(format!("no record with id {id}"))
                            })
                        })
                        .and_then(|r| {
                            grant
                                .check_read_record(&r.id, &r.kind)
                                .map(|()| r)
                                .map_err(crate::error::CallError::Denied)
                        });
                    let touched = match &found {
                        Ok(r) => crate::store::Touched::record(
                            &r.id,
                            r.version,
                            format!("event {seq} {name}"),
                        ),
                        Err(_) => crate::store::Touched::detail(format!("event {seq} {name}")),
                    };
                    (found, touched)
                })
                .ok()
        }
        None => None,
    };
    let event = crate::bindings::types::Event {
        seq: u64::try_from(seq).unwrap_or(0),
        name,
        record_id,
        at,
    };
    Ok((Some(event), record.map(Into::into)))
}
