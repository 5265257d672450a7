//! Tries, on request, to read, claim or use more than its grant allows,
//! and reports what the host answered as JSON in its summary:
//! `{"op":"find","source":S,"id":E}`, `{"op":"get","id":I}`,
//! `{"op":"create","kind":K,"source":S,"id":E}` (a record by identity),
//! `{"op":"links","id":I}`,
//! `{"op":"source","id":I}` (a `probe/note` naming record I as its source),
//! `{"op":"link","to":I}` (a new `probe/note` linked to record I),
//! `{"op":"run-memory"}` (64 KiB values in run memory until refused),
//! `{"op":"writes","n":N}` (N `probe/note` records),
//! `{"op":"schedule","n":N,"at":T}` (N jobs for itself at T).

use keel_agent::prelude::*;
use serde_json::{Value, json};

struct Probe;

/// What a call answered: `{"ok": ...}` or `{"err": kind, "message": ...}`.
fn answer<T>(r: Result<T, Error>, ok: impl FnOnce(T) -> Value) -> Value {
    match r {
        Ok(v) => json!({ "ok": ok(v) }),
        Err(e) => {
            // `Error::Denied("...")` -> `denied`.
            let kind = format!("{e:?}");
            let kind = kind.split('(').next().unwrap_or_default();
            let kind = kind.rsplit("::").next().unwrap_or_default().to_lowercase();
            json!({ "err": kind, "message": e.message() })
        }
    }
}

fn record(r: Record) -> Value {
    json!({ "id": r.id, "kind": r.kind, "body": r.body, "version": r.version, "created_by": r.created_by })
}

fn note(text: &str, options: WriteOptions) -> Result<Created, Error> {
    actions::create("probe/note", &json!({ "text": text }), None, options)
}

impl Agent for Probe {
    fn handle(trigger: Trigger) -> Result<Outcome, Error> {
        let input: Value = serde_json::from_str(trigger.input.as_deref().unwrap_or("{}"))
            .map_err(|e| Error::Invalid(format!("input: {e}")))?;
        let s = |k: &str| input[k].as_str().unwrap_or_default().to_string();
        let result = match input["op"].as_str().unwrap_or_default() {
            "find" => answer(records::find(&Identity::new(&s("source"), &s("id"))), |r| {
                r.map(record).unwrap_or(Value::Null)
            }),
            "get" => answer(records::get(&s("id")), record),
            "create" => answer(
                actions::create(
                    &s("kind"),
                    &json!({ "text": "planted by the probe" }),
                    Some(Identity::new(&s("source"), &s("id"))),
                    WriteOptions::new(),
                ),
                |c| json!({ "existed": c.existed, "record": record(c.record) }),
            ),
            "links" => answer(records::links(&s("id"), None), |links| {
                json!(
                    links
                        .iter()
                        .map(|l| json!([l.from, l.to, l.rel]))
                        .collect::<Vec<_>>()
                )
            }),
            "source" => answer(note("derived", WriteOptions::new().source(&s("id"))), |c| {
                json!(c.record.id)
            }),
            "link" => answer(
                note("linked", WriteOptions::new())
                    .and_then(|c| actions::link(&c.record.id, &s("to"), "about")),
                |()| json!(null),
            ),
            "run-memory" => {
                // A JSON string of 64 KiB, quotes included.
                let value = "x".repeat(64 * 1024 - 2);
                let mut n = 0;
                let stop = loop {
                    match memory::set(memory::Scope::Run, &format!("k{n}"), &value, None) {
                        Ok(()) => n += 1,
                        Err(e) => break e,
                    }
                    if n > 100_000 {
                        return Err(Error::Internal("run memory was never bounded".into()));
                    }
                };
                json!({ "kept": n, "err": answer::<()>(Err(stop), |_| Value::Null) })
            }
            "writes" => {
                let n = input["n"].as_u64().unwrap_or(0);
                let mut made = 0;
                let mut last = Value::Null;
                for i in 0..n {
                    match note(&format!("note {i}"), WriteOptions::new()) {
                        Ok(_) => made += 1,
                        Err(e) => last = answer::<()>(Err(e), |_| Value::Null),
                    }
                }
                json!({ "made": made, "last": last })
            }
            "schedule" => {
                let n = input["n"].as_u64().unwrap_or(0);
                let at = input["at"].as_str();
                let jobs: Vec<Value> = (0..n)
                    .map(|_| {
                        answer(
                            actions::schedule(
                                "test-probe",
                                &json!({"op": "none"}),
                                at,
                                WriteOptions::new(),
                            ),
                            Value::String,
                        )
                    })
                    .collect();
                json!(jobs)
            }
            "none" => json!(null),
            other => return Err(Error::Invalid(format!("unknown op `{other}`"))),
        };
        Ok(Outcome::new(result.to_string()))
    }
}

keel_agent::export_agent!(Probe);
