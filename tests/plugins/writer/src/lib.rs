//! Creates or updates `test/item` records as its input says:
//! `{"op":"create","text":T}` (identity = T; the summary is the record id) or
//! `{"op":"update","id":I,"expected":N,"text":T}`.

use keel_agent::prelude::*;

struct Writer;

impl Agent for Writer {
    fn handle(trigger: Trigger) -> Result<Outcome, Error> {
        let input: serde_json::Value =
            serde_json::from_str(trigger.input.as_deref().unwrap_or("{}"))
                .map_err(|e| Error::Invalid(format!("input: {e}")))?;
        let text = input["text"].as_str().unwrap_or_default();
        let body = serde_json::json!({ "text": text });
        match input["op"].as_str() {
            Some("create") => {
                let identity = Identity::new("test", text);
                let created =
                    actions::create("test/item", &body, Some(identity), WriteOptions::new())?;
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
            _ => Err(Error::Invalid("op must be create or update".into())),
        }
    }
}

keel_agent::export_agent!(Writer);
