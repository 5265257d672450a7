//! An OpenAI-compatible server: `POST {base_url}/chat/completions` and
//! `POST {base_url}/embeddings`, one request at a time, no streaming.

use std::time::Duration;

use serde_json::{Value, json};

use super::config::{Provider, SchemaFormat};
use super::{Answer, ChatRequest, Failure, Vectors};

/// One request's HTTP exchange on a current-thread runtime.
fn post(
    provider: &Provider,
    path: &str,
    body: &Value,
    timeout: Duration,
) -> Result<Value, Failure> {
    let url = format!("{}/{path}", provider.base_url.trim_end_matches('/'));
    let key = match (&provider.api_key, &provider.api_key_env) {
        (Some(Ok(key)), _) => Some(key.clone()),
        (Some(Err(why)), _) => return Err(Failure::Permanent(why.clone())),
        (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
            Failure::Permanent(format!(
                "the API key variable {var} is not set in keel's environment"
            ))
        })?),
        (None, None) => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Transient(format!("cannot start I/O: {e}"), None))?;
    keel_registry::remote::install_crypto();
    let client = reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .build()
        .map_err(|e| Failure::Transient(e.to_string(), None))?;
    runtime.block_on(async {
        let mut request = client.post(&url).json(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| broken(&url, timeout, &e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response
            .text()
            .await
            .map_err(|e| broken(&url, timeout, &e))?;
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(Failure::Transient(
                format!("{url} answered {status}"),
                retry_after,
            ));
        }
        if !status.is_success() {
            let detail: String = text.chars().take(200).collect();
            return Err(Failure::Permanent(format!(
                "{url} answered {status}: {detail}"
            )));
        }
        serde_json::from_str(&text)
            .map_err(|e| Failure::Transient(format!("{url} answered malformed JSON ({e})"), None))
    })
}

/// A request that got no complete answer: worth retrying.
fn broken(url: &str, timeout: Duration, e: &reqwest::Error) -> Failure {
    let what = if e.is_timeout() {
        format!("no answer within {} ms", timeout.as_millis())
    } else {
        keel_registry::remote::root_cause(e)
    };
    Failure::Transient(format!("{url}: {what}"), None)
}

fn malformed(what: &str) -> Failure {
    Failure::Transient(format!("the answer has no {what}"), None)
}

/// A chat completion.
pub fn chat(
    provider: &Provider,
    model: &str,
    req: &ChatRequest,
    timeout: Duration,
) -> Result<Answer, Failure> {
    let messages: Vec<Value> = req
        .messages
        .iter()
        .map(|(role, content)| json!({ "role": role, "content": content }))
        .collect();
    let mut body = json!({
        "model": model,
        "messages": messages,
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
    });
    if let Some(schema) = &req.schema {
        body["response_format"] = match provider.schema_format {
            SchemaFormat::JsonSchema => json!({
                "type": "json_schema",
                "json_schema": { "name": "answer", "schema": schema, "strict": true },
            }),
            SchemaFormat::JsonObject => json!({ "type": "json_object", "schema": schema }),
        };
    }
    let v = post(provider, "chat/completions", &body, timeout)?;
    let choice = v["choices"].get(0).ok_or_else(|| malformed("choices"))?;
    let text = choice["message"]["content"]
        .as_str()
        .ok_or_else(|| malformed("message content"))?
        .to_string();
    let count = |k: &str| u32::try_from(v["usage"][k].as_u64().unwrap_or(0)).unwrap_or(u32::MAX);
    Ok(Answer {
        text,
        // The operator's name for it: servers name models differently
        // (llama.cpp answers with a file path).
        model: model.to_string(),
        tokens_in: count("prompt_tokens"),
        tokens_out: count("completion_tokens"),
        finish_reason: choice["finish_reason"]
            .as_str()
            .unwrap_or("stop")
            .to_string(),
    })
}

/// Embeddings of `texts`.
pub fn embed(
    provider: &Provider,
    model: &str,
    texts: &[String],
    timeout: Duration,
) -> Result<Vectors, Failure> {
    let body = json!({ "model": model, "input": texts });
    let v = post(provider, "embeddings", &body, timeout)?;
    let data = v["data"].as_array().ok_or_else(|| malformed("data"))?;
    if data.len() != texts.len() {
        return Err(Failure::Transient(
            format!(
                "the answer has {} vectors for {} texts",
                data.len(),
                texts.len()
            ),
            None,
        ));
    }
    let mut vectors = vec![Vec::new(); texts.len()];
    for (i, item) in data.iter().enumerate() {
        let at = item["index"]
            .as_u64()
            .map_or(i, |n| usize::try_from(n).unwrap_or(i));
        let vector: Vec<f32> = item["embedding"]
            .as_array()
            .ok_or_else(|| malformed("embedding"))?
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                Failure::Permanent(
                    "the server answered something other than one vector per text (per-token vectors?); serve an embedding model that pools".into(),
                )
            })?;
        *vectors
            .get_mut(at)
            .ok_or_else(|| malformed("valid index"))? = vector;
    }
    let tokens_in = u32::try_from(v["usage"]["prompt_tokens"].as_u64().unwrap_or(0)).unwrap_or(0);
    Ok(Vectors {
        vectors,
        model: model.to_string(),
        tokens_in,
    })
}
