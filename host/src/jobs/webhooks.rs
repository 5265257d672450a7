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

mod auth;
mod http;
mod listen;
pub use listen::serve;

use std::collections::BTreeMap;

use anyhow::bail;
use rusqlite::{Connection, params};
use serde::Serialize;

use crate::error::CallError;
use crate::home::Home;
use crate::manifest::{MAX_WEBHOOK_BYTES, Manifest};
use crate::store::{Actor, Store, Touched, now};

/// The `cause` of a webhook job.
pub const CAUSE: &str = "webhook";

/// How far a request's timestamp may be from keel's clock, either way.
pub const REPLAY_WINDOW_SECS: i64 = 300;
/// Connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 32;

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

#[cfg(test)]
mod tests {
    use super::auth::*;
    use super::http::*;
    use super::listen::*;
    use super::*;
    use hmac::{Hmac, Mac};

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
