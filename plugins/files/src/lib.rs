//! The `files` connector: ingests the folder the operator bound to `notes`
//! (mounted at `/notes`): `.md` and `.txt` become `core/document`, `.eml`
//! becomes `core/message`. The identity is the relative path, so a file is
//! one record forever; a changed file becomes a new version.
//!
//! The cursor maps each path to the sha256 it had at the last successful
//! sync: unchanged files cost no host call. After a crash the cursor is the
//! old one, and the identity check makes the rerun write nothing twice.

use std::collections::BTreeMap;
use std::path::Path;

use keel_connector::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const ROOT: &str = "/notes";
const SOURCE: &str = "files:notes";
/// Files larger than this are skipped with a warning.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Default, Serialize, Deserialize)]
struct Cursor {
    v: u32,
    seen: BTreeMap<String, String>,
}

struct Files;

/// Every file under `dir`, as paths relative to `ROOT` with `/` separators.
fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::Unavailable(format!("cannot list {}: {e}", dir.display())))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| Error::Unavailable(format!("cannot list {}: {e}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let kind = entry
            .file_type()
            .map_err(|e| Error::Unavailable(format!("cannot stat {child}: {e}")))?;
        if kind.is_dir() {
            walk(&entry.path(), &child, out)?;
        } else if kind.is_file() {
            out.push(child);
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The record kind and body for one file.
fn parse(rel: &str, bytes: &[u8], sha256: &str) -> Option<(&'static str, serde_json::Value)> {
    let ext = rel.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
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

impl Connector for Files {
    fn sync(cursor: Option<String>) -> Result<SyncResult, Error> {
        let old: Cursor = match cursor.as_deref() {
            Some(c) => serde_json::from_str(c).unwrap_or_default(),
            None => Cursor::default(),
        };
        let mut paths = Vec::new();
        walk(Path::new(ROOT), "", &mut paths)?;
        paths.sort();
        let mut next = Cursor {
            v: 1,
            seen: BTreeMap::new(),
        };
        let (mut created, mut updated, mut unchanged) = (0, 0, 0);
        for rel in paths {
            let full = format!("{ROOT}/{rel}");
            let size = std::fs::metadata(&full).map(|m| m.len()).unwrap_or(0);
            if size > MAX_FILE_BYTES {
                log::warn(&format!(
                    "skipping {rel}: {size} bytes is over {MAX_FILE_BYTES}"
                ));
                continue;
            }
            let bytes = std::fs::read(&full)
                .map_err(|e| Error::Unavailable(format!("cannot read {rel}: {e}")))?;
            let sha = hex(&Sha256::digest(&bytes));
            let Some((kind, body)) = parse(&rel, &bytes, &sha) else {
                continue;
            };
            next.seen.insert(rel.clone(), sha.clone());
            if old.seen.get(&rel) == Some(&sha) {
                unchanged += 1;
                continue;
            }
            let identity = Identity::new(SOURCE, &rel);
            let options = || WriteOptions::new().note(format!("ingested from {rel}"));
            match records::find(&identity)? {
                Some(existing) => {
                    let same = existing
                        .body_as::<serde_json::Value>()
                        .map(|b| b["sha256"] == sha.as_str())
                        .unwrap_or(false);
                    if same {
                        unchanged += 1;
                    } else {
                        actions::update(&existing.id, existing.version, &body, options())?;
                        updated += 1;
                    }
                }
                None => {
                    actions::create(kind, &body, Some(identity), options())?;
                    created += 1;
                }
            }
        }
        log::info(&format!(
            "{created} created, {updated} updated, {unchanged} unchanged"
        ));
        let cursor = serde_json::to_string(&next)
            .map_err(|e| Error::Internal(format!("cannot encode the cursor: {e}")))?;
        Ok(SyncResult {
            cursor: Some(cursor),
            created,
            updated,
            unchanged,
        })
    }
}

keel_connector::export_connector!(Files);
