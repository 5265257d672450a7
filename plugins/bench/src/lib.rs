//! The agent `keel bench` measures: `{"op":"noop"}` returns at once,
//! `{"op":"create","n":N}` creates N small `bench/item` records,
//! `{"op":"http","n":N}` makes N GETs on its `web` endpoint.

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
            "http" => {
                let url = http::endpoint("web", "/bench")?;
                for _ in 0..input.n {
                    let response = http::get(&url).send()?;
                    if response.status != 200 {
                        return Err(Error::Unavailable(format!(
                            "GET {url}: {}",
                            response.status
                        )));
                    }
                }
                Ok(Outcome::new(format!("{} requests", input.n)))
            }
            other => Err(Error::Invalid(format!(
                "unknown op `{other}`; use noop, create or http"
            ))),
        }
    }
}

keel_agent::export_agent!(Bench);
