//! Who may post to a hook: everything checked before the body is read
//! (the hook, its secret, the signing headers, the length), the HMAC
//! over the body, and the counters of refused requests.

use anyhow::Context;
use hmac::{Hmac, Mac};
use rusqlite::{Connection, OptionalExtension, params};

use super::http::{Head, Reply, reply};
use super::{REPLAY_WINDOW_SECS, label};
use crate::home::Home;
use crate::store::{Store, now};

/// Why a request to a known hook was refused: the counter's key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Refusal {
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
pub(super) fn count_refusal(conn: &Connection, plugin: &str, hook: &str, why: Refusal) {
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
pub(super) struct Target {
    pub(super) plugin: String,
    pub(super) hook: String,
    pub(super) secret: String,
    pub(super) max_bytes: u64,
}

/// The signing headers, parsed.
pub(super) struct Signed {
    pub(super) timestamp: String,
    pub(super) signature: Vec<u8>,
}

/// Checks the HMAC of `timestamp.body` in constant time.
pub(super) fn signature_holds(
    secret: &str,
    timestamp: &str,
    signature: &[u8],
    body: &[u8],
) -> bool {
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(signature).is_ok()
}

/// The signing headers, or why they do not do.
pub(super) fn signed_headers(head: &Head, now_unix: i64) -> Result<Signed, (Refusal, Reply)> {
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
pub(super) fn admit(
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
