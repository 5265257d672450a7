//! Makes the HTTP request it is asked to and reports what came back as
//! JSON in its summary: `{"url":U}` (a URL, or `web:/path` on its `web`
//! endpoint), with optional `"auth"` (an Authorization header value, which
//! may hold `{{secret:NAME}}`), `"follow"` (follow one redirect),
//! `"timeout_ms"` and `"keep"` (store the body as a `test/page` record).
//! `{"tcp":NAME,"send":TEXT}` sends TEXT over a TCP connection to endpoint
//! NAME and reports the first line back; `{"tcp_to":"HOST:PORT"}` tries a
//! connection to an address of its own choosing. `{"secret":NAME}` reads
//! secret NAME and reports its length (never the value).

use std::time::Duration;

use keel_agent::prelude::*;
use serde_json::{Value, json};

struct Fetch;

fn url_of(input: &Value) -> Result<String, Error> {
    let url = input["url"].as_str().unwrap_or_default();
    match url.strip_prefix("web:") {
        Some(path) => http::endpoint("web", path),
        None => Ok(url.to_string()),
    }
}

fn fetch(input: &Value, url: &str) -> Result<http::Response, Error> {
    let mut request = http::get(url);
    if let Some(auth) = input["auth"].as_str() {
        request = request.header("authorization", auth);
    }
    if let Some(ms) = input["timeout_ms"].as_u64() {
        request = request.timeout(Duration::from_millis(ms));
    }
    request.send()
}

fn tcp(input: &Value) -> Result<Value, Error> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = match input["tcp_to"].as_str() {
        Some(to) => std::net::TcpStream::connect(to)
            .map_err(|e| Error::Denied(format!("connect {to}: {e}")))?,
        None => net::connect(input["tcp"].as_str().unwrap_or_default())?,
    };
    let send = input["send"].as_str().unwrap_or("ping\n");
    stream
        .write_all(send.as_bytes())
        .map_err(|e| Error::Unavailable(format!("write: {e}")))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| Error::Unavailable(format!("read: {e}")))?;
    Ok(json!({ "line": line.trim_end() }))
}

fn answer(input: &Value) -> Result<Value, Error> {
    if let Some(name) = input["secret"].as_str() {
        return Ok(json!({ "len": secrets::get(name)?.len() }));
    }
    if input.get("tcp").is_some() || input.get("tcp_to").is_some() {
        return tcp(input);
    }
    let url = url_of(input)?;
    let mut response = fetch(input, &url)?;
    if input["follow"].as_bool() == Some(true)
        && (300..400).contains(&response.status)
        && let Some(next) = response.header("location").map(str::to_string)
    {
        response = fetch(input, &next)?;
    }
    let text = String::from_utf8_lossy(&response.body);
    if input["keep"].as_bool() == Some(true) {
        actions::create_json(
            "test/page",
            &json!({ "url": url, "text": text }).to_string(),
            None,
            WriteOptions::new(),
        )?;
    }
    Ok(json!({
        "status": response.status,
        "len": response.body.len(),
        "text": text.chars().take(200).collect::<String>(),
    }))
}

impl Agent for Fetch {
    fn handle(trigger: Trigger) -> Result<Outcome, Error> {
        let input: Value = serde_json::from_str(trigger.input.as_deref().unwrap_or("{}"))
            .map_err(|e| Error::Invalid(format!("input: {e}")))?;
        let result = match answer(&input) {
            Ok(v) => json!({ "ok": v }),
            Err(e) => {
                let kind = format!("{e:?}");
                let kind = kind.split('(').next().unwrap_or_default();
                let kind = kind.rsplit("::").next().unwrap_or_default().to_lowercase();
                json!({ "err": kind, "message": e.message() })
            }
        };
        Ok(Outcome::new(result.to_string()))
    }
}

keel_agent::export_agent!(Fetch);
