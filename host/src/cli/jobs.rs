//! `keel jobs`: durable jobs.

use std::path::Path;

use anyhow::bail;
use clap::Subcommand;

use super::print_json;
use crate::home::Home;
use crate::terminal::say;

#[derive(Debug, Subcommand)]
pub(super) enum JobsCmd {
    /// List jobs, newest first.
    List {
        /// Only jobs in this state: queued, leased, done, dead, stopped.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn run(root: &Path, cmd: JobsCmd) -> anyhow::Result<()> {
    let JobsCmd::List { state, limit, json } = cmd;
    const STATES: [&str; 5] = ["queued", "leased", "done", "dead", "stopped"];
    if let Some(s) = state.as_deref().filter(|s| !STATES.contains(s)) {
        bail!("unknown job state `{s}`; use one of {}", STATES.join(", "));
    }
    let home = Home::open(root)?;
    let jobs = crate::store::jobs::list(home.store()?.conn(), state.as_deref(), limit)?;
    if json {
        print_json(&jobs)?;
    } else {
        for j in jobs {
            say!(
                "{}  {:<7} {:<16} due {} attempts {}/{}{}",
                j.id,
                j.state,
                j.plugin,
                j.run_at,
                j.attempts,
                j.max_attempts,
                j.last_error.map(|e| format!(" — {e}")).unwrap_or_default()
            );
        }
    }
    Ok(())
}
