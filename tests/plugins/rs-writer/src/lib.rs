//! The writer scenario, written the same way in Rust (here), Python
//! (`tests/plugins-py/py-writer`), JavaScript (`tests/plugins-js/js-writer`)
//! and C (`tests/plugins-c/c-writer`) so one test can hold them all to the
//! same records, audit and errors.
//!
//! Given `{"text": T}`: creates a `test/item` `{"text": T}` with identity
//! `("writer", T)`; when it is new, updates it to `{"text": T, "lang":
//! "rust"}` (version 2); reads it back; tries a write its manifest does not
//! grant (`test/secret`); answers `{"created", "existed", "version",
//! "undeclared"}`. Input without a text is `invalid`.

use keel_agent::prelude::*;

struct RsWriter;

const LANG: &str = "rust";

impl Agent for RsWriter {
    fn handle(trigger: Trigger) -> Result<Outcome, Error> {
        let given: serde_json::Value =
            serde_json::from_str(trigger.input.as_deref().unwrap_or("{}"))
                .map_err(|e| Error::Invalid(format!("input is not JSON: {e}")))?;
        let text = match given["text"].as_str() {
            Some(t) if !t.is_empty() => t,
            _ => return Err(Error::Invalid(r#"give {"text": TEXT}"#.into())),
        };
        let options = || WriteOptions::new().note(format!("{LANG}-writer"));
        let created = actions::create(
            "test/item",
            &serde_json::json!({ "text": text }),
            Some(Identity::new("writer", text)),
            options(),
        )?;
        let id = created.record.id.clone();
        if !created.existed {
            actions::update(
                &id,
                1,
                &serde_json::json!({ "text": text, "lang": LANG }),
                options(),
            )?;
        }
        let read = records::get(&id)?;
        log::info(&format!("wrote {id} at version {}", read.version));
        let undeclared = match actions::create(
            "test/secret",
            &serde_json::json!({ "text": text }),
            None,
            options(),
        ) {
            Ok(_) => "allowed",
            Err(Error::Denied(_)) => "denied",
            Err(_) => "other",
        };
        let summary = serde_json::json!({
            "created": id,
            "existed": created.existed,
            "version": read.version,
            "undeclared": undeclared,
        });
        Ok(Outcome::new(summary.to_string()))
    }
}

keel_agent::export_agent!(RsWriter);
