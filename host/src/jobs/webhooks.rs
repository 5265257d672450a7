//! Webhooks: event-driven ingestion beside polling. A plugin declares
//! `[[triggers]] webhook = "NAME"`; `keel up --listen ADDR` accepts
//! `POST /hooks/<plugin>/<NAME>`. An accepted POST becomes a
//! `webhook.received` event, a job for the plugin and an audit entry in one
//! transaction (an agent gets `{"hook": NAME, "body": BODY}` as its input; a
//! connector is woken to sync).
//!
//! # Signing a request
//!
//! Every request is signed with the hook's secret:
//!
//! ```text
//! X-Keel-Timestamp: UNIX_SECONDS
//! X-Keel-Signature: sha256=HEX(HMAC-SHA256(SECRET, UNIX_SECONDS + "." + BODY))
//! ```
//!
//! The timestamp must be within [`REPLAY_WINDOW_SECS`] of keel's clock, and
//! the signature is the request's nonce: keel remembers every signature it
//! accepted until its timestamp leaves the window, so the same signed
//! request sent again is refused with 409 (and a captured one is useless
//! once stale). Two identical bodies signed in the same second are one
//! delivery; a sender that repeats a body puts an id in it. A bearer secret
//! (`Authorization: Bearer`) is refused: it would let anyone who saw one
//! request replay it forever.
//!
//! # Order of checks
//!
//! What can be checked before the body is read is checked first: the hook
//! exists and has a secret, the timestamp is fresh, the signature header is
//! well-formed, `Content-Length` is within the hook's `max_bytes`. Only then
//! is the body read, under a per-read timeout and a deadline for the whole
//! request, and the HMAC checked in constant time. Each connection has its
//! own thread (at most [`MAX_CONNECTIONS`] at once), so one slow client
//! holds only its own.
//!
//! # Secrets and refusals
//!
//! A hook's secret is sealed under the home's secrets key (see
//! [`crate::secrets`]), shown once when it is made (at install, or by `keel
//! plugin webhook rotate PLUGIN HOOK`) and never again. Refused requests are
//! not audited one by one (anyone who can reach the listener could grow the
//! log without end): each is counted in a per hook and reason counter that
//! `keel plugin inspect` shows.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hmac::{Hmac, Mac};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::audit;
use crate::error::CallError;
use crate::home::Home;
use crate::manifest::{MAX_WEBHOOK_BYTES, Manifest};
use crate::records::insert_event;
use crate::store::{Actor, Store, Touched, now};

/// The `cause` of a webhook job.
pub const CAUSE: &str = "webhook";

/// How far a request's timestamp may be from keel's clock, either way.
pub const REPLAY_WINDOW_SECS: i64 = 300;
/// Connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 32;
/// Longest wait for the next bytes from a client.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a whole request may take to arrive.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// How long, and how many bytes, a connection is drained after its reply.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;
/// Largest request line plus headers.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Signatures remembered per hook inside the replay window; past this the
/// hook answers 429 until older ones expire, so the table stays bounded.
const MAX_NONCES_PER_HOOK: i64 = 10_000;

/// One hook of an installed plugin, as `keel plugin inspect` shows it: never
/// its secret.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hook {
    pub hook: String,
    /// The path to POST to on `keel up --listen`'s address.
    pub path: String,
    pub max_bytes: u64,
    /// Whether a secret was made (`keel plugin webhook rotate` makes one).
    pub has_secret: bool,
    /// Refused requests since the hook was made, by reason.
    pub refused: BTreeMap<String, u64>,
}

/// A secret just made for a hook: shown to the operator once.
#[derive(Clone, Serialize, PartialEq)]
pub struct Issued {
    pub plugin: String,
    pub hook: String,
    pub path: String,
    pub secret: String,
}

/// Written by hand so that no `{:?}` prints the secret.
impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("plugin", &self.plugin)
            .field("hook", &self.hook)
            .field("path", &self.path)
            .field("secret", &"(withheld)")
            .finish()
    }
}

fn path_of(plugin: &str, hook: &str) -> String {
    format!("/hooks/{plugin}/{hook}")
}

/// What a hook's sealed secret is bound to, so it opens for no other hook.
fn label(plugin: &str, hook: &str) -> String {
    format!("webhook:{plugin}/{hook}")
}

/// A new secret: 32 random bytes, hex.
fn new_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness for a webhook secret: {e}"))?;
    Ok(hex::encode(bytes))
}

/// Makes the webhooks table match `manifest` for its plugin, inside the
/// install's transaction: kept hooks keep their secret, hooks no longer
/// declared are dropped, new hooks get no secret yet ([`issue`] makes one
/// after the install, where the sealing key can be reached and the operator
/// shown it).
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
    for drop in [
        "DELETE FROM webhooks WHERE plugin = ?1 AND hook NOT IN (SELECT value FROM json_each(?2))",
        "DELETE FROM webhook_nonces WHERE plugin = ?1 AND hook NOT IN (SELECT value FROM json_each(?2))",
        "DELETE FROM webhook_refusals WHERE plugin = ?1 AND hook NOT IN (SELECT value FROM json_each(?2))",
    ] {
        conn.execute(drop, params![plugin, names])?;
    }
    for (hook, max_bytes) in declared {
        conn.execute(
            "INSERT INTO webhooks (plugin, hook, secret, max_bytes) VALUES (?1, ?2, '', ?3)
             ON CONFLICT (plugin, hook) DO UPDATE SET max_bytes = excluded.max_bytes",
            params![plugin, hook, max_bytes],
        )?;
    }
    Ok(())
}

/// Drops a removed plugin's hooks.
pub fn remove(conn: &Connection, plugin: &str) -> rusqlite::Result<()> {
    for drop in [
        "DELETE FROM webhooks WHERE plugin = ?1",
        "DELETE FROM webhook_nonces WHERE plugin = ?1",
        "DELETE FROM webhook_refusals WHERE plugin = ?1",
    ] {
        conn.execute(drop, [plugin])?;
    }
    Ok(())
}

/// The hooks of `plugin`.
pub fn list(conn: &Connection, plugin: &str) -> rusqlite::Result<Vec<Hook>> {
    let mut hooks: Vec<Hook> = conn
        .prepare(
            "SELECT hook, max_bytes, sealed IS NOT NULL OR secret != '' FROM webhooks
             WHERE plugin = ?1 ORDER BY hook",
        )?
        .query_map([plugin], |r| {
            let hook: String = r.get(0)?;
            Ok(Hook {
                path: path_of(plugin, &hook),
                hook,
                max_bytes: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                has_secret: r.get(2)?,
                refused: BTreeMap::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt =
        conn.prepare("SELECT reason, count FROM webhook_refusals WHERE plugin = ?1 AND hook = ?2")?;
    for hook in &mut hooks {
        for row in stmt.query_map(params![plugin, hook.hook], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })? {
            let (reason, count) = row?;
            hook.refused
                .insert(reason, u64::try_from(count).unwrap_or(0));
        }
    }
    Ok(hooks)
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

/// Seals a new secret for `plugin`'s `hook` and stores it, audited (by
/// name only) as the operator.
fn set_secret(home: &Home, db: &mut Store, plugin: &str, hook: &str) -> anyhow::Result<Issued> {
    let secret = new_secret()?;
    let sealed = crate::secrets::seal(home.root(), &label(plugin, hook), secret.as_bytes())?;
    let detail = format!("new secret for hook {hook} of {plugin}");
    db.write(&Actor::operator(), "webhook.secret", None, Ok(()), |tx| {
        let r = (|| {
            let changed = tx.execute(
                "UPDATE webhooks SET sealed = ?3, secret = '', created_at = ?4
                 WHERE plugin = ?1 AND hook = ?2",
                params![plugin, hook, sealed, now()],
            )?;
            if changed == 0 {
                return Err(CallError::NotFound(format!(
                    "{plugin} has no webhook `{hook}`; see `keel plugin inspect {plugin}`"
                )));
            }
            // Signatures made with the old secret stay refused as replays
            // until they expire; nothing else about the hook carries over.
            Ok(())
        })();
        (r, Touched::detail(&detail))
    })
    .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    Ok(Issued {
        plugin: plugin.to_string(),
        path: path_of(plugin, hook),
        hook: hook.to_string(),
        secret,
    })
}

/// Makes a secret for each hook of `plugin` that has none (new at this
/// install), returning them to be shown once.
pub fn issue(home: &Home, db: &mut Store, plugin: &str) -> anyhow::Result<Vec<Issued>> {
    let pending: Vec<String> = db
        .conn()
        .prepare(
            "SELECT hook FROM webhooks WHERE plugin = ?1 AND sealed IS NULL AND secret = ''
             ORDER BY hook",
        )?
        .query_map([plugin], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    pending
        .iter()
        .map(|hook| set_secret(home, db, plugin, hook))
        .collect()
}

/// `keel plugin webhook rotate PLUGIN HOOK`: a new secret replaces the old
/// one at once; the old one is refused from then on.
pub fn rotate(home: &Home, db: &mut Store, plugin: &str, hook: &str) -> anyhow::Result<Issued> {
    let known: bool = db.conn().query_row(
        "SELECT EXISTS (SELECT 1 FROM webhooks WHERE plugin = ?1 AND hook = ?2)",
        params![plugin, hook],
        |r| r.get(0),
    )?;
    if !known {
        bail!("{plugin} has no webhook `{hook}`; see `keel plugin inspect {plugin}` for its hooks");
    }
    set_secret(home, db, plugin, hook)
}

/// Seals the plaintext secrets an earlier keel stored, once, so senders
/// keep working across the upgrade.
pub fn seal_plaintext(home: &Home, db: &mut Store) -> anyhow::Result<()> {
    let plain: Vec<(String, String, String)> = db
        .conn()
        .prepare("SELECT plugin, hook, secret FROM webhooks WHERE secret != ''")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if plain.is_empty() {
        return Ok(());
    }
    // Overwrite the freed pages too, so the old text does not linger in the
    // file.
    db.conn().pragma_update(None, "secure_delete", "ON")?;
    for (plugin, hook, secret) in plain {
        let sealed = crate::secrets::seal(home.root(), &label(&plugin, &hook), secret.as_bytes())?;
        db.conn().execute(
            "UPDATE webhooks SET sealed = ?3, secret = '' WHERE plugin = ?1 AND hook = ?2",
            params![plugin, hook, sealed],
        )?;
    }
    Ok(())
}

/// A reply: status and one-line JSON body.
#[derive(Debug)]
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

/// Why a request to a known hook was refused: the counter's key.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Refusal {
    Unsigned,
    Stale,
    BadSignature,
    TooLarge,
    Timeout,
    Replay,
    Full,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::Unsigned => "unsigned",
            Refusal::Stale => "stale",
            Refusal::BadSignature => "bad-signature",
            Refusal::TooLarge => "too-large",
            Refusal::Timeout => "timeout",
            Refusal::Replay => "replay",
            Refusal::Full => "full",
        }
    }
}

/// Counts one refusal; rows are bounded by hooks times reasons.
fn count_refusal(conn: &Connection, plugin: &str, hook: &str, why: Refusal) {
    let r = conn.execute(
        "INSERT INTO webhook_refusals (plugin, hook, reason, count, first_at, last_at)
         VALUES (?1, ?2, ?3, 1, ?4, ?4)
         ON CONFLICT (plugin, hook, reason) DO UPDATE SET count = count + 1, last_at = excluded.last_at",
        params![plugin, hook, why.as_str(), now()],
    );
    if let Err(e) = r {
        tracing::warn!("could not count a refused webhook request: {e}");
    }
}

/// The hook a request names, with its opened secret and size limit.
struct Target {
    plugin: String,
    hook: String,
    secret: String,
    max_bytes: u64,
}

/// The signing headers, parsed.
struct Signed {
    timestamp: String,
    signature: Vec<u8>,
}

/// The request line and headers of one request.
struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    /// Bytes read past the headers: the start of the body.
    rest: Vec<u8>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Checks the HMAC of `timestamp.body` in constant time.
fn signature_holds(secret: &str, timestamp: &str, signature: &[u8], body: &[u8]) -> bool {
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(signature).is_ok()
}

/// The signing headers, or why they do not do.
fn signed_headers(head: &Head, now_unix: i64) -> Result<Signed, (Refusal, Reply)> {
    let signature = head.header("X-Keel-Signature");
    let timestamp = head.header("X-Keel-Timestamp");
    let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
        let why = if head.header("Authorization").is_some() {
            "a bearer secret is not accepted (it could be replayed); sign the request: X-Keel-Timestamp: UNIX_SECONDS and X-Keel-Signature: sha256=HMAC-SHA256(SECRET, TIMESTAMP.BODY)"
        } else {
            "sign the request: X-Keel-Timestamp: UNIX_SECONDS and X-Keel-Signature: sha256=HMAC-SHA256(SECRET, TIMESTAMP.BODY); the secret is shown at install or by `keel plugin webhook rotate`"
        };
        return Err((Refusal::Unsigned, reply(401, why)));
    };
    let fresh = timestamp.len() <= 12
        && timestamp.bytes().all(|b| b.is_ascii_digit())
        && timestamp
            .parse::<i64>()
            .is_ok_and(|t| (now_unix - t).abs() <= REPLAY_WINDOW_SECS);
    if !fresh {
        return Err((
            Refusal::Stale,
            reply(
                401,
                format!(
                    "X-Keel-Timestamp must be the current time in Unix seconds (within {REPLAY_WINDOW_SECS} s of keel's clock); sign again with the current time"
                ),
            ),
        ));
    }
    let bad = || {
        (
            Refusal::BadSignature,
            reply(
                401,
                "X-Keel-Signature must be sha256= and 64 hex digits of HMAC-SHA256(SECRET, TIMESTAMP.BODY)",
            ),
        )
    };
    let hex_sig = signature.strip_prefix("sha256=").ok_or_else(bad)?;
    if hex_sig.len() != 64 {
        return Err(bad());
    }
    let signature = hex::decode(hex_sig).map_err(|_| bad())?;
    Ok(Signed {
        timestamp: timestamp.to_string(),
        signature,
    })
}

/// Everything decided before the body is read: the hook, its secret, the
/// signing headers and the body's length; or the reply that ends it.
fn admit(
    home: &Home,
    db: &Store,
    head: &Head,
    now_unix: i64,
) -> Result<(Target, Signed, u64), Reply> {
    if head.method != "POST" {
        return Err(reply(405, "webhooks take POST"));
    }
    let not_here = || reply(404, "webhooks live under /hooks/<plugin>/<hook>");
    let rest = head.path.strip_prefix("/hooks/").ok_or_else(not_here)?;
    let (plugin, hook) = rest.split_once('/').ok_or_else(not_here)?;
    let found: Option<(Option<Vec<u8>>, i64)> = db
        .conn()
        .query_row(
            "SELECT sealed, max_bytes FROM webhooks WHERE plugin = ?1 AND hook = ?2",
            params![plugin, hook],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|e| {
            tracing::warn!("webhook {}: {e}", head.path);
            reply(503, "keel could not look the hook up; retry later")
        })?;
    let Some((sealed, max_bytes)) = found else {
        return Err(reply(404, format!("no webhook {}", head.path)));
    };
    let refuse = |why: Refusal, r: Reply| {
        count_refusal(db.conn(), plugin, hook, why);
        r
    };
    let Some(sealed) = sealed else {
        return Err(refuse(
            Refusal::Unsigned,
            reply(
                401,
                format!(
                    "this hook has no secret yet; the operator makes one with `keel plugin webhook rotate {plugin} {hook}`"
                ),
            ),
        ));
    };
    let signed = signed_headers(head, now_unix).map_err(|(why, r)| refuse(why, r))?;
    let max_bytes = u64::try_from(max_bytes).unwrap_or(0);
    let length = match head.header("Content-Length").map(str::parse::<u64>) {
        Some(Ok(n)) => n,
        Some(Err(_)) => return Err(reply(400, "Content-Length is not a number")),
        None => return Err(reply(411, "send the body with a Content-Length header")),
    };
    if length > max_bytes {
        return Err(refuse(
            Refusal::TooLarge,
            reply(
                413,
                format!("the body is over this hook's {max_bytes} bytes"),
            ),
        ));
    }
    let secret = crate::secrets::open(home.root(), &label(plugin, hook), &sealed)
        .and_then(|s| String::from_utf8(s).context("the hook's secret is not text"))
        .map_err(|e| {
            tracing::warn!("webhook {}: {e}", head.path);
            reply(
                503,
                "keel cannot open this hook's secret; the operator rotates it with `keel plugin webhook rotate`",
            )
        })?;
    Ok((
        Target {
            plugin: plugin.to_string(),
            hook: hook.to_string(),
            secret,
            max_bytes,
        },
        signed,
        length,
    ))
}

/// What recording an authentic request came to.
enum Recorded {
    Job(String),
    Replay,
    Full,
}

/// Checks the signature over the body, then records the request once: the
/// nonce, the event, the job and the audit entry in one transaction.
fn accept(db: &mut Store, target: &Target, signed: &Signed, body: &[u8], now_unix: i64) -> Reply {
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
    let input = serde_json::json!({ "hook": hook, "body": value }).to_string();
    let nonce = hex::encode(&signed.signature);
    // A stale timestamp is refused before this, so a signature need only
    // be remembered until its own timestamp leaves the window.
    let expires = signed
        .timestamp
        .parse::<i64>()
        .unwrap_or(now_unix)
        .saturating_add(REPLAY_WINDOW_SECS);
    let actor = receiver();
    let detail = format!("hook {hook} of {plugin}, {} bytes", body.len());
    let result = db.in_call(|tx| {
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
            params![plugin, hook, nonce, expires],
        )?;
        if fresh == 0 {
            return Ok(Recorded::Replay);
        }
        let data = serde_json::json!({"plugin": plugin, "hook": hook}).to_string();
        insert_event(tx, "webhook.received", None, None, &actor, Some(&data))?;
        let seq = tx.last_insert_rowid();
        let job = crate::jobs::enqueue::webhook(tx, plugin, &input, seq)?;
        let touched = Touched::detail(format!("{detail}: job {job}"));
        audit::append(tx, &actor, "webhook.receive", &touched, "allowed")?;
        Ok(Recorded::Job(job))
    });
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
fn unix_now() -> i64 {
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
fn admit_connection(
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

fn lock(db: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    // A panic while holding the store leaves it usable: each call is its
    // own transaction.
    db.lock().unwrap_or_else(|p| p.into_inner())
}

/// One request on one connection, then the connection closes.
fn serve_connection(home: &Home, db: &Mutex<Store>, mut stream: TcpStream) {
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

/// Reads into `buf` with the per-read timeout, never past `deadline`.
fn read_some(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> std::io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(std::io::ErrorKind::TimedOut.into());
    }
    stream.set_read_timeout(Some(left.min(READ_TIMEOUT)))?;
    stream.read(buf)
}

/// Reads the request line and headers. `Err(None)`: close without a reply.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> Result<Head, Option<Reply>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(head) = parse_head(&buf)? {
            return Ok(head);
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(Some(reply(431, "the request headers are too large")));
        }
        match read_some(stream, &mut chunk, deadline) {
            Ok(0) => return Err(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Some(reply(
                    408,
                    "the request headers did not arrive in time",
                )));
            }
            Err(_) => return Err(None),
        }
    }
}

/// Most headers one request may carry.
const MAX_HEADERS: usize = 64;

/// The request head in `buf`, once it is whole (httparse reads it).
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Option<Reply>> {
    let bad = || Some(reply(400, "the request is not HTTP/1.1"));
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let end = match req.parse(buf) {
        Ok(httparse::Status::Complete(end)) => end,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Some(reply(431, "the request has too many headers")));
        }
        Err(_) => return Err(bad()),
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(bad());
    };
    let mut pairs = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| bad())?;
        pairs.push((h.name.to_string(), value.trim().to_string()));
    }
    let head = Head {
        method: method.to_string(),
        path: target.split('?').next().unwrap_or("").to_string(),
        headers: pairs,
        rest: buf[end..].to_vec(),
    };
    if head.header("Transfer-Encoding").is_some() {
        return Err(Some(reply(
            411,
            "send the body with a Content-Length header, not chunked",
        )));
    }
    let lengths = head
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
        .count();
    if lengths > 1 {
        return Err(Some(reply(400, "send one Content-Length header")));
    }
    Ok(Some(head))
}

/// Reads exactly `length` body bytes (some may have come with the head).
fn read_body(
    stream: &mut TcpStream,
    mut body: Vec<u8>,
    length: u64,
    deadline: Instant,
) -> std::io::Result<Vec<u8>> {
    let length = usize::try_from(length).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    body.truncate(length);
    let mut chunk = [0u8; 8192];
    while body.len() < length {
        let want = (length - body.len()).min(chunk.len());
        match read_some(stream, &mut chunk[..want], deadline)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => body.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(body)
}

fn respond(stream: &mut TcpStream, reply: &Reply) {
    let reason = match reply.status {
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let body = reply.body.to_string();
    let text = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reply.status,
        body.len()
    );
    if let Err(e) = stream.write_all(text.as_bytes()) {
        tracing::warn!("webhook reply not sent: {e}");
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Closing with unread bytes (a body refused before it was read) makes
    // the kernel reset the connection, which can destroy the reply before
    // the client reads it; so read a bounded amount until the client
    // closes.
    let until = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match read_some(stream, &mut sink, until) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_is_read_whole_and_bounded() {
        let status = |raw: &[u8]| match parse_head(raw) {
            Ok(Some(_)) => 200,
            Ok(None) => 0,
            Err(Some(r)) => r.status,
            Err(None) => 1,
        };
        let head = parse_head(b"POST /hooks/p/h?x=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
            .unwrap()
            .unwrap();
        assert_eq!(
            (head.method.as_str(), head.path.as_str()),
            ("POST", "/hooks/p/h")
        );
        assert_eq!(head.rest, b"{}");
        assert_eq!(status(b"POST /hooks/p/h HTTP/1.1\r\nContent-Le"), 0);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\n"),
            400
        );
        let many = format!(
            "POST / HTTP/1.1\r\n{}\r\n",
            "X-A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(status(many.as_bytes()), 431);
        assert_eq!(status(b"NOT HTTP AT ALL\r\n\r\n"), 400);
    }

    fn sign(secret: &str, ts: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{ts}.").as_bytes());
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn head(headers: &[(&str, &str)]) -> Head {
        Head {
            method: "POST".into(),
            path: "/hooks/p/h".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            rest: Vec::new(),
        }
    }

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let body = br#"{"a":1}"#;
        let good = sign("s3cret", "1000", body);
        let sig = hex::decode(good.strip_prefix("sha256=").unwrap()).unwrap();
        assert!(signature_holds("s3cret", "1000", &sig, body));
        assert!(!signature_holds("s3cret", "1001", &sig, body));
        assert!(!signature_holds("s3cret", "1000", &sig, b"{\"a\":2}"));
        assert!(!signature_holds("other", "1000", &sig, body));
    }

    #[test]
    fn m2_stale_unsigned_and_bearer_requests_are_refused_before_the_body() {
        let sig = sign("s", "1000", b"");
        let ok = head(&[("X-Keel-Timestamp", "1000"), ("X-Keel-Signature", &sig)]);
        assert!(signed_headers(&ok, 1000 + REPLAY_WINDOW_SECS).is_ok());
        let (why, r) = signed_headers(&ok, 1001 + REPLAY_WINDOW_SECS)
            .err()
            .unwrap();
        assert_eq!((why, r.status), (Refusal::Stale, 401));
        let (why, _) = signed_headers(&ok, 999 - REPLAY_WINDOW_SECS).err().unwrap();
        assert_eq!(why, Refusal::Stale);
        let bearer = head(&[("Authorization", "Bearer s")]);
        let (why, r) = signed_headers(&bearer, 1000).err().unwrap();
        assert_eq!(why, Refusal::Unsigned);
        assert!(r.body.to_string().contains("bearer secret is not accepted"));
        let short = head(&[
            ("X-Keel-Timestamp", "1000"),
            ("X-Keel-Signature", "sha256=zz"),
        ]);
        assert_eq!(
            signed_headers(&short, 1000).err().unwrap().0,
            Refusal::BadSignature
        );
    }

    #[test]
    fn m2_replayed_webhook_is_rejected_by_the_nonce_table() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::init(dir.path()).unwrap();
        let mut db = home.store().unwrap();
        db.conn()
            .execute(
                "INSERT INTO webhooks (plugin, hook, secret, max_bytes) VALUES ('p', 'h', '', 100)",
                [],
            )
            .unwrap();
        let issued = issue(&home, &mut db, "p").unwrap();
        assert_eq!(issued.len(), 1);
        let secret = &issued[0].secret;
        assert!(issue(&home, &mut db, "p").unwrap().is_empty(), "shown once");
        let sig = sign(secret, "5000", b"{}");
        let h = head(&[
            ("X-Keel-Timestamp", "5000"),
            ("X-Keel-Signature", &sig),
            ("Content-Length", "2"),
        ]);
        let (target, signed, length) = admit(&home, &db, &h, 5000).unwrap();
        assert_eq!(length, 2);
        assert_eq!(accept(&mut db, &target, &signed, b"{}", 5000).status, 202);
        let again = accept(&mut db, &target, &signed, b"{}", 5010);
        assert_eq!(again.status, 409, "{:?}", again.body);
        let jobs: i64 = db
            .conn()
            .query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(jobs, 1);
        // Past the window the nonce is forgotten, and the timestamp is stale.
        let late = admit(&home, &db, &h, 5001 + REPLAY_WINDOW_SECS)
            .err()
            .unwrap();
        assert_eq!(late.status, 401);
        // Rotated: the old secret no longer signs.
        rotate(&home, &mut db, "p", "h").unwrap();
        let sig2 = sign(secret, "5020", b"{}");
        let h2 = head(&[
            ("X-Keel-Timestamp", "5020"),
            ("X-Keel-Signature", &sig2),
            ("Content-Length", "2"),
        ]);
        let (target, signed, _) = admit(&home, &db, &h2, 5020).unwrap();
        assert_eq!(accept(&mut db, &target, &signed, b"{}", 5020).status, 401);
        let hooks = list(db.conn(), "p").unwrap();
        assert_eq!(hooks[0].refused["replay"], 1);
        assert_eq!(hooks[0].refused["bad-signature"], 1);
        assert_eq!(hooks[0].refused["stale"], 1);
        // Refusals are counted, not audited one by one.
        let refused_rows: i64 = db
            .conn()
            .query_row(
                "SELECT count(*) FROM audit WHERE action = 'webhook.receive' AND outcome != 'allowed'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(refused_rows, 0);
        // The secret is sealed, not stored in the clear.
        let stored: String = db
            .conn()
            .query_row("SELECT secret FROM webhooks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, "");
    }
}
