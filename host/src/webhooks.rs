//! Webhooks: event-driven ingestion beside polling. A plugin declares
//! `[[triggers]] webhook = "NAME"`; install gives the hook a secret; `keel
//! up --listen ADDR` accepts `POST /hooks/<plugin>/<NAME>` authenticated by
//! that secret (`Authorization: Bearer SECRET`, or `X-Keel-Signature:
//! sha256=HEX`, an HMAC-SHA256 of the body keyed by the secret), bounded
//! by the hook's size limit. An accepted POST becomes a `webhook.received`
//! event and a job for the plugin in one transaction (an agent gets
//! `{"hook": NAME, "body": BODY}` as its input; a connector is woken to
//! sync); every request that names a hook, accepted or refused, is audited.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use hmac::{Hmac, Mac};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::error::CallError;
use crate::home::Home;
use crate::manifest::{MAX_WEBHOOK_BYTES, Manifest};
use crate::store::jobs::Priority;
use crate::store::records::insert_event;
use crate::store::{Actor, Store, Touched, new_id, now};

/// The `cause` of a webhook job.
pub const CAUSE: &str = "webhook";

/// One hook of an installed plugin, as `keel plugin inspect` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hook {
    pub hook: String,
    /// The path to POST to on `keel up --listen`'s address.
    pub path: String,
    pub secret: String,
    pub max_bytes: u64,
}

fn path_of(plugin: &str, hook: &str) -> String {
    format!("/hooks/{plugin}/{hook}")
}

/// A new secret: 32 random bytes, hex.
fn new_secret() -> Result<String, CallError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| CallError::Internal(format!("no randomness for a webhook secret: {e}")))?;
    Ok(hex::encode(bytes))
}

/// Makes the webhooks table match `manifest` for its plugin, inside the
/// install's transaction: new hooks get a secret, kept hooks keep theirs,
/// hooks no longer declared are dropped.
pub fn sync(conn: &Connection, manifest: &Manifest) -> Result<(), CallError> {
    let plugin = &manifest.plugin.id;
    let declared: Vec<(&str, u64)> = manifest
        .triggers
        .iter()
        .filter_map(|t| {
            t.webhook
                .as_deref()
                .map(|h| (h, t.max_bytes.unwrap_or(MAX_WEBHOOK_BYTES)))
        })
        .collect();
    let names = serde_json::to_string(&declared.iter().map(|(h, _)| h).collect::<Vec<_>>())?;
    conn.execute(
        "DELETE FROM webhooks WHERE plugin = ?1 AND hook NOT IN (SELECT value FROM json_each(?2))",
        params![plugin, names],
    )?;
    for (hook, max_bytes) in declared {
        conn.execute(
            "INSERT INTO webhooks (plugin, hook, secret, max_bytes) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (plugin, hook) DO UPDATE SET max_bytes = excluded.max_bytes",
            params![plugin, hook, new_secret()?, max_bytes],
        )?;
    }
    Ok(())
}

/// Drops a removed plugin's hooks.
pub fn remove(conn: &Connection, plugin: &str) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM webhooks WHERE plugin = ?1", [plugin])?;
    Ok(())
}

/// The hooks of `plugin`.
pub fn list(conn: &Connection, plugin: &str) -> rusqlite::Result<Vec<Hook>> {
    conn.prepare("SELECT hook, secret, max_bytes FROM webhooks WHERE plugin = ?1 ORDER BY hook")?
        .query_map([plugin], |r| {
            let hook: String = r.get(0)?;
            Ok(Hook {
                path: path_of(plugin, &hook),
                hook,
                secret: r.get(1)?,
                max_bytes: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
            })
        })?
        .collect()
}

/// Whether any installed plugin declares a webhook.
pub fn any(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("SELECT EXISTS (SELECT 1 FROM webhooks)", [], |r| r.get(0))
}

/// Who receives webhooks, in versions and the audit log.
fn receiver() -> Actor {
    Actor {
        plugin: "webhook".into(),
        ..Actor::operator()
    }
}

/// A reply: status and one-line JSON body.
struct Reply {
    status: u16,
    body: serde_json::Value,
}

fn reply(status: u16, message: impl Into<String>) -> Reply {
    Reply {
        status,
        body: serde_json::json!({ "error": message.into() }),
    }
}

/// Whether the request carries the hook's secret.
fn authentic(secret: &str, bearer: Option<&str>, signature: Option<&str>, body: &[u8]) -> bool {
    if let Some(token) = bearer {
        return bool::from(token.as_bytes().ct_eq(secret.as_bytes()));
    }
    let Some(hex_sig) = signature.and_then(|s| s.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// What one POST brought.
struct Post<'a> {
    path: &'a str,
    bearer: Option<&'a str>,
    signature: Option<&'a str>,
    body: &'a [u8],
    /// True when the body was longer than what was read.
    truncated: bool,
}

/// Checks and records one POST: the event, the job and the audit entry.
fn receive(db: &mut Store, post: &Post<'_>) -> Result<Reply, CallError> {
    let Some(rest) = post.path.strip_prefix("/hooks/") else {
        return Ok(reply(404, "webhooks live under /hooks/<plugin>/<hook>"));
    };
    let Some((plugin, hook)) = rest.split_once('/') else {
        return Ok(reply(404, "webhooks live under /hooks/<plugin>/<hook>"));
    };
    let found: Option<(String, i64)> = db
        .conn()
        .query_row(
            "SELECT secret, max_bytes FROM webhooks WHERE plugin = ?1 AND hook = ?2",
            params![plugin, hook],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((secret, max_bytes)) = found else {
        return Ok(reply(404, format!("no webhook {}", post.path)));
    };
    let actor = receiver();
    let detail = format!("hook {hook} of {plugin}, {} bytes", post.body.len());
    if !authentic(&secret, post.bearer, post.signature, post.body) {
        let why = "the request does not carry the hook's secret";
        let _ = db.write::<(), _>(
            &actor,
            "webhook.receive",
            None,
            Err((why.to_string(), Touched::detail(&detail))),
            |_| unreachable!("refused before the change"),
        );
        return Ok(reply(
            401,
            "send the hook's secret as `Authorization: Bearer SECRET` or an HMAC-SHA256 of the body as `X-Keel-Signature: sha256=HEX`; see `keel plugin inspect`",
        ));
    }
    if post.truncated || i64::try_from(post.body.len()).unwrap_or(i64::MAX) > max_bytes {
        let err = CallError::Limit(format!("the body is over this hook's {max_bytes} bytes"));
        let _ = db.refuse(&actor, "webhook.receive", err);
        return Ok(reply(
            413,
            format!("the body is over this hook's {max_bytes} bytes"),
        ));
    }
    let Ok(text) = std::str::from_utf8(post.body) else {
        return Ok(reply(
            400,
            "the body must be UTF-8 text (JSON is passed on as JSON)",
        ));
    };
    let body: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()));
    let input = serde_json::json!({ "hook": hook, "body": body }).to_string();
    let (plugin, hook) = (plugin.to_string(), hook.to_string());
    let job = db.write(&actor, "webhook.receive", None, Ok(()), |tx| {
        let result = (|| {
            let data = serde_json::json!({"plugin": plugin, "hook": hook}).to_string();
            insert_event(tx, "webhook.received", None, None, &actor, Some(&data))?;
            let seq = tx.last_insert_rowid();
            let job = new_id();
            let at = now();
            tx.execute(
                "INSERT INTO jobs (id, plugin, input, run_at, priority, state, created_at, updated_at, cause, event_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?4, ?4, ?6, ?7)",
                params![job, plugin, input, at, Priority::Event as i64, CAUSE, seq],
            )?;
            Ok(job)
        })();
        let touched = match &result {
            Ok(job) => Touched::detail(format!("{detail}: job {job}")),
            Err(_) => Touched::detail(&detail),
        };
        (result, touched)
    })?;
    Ok(Reply {
        status: 202,
        body: serde_json::json!({ "job": job }),
    })
}

/// Serves webhooks on `addr` until `stop` is set. Returns the address it
/// listens on (the port chosen, for `:0`) and the serving thread.
pub fn serve(
    home: &Home,
    addr: &str,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    let server = tiny_http::Server::http(addr).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr} ({e}); pass a free address like --listen 127.0.0.1:7373"
        )
    })?;
    let local = server
        .server_addr()
        .to_ip()
        .context("the webhook listener has no IP address")?;
    let mut db = home.store()?;
    let handle = std::thread::Builder::new()
        .name("keel-webhooks".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match server.recv_timeout(Duration::from_millis(100)) {
                    Ok(Some(request)) => handle(&mut db, request),
                    Ok(None) => {}
                    Err(e) => tracing::warn!("webhook listener: {e}"),
                }
            }
        })
        .context("cannot start the webhook listener")?;
    Ok((local, handle))
}

fn header<'a>(request: &'a tiny_http::Request, name: &'static str) -> Option<&'a str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

fn handle(db: &mut Store, mut request: tiny_http::Request) {
    let reply = if *request.method() != tiny_http::Method::Post {
        reply(405, "webhooks take POST")
    } else {
        let path = request.url().split('?').next().unwrap_or("").to_string();
        let bearer = header(&request, "Authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let signature = header(&request, "X-Keel-Signature").map(str::to_string);
        // Read at most one byte past the largest hook, so an oversized body
        // is known as such without being held.
        let mut body = Vec::new();
        let read = request
            .as_reader()
            .take(MAX_WEBHOOK_BYTES + 1)
            .read_to_end(&mut body);
        match read {
            Err(e) => reply(400, format!("cannot read the body: {e}")),
            Ok(_) => {
                let truncated = body.len() as u64 > MAX_WEBHOOK_BYTES;
                let post = Post {
                    path: &path,
                    bearer: bearer.as_deref(),
                    signature: signature.as_deref(),
                    body: &body,
                    truncated,
                };
                receive(db, &post).unwrap_or_else(|e| {
                    tracing::warn!("webhook {path}: {e}");
                    reply(503, "keel could not record the request; retry later")
                })
            }
        }
    };
    tracing::info!(status = reply.status, "webhook request");
    let response = tiny_http::Response::from_string(reply.body.to_string())
        .with_status_code(reply.status)
        .with_header(
            tiny_http::Header::from_bytes("Content-Type", "application/json")
                .expect("a valid header"),
        );
    if let Err(e) = request.respond(response) {
        tracing::warn!("webhook reply not sent: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_or_the_bearer_secret_authenticates() {
        let body = br#"{"a":1}"#;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(authentic("s3cret", None, Some(&good), body));
        assert!(!authentic("s3cret", None, Some(&good), b"{\"a\":2}"));
        assert!(!authentic("other", None, Some(&good), body));
        assert!(!authentic("s3cret", None, Some("sha256=zz"), body));
        assert!(authentic("s3cret", Some("s3cret"), None, body));
        assert!(!authentic("s3cret", Some("s3cre"), None, body));
        assert!(!authentic("s3cret", None, None, body));
    }
}
