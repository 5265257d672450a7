//! `keel run`: run a plugin once.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use super::print_json;
use crate::home::Home;
use crate::runtime::Runtime;
use crate::terminal::{esay, say};

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    plugin: String,
    /// JSON input for an agent.
    #[arg(long)]
    input: Option<String>,
    #[arg(long)]
    json: bool,
}

pub(super) fn run(root: &Path, args: RunArgs) -> anyhow::Result<ExitCode> {
    let RunArgs {
        plugin,
        input,
        json,
    } = args;
    let home = Home::open(root)?;
    let mut runtime = Runtime::new(&home)?;
    let (report, _db) = runtime.run(home.store()?, &plugin, input.as_deref())?;
    if json {
        print_json(&report)?;
    } else {
        let what = match (&report.sync, &report.summary) {
            (Some(s), _) => format!(
                "{} created, {} updated, {} unchanged",
                s.created, s.updated, s.unchanged
            ),
            (None, Some(summary)) => summary.clone(),
            _ => report.detail.clone(),
        };
        let net = match (report.bytes_in, report.bytes_out) {
            (0, 0) => String::new(),
            (bytes_in, bytes_out) => format!(", {bytes_in} bytes in, {bytes_out} out"),
        };
        say!(
            "run {} of {}: {} — {} (fuel {}, memory peak {} KiB, {:.1} ms{net})",
            report.run,
            report.plugin,
            report.outcome,
            what,
            report.fuel_consumed,
            report.memory_peak / 1024,
            report.wall_us as f64 / 1000.0
        );
        if report.more {
            say!(
                "{} has more to do: run `keel run {plugin}` again to go on (`keel up` does so at once)",
                report.plugin
            );
        }
    }
    if report.outcome != crate::run::Outcome::Ok {
        if !json {
            esay!("error: {}", report.detail);
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
