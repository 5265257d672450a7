//! Asks the host's models what its input says:
//! `{"op":"complete","tier":"small"|"large","prompt":P,"max_tokens":N,"temperature":T,"schema":S}`
//! (or `"schema_text":"..."`, the schema as text in its own key order)
//! answers with the completion as JSON (text, model, tokens, cached) and
//! keeps the text as a `test/answer` record whose note names the model
//! (with `"repeat":N`, asks N times and answers with each result or error);
//! `{"op":"embed","texts":[...]}` answers with the model, the dimension and
//! the cosine similarity of the first two texts;
//! `{"op":"remember","text":T,"metadata":M,"sources":[..],"supersedes":ID}`
//! answers with the memory, `{"op":"recall","query":Q,"k":K}` with what was
//! recalled (with `"filter":{"by_plugin","source","metadata","since"}`,
//! among the memories it lets through), `{"op":"set"|"get","scope":"run"|"plugin","key":K,"value":V,"ttl":S}`
//! with the working-memory value (`"op":"run-scope"` sets and gets within one
//! run); `{"op":"summarize","title":T,"text":X,"covers":[..]}` writes a
//! session summary and answers with its note and memory.

use keel_agent::llm::{CompletionRequest, Message, Tier};
use keel_agent::memory::Scope;
use keel_agent::prelude::*;

struct Asker;

/// The strings of a JSON array (none when it is not one).
fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

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
                if let Some(text) = input["schema_text"].as_str() {
                    request = request.schema_text(text);
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
                let texts = strings(&input["texts"]);
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
            Some("summarize") => {
                let (note, memory) = memory::summarize(
                    input["title"].as_str().unwrap_or_default(),
                    input["text"].as_str().unwrap_or_default(),
                    &strings(&input["covers"]),
                )?;
                let summary = serde_json::json!({ "note": note.id, "memory": memory.id });
                Ok(Outcome::new(summary.to_string()))
            }
            Some("remember") => {
                let sources = strings(&input["sources"]);
                let metadata = if input["metadata"].is_object() {
                    input["metadata"].clone()
                } else {
                    serde_json::json!({})
                };
                let m = memory::remember(
                    input["text"].as_str().unwrap_or_default(),
                    &metadata,
                    &sources,
                    input["supersedes"].as_str(),
                )?;
                let summary = serde_json::json!({
                    "id": m.id, "text": m.text, "by": m.by, "sources": m.sources,
                    "supersedes": m.supersedes,
                });
                Ok(Outcome::new(summary.to_string()))
            }
            Some("recall") => {
                let query = input["query"].as_str().unwrap_or_default();
                let k = input["k"].as_u64().unwrap_or(5) as u32;
                let found = match input["filter"].as_object() {
                    None => memory::recall(query, k)?,
                    Some(f) => {
                        let mut filter = memory::Filter::new();
                        if let Some(p) = f.get("by_plugin").and_then(|v| v.as_str()) {
                            filter = filter.by_plugin(p);
                        }
                        if let Some(r) = f.get("source").and_then(|v| v.as_str()) {
                            filter = filter.source(r);
                        }
                        if let Some(m) = f.get("metadata") {
                            filter = filter.metadata(m.clone());
                        }
                        if let Some(t) = f.get("since").and_then(|v| v.as_str()) {
                            filter = filter.since(t);
                        }
                        memory::recall_where(query, k, &filter)?
                    }
                };
                let summary: Vec<serde_json::Value> = found
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "id": r.memory.id, "text": r.memory.text, "score": r.score,
                            "sources": r.memory.sources,
                        })
                    })
                    .collect();
                Ok(Outcome::new(serde_json::Value::from(summary).to_string()))
            }
            Some(op @ ("set" | "get" | "run-scope")) => {
                let scope = match input["scope"].as_str() {
                    Some("run") => Scope::Run,
                    _ => Scope::Plugin,
                };
                let key = input["key"].as_str().unwrap_or("k");
                if op != "get" {
                    let ttl = input["ttl"].as_u64().map(|t| t as u32);
                    memory::set(scope, key, &input["value"], ttl)?;
                }
                if op == "set" {
                    return Ok(Outcome::new("set".to_string()));
                }
                let value: Option<serde_json::Value> = memory::get(scope, key)?;
                Ok(Outcome::new(
                    serde_json::json!({ "value": value }).to_string(),
                ))
            }
            _ => Err(Error::Invalid(
                "input op must be complete, embed, remember, recall, set, get or run-scope".into(),
            )),
        }
    }
}

keel_agent::export_agent!(Asker);
