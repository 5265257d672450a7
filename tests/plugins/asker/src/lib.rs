//! Asks the host's models what its input says:
//! `{"op":"complete","tier":"small"|"large","prompt":P,"max_tokens":N,"temperature":T,"schema":S}`
//! answers with the completion as JSON (text, model, tokens, cached) and
//! keeps the text as a `test/answer` record whose note names the model
//! (with `"repeat":N`, asks N times and answers with each result or error);
//! `{"op":"embed","texts":[...]}` answers with the model, the dimension and
//! the cosine similarity of the first two texts.

use keel_agent::llm::{CompletionRequest, Message, Tier};
use keel_agent::prelude::*;

struct Asker;

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b)).max(f32::EPSILON)
}

impl Agent for Asker {
    fn handle(trigger: Trigger) -> Result<Outcome, Error> {
        let input: serde_json::Value =
            serde_json::from_str(trigger.input.as_deref().unwrap_or("{}"))
                .map_err(|e| Error::Invalid(format!("input: {e}")))?;
        match input["op"].as_str() {
            Some("complete") => {
                let tier = match input["tier"].as_str() {
                    Some("large") => Tier::Large,
                    _ => Tier::Small,
                };
                let prompt = input["prompt"].as_str().unwrap_or_default();
                let mut request = CompletionRequest::new(tier, vec![Message::user(prompt)])
                    .max_tokens(input["max_tokens"].as_u64().unwrap_or(32) as u32)
                    .temperature(input["temperature"].as_f64().unwrap_or(0.0) as f32);
                if input["schema"].is_object() {
                    request = request.schema(&input["schema"]);
                }
                if let Some(n) = input["repeat"].as_u64() {
                    let results: Vec<serde_json::Value> = (0..n)
                        .map(|_| match llm::complete(&request) {
                            Ok(c) => serde_json::json!({ "model": c.model, "text": c.text }),
                            Err(e) => serde_json::json!({ "error": format!("{e:?}") }),
                        })
                        .collect();
                    return Ok(Outcome::new(serde_json::Value::from(results).to_string()));
                }
                let c = llm::complete(&request)?;
                let body = serde_json::json!({ "text": c.text, "prompt": prompt });
                actions::create(
                    "test/answer",
                    &body,
                    None,
                    WriteOptions::new().note(format!("answered by {}", c.model)),
                )?;
                let summary = serde_json::json!({
                    "text": c.text,
                    "model": c.model,
                    "tokens_in": c.tokens_in,
                    "tokens_out": c.tokens_out,
                    "finish_reason": c.finish_reason,
                    "cached": c.cached,
                });
                Ok(Outcome::new(summary.to_string()))
            }
            Some("embed") => {
                let texts: Vec<String> = input["texts"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| t.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let e = llm::embed(&texts)?;
                let similarity = match e.vectors.as_slice() {
                    [a, b, ..] => Some(cosine(a, b)),
                    _ => None,
                };
                let summary = serde_json::json!({
                    "model": e.model,
                    "dimension": e.dimension,
                    "vectors": e.vectors.len(),
                    "similarity": similarity,
                });
                Ok(Outcome::new(summary.to_string()))
            }
            _ => Err(Error::Invalid(
                "input op must be `complete` or `embed`".into(),
            )),
        }
    }
}

keel_agent::export_agent!(Asker);
