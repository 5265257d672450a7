//! Creates or updates `test/item` records as its input says:
//! `{"op":"create","text":T,"kind":K,"sleep_ms":MS,"confidence":C}` (kind `test/item` unless given, after MS ms;
//! identity = T; the summary is the record id) or
//! `{"op":"update","id":I,"expected":N,"text":T}` or
//! `{"op":"schedule","plugin":P,"input":J,"at":T}` (the summary is the job id) or
//! `{"op":"burst","n":N}` (N jobs creating `burst-0`..`burst-N-1`) or
//! `{"op":"invoke","action":A,"input":I,"key":K}` (the summary is the output) or
//! `{"op":"send","message":M,"confidence":C}` (the summary is the outbox id and state) or
//! `{"op":"checkpoint"}` (the summary is the refusal an agent gets).
//! Woken by an event, it echoes it: one new record per event, of the kind in
//! config `echo-kind` (`test/item` when unset), so manifests that subscribe
//! it to what it (or another copy of it) writes make loops on purpose.

use keel_agent::prelude::*;

struct Writer;

impl Agent for Writer {
    fn handle(trigger: Trigger) -> Result<Outcome, Error> {
        if let Some(event) = &trigger.event {
            let kind = config::get("echo-kind")?.unwrap_or_else(|| "test/item".into());
            let text = format!("echo of event {}", event.seq);
            let body = serde_json::json!({ "text": text });
            let identity = Identity::new("test", &text);
            let created = actions::create(&kind, &body, Some(identity), WriteOptions::new())?;
            return Ok(Outcome::new(created.record.id));
        }
        let input: serde_json::Value =
            serde_json::from_str(trigger.input.as_deref().unwrap_or("{}"))
                .map_err(|e| Error::Invalid(format!("input: {e}")))?;
        let text = input["text"].as_str().unwrap_or_default();
        let body = serde_json::json!({ "text": text });
        match input["op"].as_str() {
            Some("create") => {
                if let Some(ms) = input["sleep_ms"].as_u64() {
                    // A slow job: time for a test to stop the worker mid-run.
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                }
                let kind = input["kind"].as_str().unwrap_or("test/item");
                let identity = Identity::new("test", text);
                let mut options = WriteOptions::new();
                if let Some(c) = input["confidence"].as_f64() {
                    options = options.confidence(c as f32);
                }
                let created = actions::create(kind, &body, Some(identity), options)?;
                Ok(Outcome::new(created.record.id))
            }
            Some("update") => {
                let id = input["id"].as_str().unwrap_or_default();
                let expected = input["expected"].as_u64().unwrap_or(0);
                let record = actions::update(id, expected, &body, WriteOptions::new())?;
                Ok(Outcome::new(format!(
                    "updated to version {}",
                    record.version
                )))
            }
            Some("invoke") => {
                let action = input["action"].as_str().unwrap_or_default();
                let mut options = WriteOptions::new();
                if let Some(key) = input["key"].as_str() {
                    options = options.key(key);
                }
                let output: serde_json::Value = actions::invoke(action, &input["input"], options)?;
                Ok(Outcome::new(output.to_string()))
            }
            Some("burst") => {
                let n = input["n"].as_u64().unwrap_or(0);
                for i in 0..n {
                    let job = serde_json::json!({"op": "create", "text": format!("burst-{i}")});
                    actions::schedule("test-writer", &job, None, WriteOptions::new())?;
                }
                Ok(Outcome::new(format!("{n} jobs")))
            }
            Some("schedule") => {
                let plugin = input["plugin"].as_str().unwrap_or("test-writer");
                let at = input["at"].as_str();
                let job = actions::schedule(plugin, &input["input"], at, WriteOptions::new())?;
                Ok(Outcome::new(job))
            }
            Some("send") => {
                let confidence = input["confidence"].as_f64().unwrap_or(0.0) as f32;
                let options = WriteOptions::new().confidence(confidence).note("test send");
                let receipt = actions::send("email", &input["message"], options)?;
                Ok(Outcome::new(format!("{} {:?}", receipt.id, receipt.state)))
            }
            Some("checkpoint") => {
                // An agent has no sync to checkpoint: the refusal is the summary.
                let refused = actions::checkpoint("{}").err();
                Ok(Outcome::new(format!("{refused:?}")))
            }
            _ => Err(Error::Invalid(
                "op must be create, update, schedule or send".into(),
            )),
        }
    }
}

keel_agent::export_agent!(Writer);
