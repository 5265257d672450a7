//! Channel `email` → `.eml` files: each delivered message becomes one
//! RFC 5322 file in the granted `outbox` folder, named after the delivery's
//! idempotency key. A file that already exists under that name means the
//! message went out on an earlier attempt, so it is never written twice.
//!
//! The message is JSON: `to` (an address or a list), optional `cc`, `from`
//! (else the `from` config value), `subject`, `text`, `in_reply_to`.

use std::io::Write;

use keel_channel::prelude::*;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;

/// Where the granted folder is mounted.
const OUTBOX: &str = "/outbox";
/// The sender when neither the message nor the config names one.
const DEFAULT_FROM: &str = "keel@localhost";
/// Most recipients one message may have.
const MAX_RECIPIENTS: usize = 100;

struct OutboxFile;

fn invalid(message: impl Into<String>) -> Error {
    Error::Invalid(message.into())
}

/// A file system failure is worth retrying (a full or busy disk).
fn unavailable(what: &str, e: std::io::Error) -> Error {
    Error::Unavailable(format!("{what}: {e}"))
}

/// `to`/`cc` as a list of addresses: one string or an array of strings.
fn addresses(value: &serde_json::Value, field: &str) -> Result<Vec<String>, Error> {
    let list: Vec<String> = match value {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid(format!("`{field}` must be a list of addresses")))?,
        _ => return Err(invalid(format!("`{field}` must be an address or a list"))),
    };
    if list.len() > MAX_RECIPIENTS {
        return Err(invalid(format!(
            "`{field}` has {} addresses; at most {MAX_RECIPIENTS}",
            list.len()
        )));
    }
    for a in &list {
        let ok = a
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
            && !a
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>');
        if !ok {
            return Err(invalid(format!("`{field}`: `{a}` is not an email address")));
        }
    }
    Ok(list)
}

fn text_field<'a>(m: &'a serde_json::Value, field: &str) -> Result<Option<&'a str>, Error> {
    match &m[field] {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s)),
        _ => Err(invalid(format!("`{field}` must be text"))),
    }
}

/// The message as RFC 5322 bytes, with `message_id` as its Message-ID.
fn render(message: &str, message_id: &str) -> Result<Vec<u8>, Error> {
    let m: serde_json::Value =
        serde_json::from_str(message).map_err(|e| invalid(format!("message is not JSON: {e}")))?;
    if !m.is_object() {
        return Err(invalid("message must be a JSON object"));
    }
    let to = addresses(&m["to"], "to")?;
    if to.is_empty() {
        return Err(invalid("message has no `to` address"));
    }
    let cc = addresses(&m["cc"], "cc")?;
    let from = match text_field(&m, "from")? {
        Some(f) => f.to_string(),
        None => config::get("from")?.unwrap_or_else(|| DEFAULT_FROM.to_string()),
    };
    addresses(&serde_json::Value::String(from.clone()), "from")?;
    let mut builder = MessageBuilder::new()
        .from(Address::from(from.as_str()))
        .to(Address::from(
            to.iter().map(String::as_str).collect::<Vec<_>>(),
        ))
        .message_id(message_id)
        .subject(text_field(&m, "subject")?.unwrap_or(""))
        .text_body(text_field(&m, "text")?.unwrap_or(""));
    if !cc.is_empty() {
        builder = builder.cc(Address::from(
            cc.iter().map(String::as_str).collect::<Vec<_>>(),
        ));
    }
    if let Some(parent) = text_field(&m, "in_reply_to")? {
        builder = builder.in_reply_to(parent.trim_matches(['<', '>']));
    }
    builder
        .write_to_vec()
        .map_err(|e| invalid(format!("cannot build the message: {e}")))
}

impl Channel for OutboxFile {
    fn deliver(out: Outgoing) -> Result<Receipt, Error> {
        let key = &out.idempotency_key;
        if key.is_empty()
            || key.len() > 200
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(format!(
                "idempotency key `{key}` cannot name a file"
            )));
        }
        let message_id = format!("{key}@keel");
        let receipt = |duplicate| Receipt {
            id: format!("<{message_id}>"),
            duplicate,
        };
        let path = format!("{OUTBOX}/{key}.eml");
        match std::fs::metadata(&path) {
            Ok(_) => return Ok(receipt(true)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(unavailable(&path, e)),
        }
        let bytes = render(&out.message, &message_id)?;
        // Written beside its final name, then renamed: a reader never sees
        // half a message, and a crash mid-write leaves no `.eml` behind.
        let partial = format!("{OUTBOX}/.{key}.partial");
        let mut file = std::fs::File::create(&partial).map_err(|e| unavailable(&partial, e))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| unavailable(&partial, e))?;
        drop(file);
        std::fs::rename(&partial, &path).map_err(|e| unavailable(&path, e))?;
        log::info(&format!("wrote {path} (attempt {})", out.attempt));
        Ok(receipt(false))
    }
}

keel_channel::export_channel!(OutboxFile);
