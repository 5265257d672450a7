//! The listener: one thread accepts, each connection gets its own, and
//! an authentic request is recorded once (nonce, event, job, audit).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::params;

use super::auth::{Refusal, Signed, Target, admit, count_refusal, signature_holds};
use super::http::{READ_TIMEOUT, REQUEST_DEADLINE, Reply, read_body, read_head, reply, respond};
use super::{MAX_CONNECTIONS, REPLAY_WINDOW_SECS, receiver, seal_plaintext};
use crate::home::Home;
use crate::records::{Event, insert_event};
use crate::store::audit;
use crate::store::{Store, Touched};

/// Signatures remembered per hook inside the replay window; past this the
/// hook answers 429 until older ones expire, so the table stays bounded.
pub(super) const MAX_NONCES_PER_HOOK: i64 = 10_000;

/// What recording an authentic request came to.
pub(super) enum Recorded {
    Job(String),
    Replay,
    Full,
}

/// Checks the signature over the body, then records the request once: the
/// nonce, the event, the job and the audit entry in one transaction.
pub(super) fn accept(
    db: &mut Store,
    target: &Target,
    signed: &Signed,
    body: &[u8],
    now_unix: i64,
) -> Reply {
    let (plugin, hook) = (&target.plugin, &target.hook);
    if !signature_holds(&target.secret, &signed.timestamp, &signed.signature, body) {
        count_refusal(db.conn(), plugin, hook, Refusal::BadSignature);
        return reply(
            401,
            "the signature does not match; sign TIMESTAMP.BODY with the hook's current secret (see `keel plugin webhook rotate`)",
        );
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return reply(
            400,
            "the body must be UTF-8 text (JSON is passed on as JSON)",
        );
    };
    let value: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()));
    let request = Request {
        input: serde_json::json!({ "hook": hook, "body": value }).to_string(),
        nonce: hex::encode(&signed.signature),
        // A stale timestamp is refused before this, so a signature need
        // only be remembered until its own timestamp leaves the window.
        expires: signed
            .timestamp
            .parse::<i64>()
            .unwrap_or(now_unix)
            .saturating_add(REPLAY_WINDOW_SECS),
        detail: format!("hook {hook} of {plugin}, {} bytes", body.len()),
    };
    let result = db.in_call(|tx| record(tx, target, &request, now_unix));
    answer(db, target, result)
}

/// An authentic request, ready to record.
struct Request {
    /// The job's input: the hook's name and the body.
    input: String,
    /// The signature, hex: the request's nonce.
    nonce: String,
    /// When the nonce may be forgotten (Unix seconds).
    expires: i64,
    /// The audit entry's detail.
    detail: String,
}

/// Records `request` once, inside the call's transaction: the nonce (a
/// replay or a full hook stops here), the event, the job, the audit entry.
fn record(
    tx: &rusqlite::Connection,
    target: &Target,
    request: &Request,
    now_unix: i64,
) -> Result<Recorded, crate::error::CallError> {
    let (plugin, hook) = (&target.plugin, &target.hook);
    tx.execute(
        "DELETE FROM webhook_nonces WHERE plugin = ?1 AND hook = ?2 AND expires < ?3",
        params![plugin, hook, now_unix],
    )?;
    let held: i64 = tx.query_row(
        "SELECT count(*) FROM webhook_nonces WHERE plugin = ?1 AND hook = ?2",
        params![plugin, hook],
        |r| r.get(0),
    )?;
    if held >= MAX_NONCES_PER_HOOK {
        return Ok(Recorded::Full);
    }
    let fresh = tx.execute(
        "INSERT INTO webhook_nonces (plugin, hook, signature, expires) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO NOTHING",
        params![plugin, hook, request.nonce, request.expires],
    )?;
    if fresh == 0 {
        return Ok(Recorded::Replay);
    }
    let actor = receiver();
    let data = serde_json::json!({"plugin": plugin, "hook": hook}).to_string();
    insert_event(tx, Event::WebhookReceived, None, None, &actor, Some(&data))?;
    let seq = tx.last_insert_rowid();
    let job = crate::jobs::enqueue::webhook(tx, plugin, &request.input, seq)?;
    let touched = Touched::detail(format!("{}: job {job}", request.detail));
    audit::append(tx, &actor, "webhook.receive", &touched, "allowed")?;
    Ok(Recorded::Job(job))
}

/// The reply to a request whose recording came to `result`; replays and
/// a full hook are counted as refusals.
fn answer(db: &Store, target: &Target, result: Result<Recorded, crate::error::CallError>) -> Reply {
    let (plugin, hook) = (&target.plugin, &target.hook);
    match result {
        Ok(Recorded::Job(job)) => Reply {
            status: 202,
            body: serde_json::json!({ "job": job }),
        },
        Ok(Recorded::Replay) => {
            count_refusal(db.conn(), plugin, hook, Refusal::Replay);
            reply(
                409,
                "this signed request was already received; a new delivery needs a new timestamp or body",
            )
        }
        Ok(Recorded::Full) => {
            count_refusal(db.conn(), plugin, hook, Refusal::Full);
            reply(
                429,
                format!(
                    "this hook took {MAX_NONCES_PER_HOOK} requests in the last {REPLAY_WINDOW_SECS} s; retry later"
                ),
            )
        }
        Err(e) => {
            tracing::warn!("webhook /hooks/{plugin}/{hook}: {e}");
            reply(503, "keel could not record the request; retry later")
        }
    }
}

/// Seconds since the Unix epoch, as the timestamps are.
pub(super) fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Serves webhooks on `addr` until `stop` is set. Returns the address it
/// listens on (the port chosen, for `:0`) and the accepting thread; each
/// connection is served on its own thread, bounded by [`MAX_CONNECTIONS`]
/// and [`REQUEST_DEADLINE`].
pub fn serve(
    home: &Home,
    addr: &str,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr} ({e}); pass a free address like --listen 127.0.0.1:7373"
        )
    })?;
    let local = listener
        .local_addr()
        .context("the webhook listener has no address")?;
    // Polled so the thread sees `stop` without a connection arriving.
    listener
        .set_nonblocking(true)
        .context("cannot set up the webhook listener")?;
    let mut db = home.store()?;
    seal_plaintext(home, &mut db)?;
    let db = Arc::new(Mutex::new(db));
    let home = home.clone();
    let active = Arc::new(AtomicUsize::new(0));
    let handle = std::thread::Builder::new()
        .name("keel-webhooks".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => admit_connection(&home, &db, &active, stream),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => {
                        tracing::warn!("webhook listener: {e}");
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        })
        .context("cannot start the webhook listener")?;
    Ok((local, handle))
}

/// Gives a new connection its own thread, or a 503 when
/// [`MAX_CONNECTIONS`] are already being served.
pub(super) fn admit_connection(
    home: &Home,
    db: &Arc<Mutex<Store>>,
    active: &Arc<AtomicUsize>,
    mut stream: TcpStream,
) {
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
        active.fetch_sub(1, Ordering::SeqCst);
        respond(
            &mut stream,
            &reply(503, "too many webhook connections at once; retry shortly"),
        );
        return;
    }
    /// Frees the connection's slot however its thread ends.
    struct Slot(Arc<AtomicUsize>);
    impl Drop for Slot {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let slot = Slot(active.clone());
    let (home, db) = (home.clone(), db.clone());
    let spawned = std::thread::Builder::new()
        .name("keel-webhook-conn".into())
        .spawn(move || {
            let _slot = slot;
            serve_connection(&home, &db, stream);
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot serve a webhook connection: {e}");
    }
}

pub(super) fn lock(db: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    // A panic while holding the store leaves it usable: each call is its
    // own transaction.
    db.lock().unwrap_or_else(|p| p.into_inner())
}

/// One request on one connection, then the connection closes.
pub(super) fn serve_connection(home: &Home, db: &Mutex<Store>, mut stream: TcpStream) {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let reply = match read_head(&mut stream, deadline) {
        Err(Some(r)) => r,
        // The client went away or sent nothing: nothing to answer.
        Err(None) => return,
        Ok(head) => {
            let now_unix = unix_now();
            let admitted = admit(home, &lock(db), &head, now_unix);
            match admitted {
                Err(r) => r,
                Ok((target, signed, length)) => {
                    match read_body(&mut stream, head.rest, length, deadline) {
                        Ok(body) => accept(&mut lock(db), &target, &signed, &body, now_unix),
                        Err(e) => {
                            count_refusal(
                                lock(db).conn(),
                                &target.plugin,
                                &target.hook,
                                Refusal::Timeout,
                            );
                            tracing::info!(
                                "webhook {}: body not received ({e}), {} bytes max",
                                head.path,
                                target.max_bytes
                            );
                            reply(
                                408,
                                format!(
                                    "the body did not arrive in time ({} s without data, or {} s in all); send it with the headers",
                                    READ_TIMEOUT.as_secs(),
                                    REQUEST_DEADLINE.as_secs()
                                ),
                            )
                        }
                    }
                }
            }
        }
    };
    tracing::info!(status = reply.status, "webhook request");
    respond(&mut stream, &reply);
}
