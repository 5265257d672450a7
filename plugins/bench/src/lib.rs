//! The agent `keel bench` measures: `{"op":"noop"}` returns at once,
//! `{"op":"create","n":N}` creates N small `bench/item` records.

use keel_agent::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    op: String,
    #[serde(default)]
    n: u32,
}

struct Bench;

impl Agent for Bench {
    fn handle(trigger: Trigger) -> Result<Outcome, Error> {
        let input: Input =
            serde_json::from_str(trigger.input.as_deref().unwrap_or(r#"{"op":"noop"}"#))
                .map_err(|e| Error::Invalid(format!("bench input: {e}")))?;
        match input.op.as_str() {
            "noop" => Ok(Outcome::new("ok")),
            "create" => {
                for i in 0..input.n {
                    let body = serde_json::json!({ "i": i, "text": format!("bench item {i} lorem ipsum dolor sit amet") });
                    actions::create("bench/item", &body, None, WriteOptions::new())?;
                }
                Ok(Outcome::new(format!("created {}", input.n)))
            }
            other => Err(Error::Invalid(format!(
                "unknown op `{other}`; use noop or create"
            ))),
        }
    }
}

keel_agent::export_agent!(Bench);
