//! The `keel` command: the clap tree and a short dispatch here, one module
//! per command group under `cli/`. Data commands take `--json`; errors are
//! one sentence with the fix, on stderr, with a non-zero exit.
//!
//! The command line sits on top: `demo`, `bench` and `scaffold` are
//! called from here, and no module below imports this one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::home::Home;
use crate::terminal::{esay, say};

mod actions;
mod audit;
mod bench;
mod demo;
mod jobs;
mod keys;
mod models;
mod new;
mod plugin;
mod records;
mod review;
mod run;
mod runs;
mod secret;
mod up;

#[derive(Debug, Parser)]
#[command(
    name = "keel",
    version,
    about = "A capability-secure WebAssembly host for a one-person company's operations"
)]
struct Cli {
    /// The keel home (store, plugins, cache). Default: ~/.keel
    #[arg(long, global = true, env = "KEEL_HOME")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}
#[derive(Debug, Subcommand)]
enum Command {
    /// Create a keel home.
    Init,
    /// Start a plugin project: `keel new agent NAME --lang rust|python|js|c`
    /// writes its manifest, WIT, handler, build script and test.
    New(new::NewArgs),
    /// Install, list, inspect and remove plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCmd),
    /// Run a plugin once: a connector syncs, an agent handles a manual trigger.
    Run(run::RunArgs),
    /// List and show canonical records.
    #[command(subcommand)]
    Records(records::RecordsCmd),
    /// The action registry.
    #[command(subcommand)]
    Actions(actions::ActionsCmd),
    /// Run the worker: execute due jobs until SIGINT/SIGTERM.
    Up(up::UpArgs),
    /// The review queue: sends waiting for approval, dead-lettered jobs.
    #[command(subcommand)]
    Review(review::ReviewCmd),
    /// Signing keys for plugin packages, kept in the home.
    #[command(subcommand)]
    Key(keys::KeyCmd),
    /// The public keys whose package signatures installs accept.
    #[command(subcommand)]
    Trust(keys::TrustCmd),
    /// Secrets for the host's own use, such as model providers' API keys
    /// (`api_key_secret = NAME` in models.toml), sealed in the home.
    #[command(subcommand)]
    Secret(secret::SecretCmd),
    /// Durable jobs (written by `schedule`).
    #[command(subcommand)]
    Jobs(jobs::JobsCmd),
    /// Runs with their outcome and meters.
    #[command(subcommand)]
    Runs(runs::RunsCmd),
    /// The audit log: list entries, or `verify` the hash chain.
    Audit(audit::AuditArgs),
    /// Ingest sample notes and mails, turn TODOs into tasks, sort the mail
    /// with the triage agent on the local model, show the trail.
    Demo(demo::DemoArgs),
    /// Model tokens and cost per day, plugin and model (from the host's
    /// meter), with cache hits.
    Usage(models::UsageArgs),
    /// Which providers serve each model tier (HOME/models.toml).
    Models(models::ModelsArgs),
    /// Measure run start and write throughput against bare baselines.
    Bench(bench::BenchArgs),
}

/// Runs the command line and maps errors to one line on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `keel up` is a long-running service: it says what it does by default.
    let default_filter = if matches!(cli.command, Command::Up(_)) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            esay!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let root = Home::locate(cli.home.clone())?;
    match cli.command {
        Command::Init => {
            let home = Home::init(&root)?;
            say!("keel home ready at {}", home.root().display());
        }
        Command::New(args) => new::run(args)?,
        Command::Plugin(cmd) => plugin::run(&root, cmd)?,
        Command::Run(args) => return run::run(&root, args),
        Command::Records(cmd) => records::run(&root, cmd)?,
        Command::Actions(cmd) => actions::run(&root, cmd)?,
        Command::Up(args) => up::run(&root, args)?,
        Command::Review(cmd) => review::run(&root, cmd)?,
        Command::Key(cmd) => keys::key(&root, cmd)?,
        Command::Trust(cmd) => keys::trust(&root, cmd)?,
        Command::Secret(cmd) => secret::run(&root, cmd)?,
        Command::Jobs(cmd) => jobs::run(&root, cmd)?,
        Command::Runs(cmd) => runs::run(&root, cmd)?,
        Command::Audit(args) => return audit::run(&root, args),
        Command::Usage(args) => models::usage(&root, args)?,
        Command::Models(args) => models::models(&root, args)?,
        Command::Demo(args) => demo::run(&root, cli.home.is_some(), args)?,
        Command::Bench(args) => bench::run(args)?,
    }
    Ok(ExitCode::SUCCESS)
}
