//! `keel runs`: runs with their outcome and meters.

use std::path::Path;

use clap::Subcommand;

use super::print_json;
use crate::home::Home;
use crate::plugins as plugin_rows;
use crate::terminal::say;

#[derive(Debug, Subcommand)]
pub(super) enum RunsCmd {
    /// List runs, newest first, with fuel, memory peak, wall time, bytes
    /// in and out over the network, outcome.
    List {
        #[arg(long)]
        plugin: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn run(root: &Path, cmd: RunsCmd) -> anyhow::Result<()> {
    let RunsCmd::List {
        plugin,
        limit,
        json,
    } = cmd;
    let home = Home::open(root)?;
    let runs = plugin_rows::list_runs(home.store()?.conn(), plugin.as_deref(), limit)?;
    if json {
        print_json(&runs)?;
    } else {
        for r in runs {
            say!(
                "{}  {:<24} {:<8} {:<8} fuel {:>12}  mem {:>6} KiB  {:>9.1} ms  net {:>9} in {:>9} out  {}",
                r.id,
                format!("{}@{}", r.plugin, r.plugin_version),
                r.export,
                r.outcome,
                r.fuel_consumed.unwrap_or(0),
                r.memory_peak.unwrap_or(0) / 1024,
                r.wall_us.unwrap_or(0) as f64 / 1000.0,
                r.bytes_in,
                r.bytes_out,
                crate::terminal::field(&match &r.quota {
                    Some(q) => format!("reached {q}; {}", r.detail.unwrap_or_default()),
                    None => r.detail.unwrap_or_default(),
                })
            );
        }
    }
    Ok(())
}
