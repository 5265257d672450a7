//! Offers four actions: `make` creates a `test/made` record under this
//! plugin's own grant and returns `{"id": ID}`; `fail` returns `invalid`;
//! `who` returns its caller (`{"plugin": P, "run": R}` or `null`) and
//! refuses callers named in its input's `refuse`; `spin` computes for
//! `ms` milliseconds.

use keel_provider::prelude::*;

struct TestProvider;

impl Provider for TestProvider {
    fn perform(action: String, input: String) -> Result<String, Error> {
        let input: serde_json::Value =
            serde_json::from_str(&input).map_err(|e| Error::Invalid(format!("input: {e}")))?;
        match action.as_str() {
            "make" => {
                let text = input["text"].as_str().unwrap_or_default();
                let body = serde_json::json!({ "text": text });
                let identity = Identity::new("made", text);
                let created =
                    actions::create("test/made", &body, Some(identity), WriteOptions::new())?;
                Ok(serde_json::json!({ "id": created.record.id }).to_string())
            }
            "fail" => Err(Error::Invalid("asked to fail".into())),
            "who" => match config::caller() {
                Some(c) if input["refuse"].as_str() == Some(c.plugin.as_str()) => Err(
                    Error::Denied(format!("{} is not a caller this provider serves", c.plugin)),
                ),
                Some(c) => Ok(serde_json::json!({ "plugin": c.plugin, "run": c.run }).to_string()),
                None => Ok("null".into()),
            },
            "spin" => {
                let ms = input["ms"].as_u64().unwrap_or(0);
                let started = std::time::Instant::now();
                while started.elapsed() < std::time::Duration::from_millis(ms) {}
                Ok("{}".into())
            }
            other => Err(Error::NotFound(format!("no action {other}"))),
        }
    }
}

keel_provider::export_provider!(TestProvider);
