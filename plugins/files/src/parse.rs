//! A file's record: `.md` and `.txt` become `core/document`, `.eml`
//! becomes `core/message`.

use keel_connector::prelude::*;

/// Whether a file at `rel` becomes a record at all, by its extension, so
/// other files are never read.
pub fn ingested(rel: &str) -> bool {
    matches!(extension(rel).as_deref(), Some("md" | "txt" | "eml"))
}

fn extension(rel: &str) -> Option<String> {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The record kind and body for one file.
pub fn parse(rel: &str, bytes: &[u8], sha256: &str) -> Option<(&'static str, serde_json::Value)> {
    let ext = extension(rel)?;
    match ext.as_str() {
        "md" | "txt" => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            let stem = rel.rsplit('/').next().unwrap_or(rel);
            let stem = stem.rsplit_once('.').map_or(stem, |(s, _)| s);
            let title = text
                .lines()
                .find_map(|l| l.strip_prefix("# "))
                .map(str::trim)
                .unwrap_or(stem)
                .to_string();
            let doc = core::Document {
                title,
                path: rel.to_string(),
                text,
                format: if ext == "md" { "markdown" } else { "text" }.to_string(),
                sha256: sha256.to_string(),
            };
            Some((core::DOCUMENT, serde_json::to_value(doc).ok()?))
        }
        "eml" => {
            let mail = mail_parser::MessageParser::default().parse(bytes)?;
            let addresses = |a: Option<&mail_parser::Address>| -> Vec<String> {
                a.map(|a| {
                    a.iter()
                        .map(|addr| match (addr.name(), addr.address()) {
                            (Some(n), Some(a)) => format!("{n} <{a}>"),
                            (None, Some(a)) => a.to_string(),
                            (Some(n), None) => n.to_string(),
                            (None, None) => String::new(),
                        })
                        .collect()
                })
                .unwrap_or_default()
            };
            let message = core::Message {
                message_id: mail.message_id().unwrap_or_default().to_string(),
                subject: mail.subject().unwrap_or_default().to_string(),
                from: addresses(mail.from()).join(", "),
                to: addresses(mail.to()),
                date: mail.date().map(|d| d.to_rfc3339()),
                text: mail
                    .body_text(0)
                    .map(|t| t.into_owned())
                    .unwrap_or_default(),
                path: rel.to_string(),
                sha256: sha256.to_string(),
            };
            Some((core::MESSAGE, serde_json::to_value(message).ok()?))
        }
        _ => None,
    }
}
