//! `keel review`: the review queue — sends waiting for approval, dead
//! jobs.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;

use super::print_json;
use crate::home::Home;
use crate::terminal::say;

#[derive(Debug, Subcommand)]
pub(super) enum ReviewCmd {
    /// Items waiting for a decision, oldest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One item with its draft and provenance.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Send it (a send), or run it again (a dead job).
    Approve { id: String },
    /// Replace a send's message (JSON object); it stays in review.
    Edit {
        id: String,
        #[arg(long)]
        message: String,
    },
    /// Do not send it (a send), or dismiss it (a dead job).
    Reject {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

pub(super) fn run(root: &Path, cmd: ReviewCmd) -> anyhow::Result<()> {
    use crate::review::{self, Decision};
    let home = Home::open(root)?;
    let mut db = home.store()?;
    let print_item = |item: &review::Item| {
        say!(
            "{}  {:<8} {:<16} {}  {}",
            item.id,
            item.kind,
            item.plugin,
            item.created_at,
            crate::terminal::field(&item.summary)
        );
    };
    let (id, decision, verb) = match cmd {
        ReviewCmd::List { json } => {
            let items = review::list(db.conn())?;
            if json {
                print_json(&items)?;
            } else if items.is_empty() {
                say!("nothing waits for review");
            } else {
                items.iter().for_each(print_item);
            }
            return Ok(());
        }
        ReviewCmd::Show { id, json } => {
            let item = review::get(db.conn(), &id)?.with_context(|| {
                format!("no review item {id} is waiting; see `keel review list`")
            })?;
            if json {
                print_json(&item)?;
            } else {
                print_item(&item);
                let p = &item.provenance;
                say!(
                    "  run {} sources [{}]{}{}",
                    p.run.as_deref().unwrap_or("-"),
                    p.sources.join(", "),
                    p.confidence
                        .map(|c| format!(" confidence {c:.2}"))
                        .unwrap_or_default(),
                    p.note
                        .as_deref()
                        .map(|n| format!(" — {}", crate::terminal::field(n)))
                        .unwrap_or_default()
                );
                if let Some(m) = &item.message {
                    let v: serde_json::Value = serde_json::from_str(m)?;
                    say!("{}", serde_json::to_string_pretty(&v)?);
                }
            }
            return Ok(());
        }
        ReviewCmd::Approve { id } => (id, Decision::Approve, "approved"),
        ReviewCmd::Edit { id, message } => (id, Decision::Edit { message }, "edited"),
        ReviewCmd::Reject { id, reason } => (id, Decision::Reject { reason }, "rejected"),
    };
    let item =
        review::decide(&mut db, &id, &decision).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    say!("{verb} {} {} from {}", item.kind, item.id, item.plugin);
    Ok(())
}
