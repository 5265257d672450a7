//! {{name}}: keeps a `core/note` for each title it is given.
//!
//! Input: `{"title": TITLE, "text": TEXT}`. The note's identity is
//! `("{{name}}", TITLE)`, so running again with the same title returns the
//! note it already made instead of a second one.

use keel_agent::prelude::*;

struct Plugin;

#[derive(serde::Deserialize)]
struct Input {
    title: String,
    #[serde(default)]
    text: String,
}

impl Agent for Plugin {
    fn handle(trigger: Trigger) -> Result<Outcome, Error> {
        let input: Input = serde_json::from_str(trigger.input.as_deref().unwrap_or("{}"))
            .map_err(|e| Error::Invalid(format!(r#"give {{"title": TITLE, "text": TEXT}}: {e}"#)))?;
        if input.title.is_empty() {
            return Err(Error::Invalid("the title is empty".into()));
        }
        let note = core::Note {
            title: input.title.clone(),
            text: input.text,
            note_type: "note".into(),
        };
        let created = actions::create(
            core::NOTE,
            &note,
            Some(Identity::new("{{name}}", &input.title)),
            WriteOptions::new().note("from input"),
        )?;
        let said = if created.existed { "already had" } else { "created" };
        log::info(&format!("{said} note {}", created.record.id));
        Ok(Outcome::new(format!("{said} note {}", created.record.id)))
    }
}

keel_agent::export_agent!(Plugin);
