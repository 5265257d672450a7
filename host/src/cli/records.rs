//! `keel records`: list and show canonical records.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;

use super::print_json;
use crate::home::Home;
use crate::store::Store;
use crate::store::records;
use crate::terminal::say;

#[derive(Debug, Subcommand)]
pub(super) enum RecordsCmd {
    /// List records, oldest first.
    List {
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Start after this record id.
        #[arg(long)]
        after: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one record, its links, and with --history every version.
    Show {
        id: String,
        #[arg(long)]
        history: bool,
        #[arg(long)]
        json: bool,
    },
}

/// A record as the CLI shows it: the body as JSON, not text.
#[derive(Debug, Serialize)]
struct RecordView {
    id: String,
    kind: String,
    version: i64,
    body: serde_json::Value,
    created_at: String,
    updated_at: String,
    created_by: String,
    updated_by: String,
}

impl From<records::Record> for RecordView {
    fn from(r: records::Record) -> Self {
        RecordView {
            body: serde_json::from_str(&r.body).unwrap_or(serde_json::Value::String(r.body)),
            id: r.id,
            kind: r.kind,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
            created_by: r.created_by,
            updated_by: r.updated_by,
        }
    }
}

pub(super) fn run(root: &Path, cmd: RecordsCmd) -> anyhow::Result<()> {
    let home = Home::open(root)?;
    let db = home.store()?;
    match cmd {
        RecordsCmd::List {
            kind,
            limit,
            after,
            json,
        } => list(&db, kind.as_deref(), after.as_deref(), limit, json),
        RecordsCmd::Show { id, history, json } => show(&db, &id, history, json),
    }
}

fn list(
    db: &Store,
    kind: Option<&str>,
    after: Option<&str>,
    limit: u32,
    json: bool,
) -> anyhow::Result<()> {
    let rows = records::query(db.conn(), kind, after, limit)?;
    if json {
        let views: Vec<RecordView> = rows.into_iter().map(Into::into).collect();
        print_json(&views)?;
    } else {
        for r in rows {
            say!(
                "{}  {:<14} v{:<3} {:<16} {}",
                r.id,
                r.kind,
                r.version,
                r.created_by,
                crate::terminal::title(&r.body)
            );
        }
    }
    Ok(())
}

fn show(db: &Store, id: &str, history: bool, json: bool) -> anyhow::Result<()> {
    let record = records::get(db.conn(), id)?
        .with_context(|| format!("no record with id {id}; list them with `keel records list`"))?;
    let links = records::links(db.conn(), id, None)?;
    let versions = if history {
        Some(records::history(db.conn(), id)?)
    } else {
        None
    };
    if json {
        #[derive(Serialize)]
        struct Show {
            #[serde(flatten)]
            record: RecordView,
            links: Vec<records::Link>,
            #[serde(skip_serializing_if = "Option::is_none")]
            history: Option<Vec<serde_json::Value>>,
        }
        let history = versions.map(|vs| {
            vs.into_iter()
                .map(|v| {
                    let mut value = serde_json::to_value(&v).unwrap_or_default();
                    value["body"] = serde_json::from_str(&v.body).unwrap_or_default();
                    value
                })
                .collect()
        });
        print_json(&Show {
            record: record.into(),
            links,
            history,
        })?;
    } else {
        say!("{} {} v{}", record.id, record.kind, record.version);
        say!("created {} by {}", record.created_at, record.created_by);
        say!("updated {} by {}", record.updated_at, record.updated_by);
        let body: serde_json::Value = serde_json::from_str(&record.body)?;
        say!("{}", serde_json::to_string_pretty(&body)?);
        for l in links {
            say!("link {} -{}-> {}", l.from, l.rel, l.to);
        }
        for v in versions.unwrap_or_default() {
            say!(
                "v{} {} by {} run {} sources [{}]{}{}",
                v.version,
                v.at,
                v.actor,
                v.run.as_deref().unwrap_or("-"),
                v.sources.join(", "),
                v.confidence
                    .map(|c| format!(" confidence {c:.2}"))
                    .unwrap_or_default(),
                v.note.map(|n| format!(" — {n}")).unwrap_or_default()
            );
        }
    }
    Ok(())
}
