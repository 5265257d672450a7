//! The `keel` command. Data commands take `--json`; errors are one sentence
//! with the fix, on stderr, with a non-zero exit.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::home::Home;
use crate::plugins::InstallRequest;
use crate::runtime::Runtime;
use crate::store::audit::{self, Filter};
use crate::store::plugins as plugin_rows;
use crate::store::records;
use crate::terminal::{esay, say};

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
    New {
        /// What to make: `agent`.
        world: NewWorld,
        /// The plugin id, also the project folder's name.
        name: String,
        #[arg(long, value_enum)]
        lang: crate::scaffold::Lang,
        /// The folder to make the project in (default: the current one).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// keel's `sdk` folder, for a Rust project (default: beside the
        /// keel this was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Install, list, inspect and remove plugins.
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// Run a plugin once: a connector syncs, an agent handles a manual trigger.
    Run {
        plugin: String,
        /// JSON input for an agent.
        #[arg(long)]
        input: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List and show canonical records.
    #[command(subcommand)]
    Records(RecordsCmd),
    /// The action registry.
    #[command(subcommand)]
    Actions(ActionsCmd),
    /// Run the worker: execute due jobs until SIGINT/SIGTERM.
    Up {
        /// How long to wait between polls when no job is due.
        #[arg(long, default_value_t = 500)]
        idle_ms: u64,
        /// Jobs run at once (default: the number of cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Event or schedule hops a cascade may take before it is stopped
        /// and sent to the review queue.
        #[arg(long, default_value_t = crate::up::DEFAULT_MAX_DEPTH)]
        max_depth: i64,
        /// How long a worker holds a job before another may take it over
        /// (at least the plugin's deadline plus 5 s).
        #[arg(long, default_value_t = 60_000)]
        lease_ms: u64,
        /// Accept plugins' webhooks on this address, e.g. 127.0.0.1:7373.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// The review queue: sends waiting for approval, dead-lettered jobs.
    #[command(subcommand)]
    Review(ReviewCmd),
    /// Signing keys for plugin packages, kept in the home.
    #[command(subcommand)]
    Key(KeyCmd),
    /// The public keys whose package signatures installs accept.
    #[command(subcommand)]
    Trust(TrustCmd),
    /// Secrets for the host's own use, such as model providers' API keys
    /// (`api_key_secret = NAME` in models.toml), sealed in the home.
    #[command(subcommand)]
    Secret(SecretCmd),
    /// Durable jobs (written by `schedule`).
    #[command(subcommand)]
    Jobs(JobsCmd),
    /// Runs with their outcome and meters.
    #[command(subcommand)]
    Runs(RunsCmd),
    /// The audit log: list entries, or `verify` the hash chain.
    Audit(AuditArgs),
    /// Ingest sample notes and mails, turn TODOs into tasks, sort the mail
    /// with the triage agent on the local model, show the trail.
    Demo {
        /// Where the local models' weights are (`scripts/setup
        /// --local-models DIR` fetches them; default
        /// ~/.cache/keel/local-models).
        #[arg(long)]
        models: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Model tokens and cost per day, plugin and model (from the host's
    /// meter), with cache hits.
    Usage {
        /// Only this plugin.
        #[arg(long)]
        plugin: Option<String>,
        /// From this day on (YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Which providers serve each model tier (HOME/models.toml).
    Models {
        #[arg(long)]
        json: bool,
    },
    /// Measure run start and write throughput against bare baselines.
    Bench {
        /// How many run starts to time.
        #[arg(long, default_value_t = 2000)]
        starts: usize,
        /// How many records to create through the plugin.
        #[arg(long, default_value_t = 5000)]
        creates: u32,
        /// How many no-op jobs to push through the queue.
        #[arg(long, default_value_t = 500)]
        jobs: u32,
        /// How many memories to recall among (recall_ms_p50).
        #[arg(long, default_value_t = 100_000)]
        memories: u32,
        /// Where the local models' weights are (as `scripts/setup
        /// --local-models DIR` put them; default ~/.cache/keel/local-models),
        /// for embed_per_s and local_tokens_per_s.
        #[arg(long, value_name = "DIR")]
        models: Option<PathBuf>,
        /// keel's source folder, whose built writer plugins in Rust, Python
        /// and JavaScript are timed (default: the one this keel was built
        /// from).
        #[arg(long, value_name = "DIR")]
        languages: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

/// The worlds `keel new` can start a project for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum NewWorld {
    Agent,
}

#[derive(Debug, Subcommand)]
enum KeyCmd {
    /// Make a new ed25519 signing key; prints its public key.
    Generate {
        #[arg(long)]
        name: String,
    },
    /// The home's signing keys and their public keys.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TrustCmd {
    /// Trust packages of the named plugins signed by this public key
    /// (`ed25519:…`): `--for ID,ID`, or `--any` for every plugin.
    Add {
        key: String,
        /// The operator's name for the key, shown as the signer of what it
        /// signed.
        #[arg(long)]
        name: String,
        /// The plugin ids this key may sign (comma-separated).
        #[arg(long = "for", value_name = "ID,ID", value_delimiter = ',')]
        plugins: Vec<String>,
        /// Trust this key for packages of any plugin id.
        #[arg(long, conflicts_with = "plugins")]
        any: bool,
    },
    /// The trusted keys.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a key (installed plugins stay).
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
enum SecretCmd {
    /// Set (or replace) a secret; its value is read from standard input.
    Set { name: String },
    /// The secrets' names and dates (never their values).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
enum PluginCmd {
    /// Pack a plugin folder (keel.toml, its component, README.md) into one
    /// file, ID-VERSION.keel.
    Pack {
        dir: PathBuf,
        /// Where to write the package.
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
    /// Install a plugin's newer version from where it was installed from;
    /// asks again when it asks for more. The replaced version is kept.
    Update {
        id: String,
        /// Grant what the new version asks for without asking.
        #[arg(long, short)]
        yes: bool,
        /// The new package may be unsigned (audited).
        #[arg(long)]
        allow_unsigned: bool,
        /// Accept a lower version than the installed one.
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// Go back to the version the last install, update or rollback
    /// replaced.
    Rollback { id: String },
    /// Sign a package with a key from the home.
    Sign {
        package: PathBuf,
        #[arg(long)]
        key: String,
        /// The signer's name in the signature (default: the key's name).
        #[arg(long)]
        signer: Option<String>,
    },
    /// Push a package to an OCI registry: oci://HOST[:PORT]/REPO:TAG.
    Push { package: PathBuf, reference: String },
    /// Install a plugin: a folder with keel.toml (or a .wasm with
    /// --manifest), a package file, an https:// URL of a package, or
    /// oci://HOST[:PORT]/REPO:TAG (or @sha256:…).
    Install {
        path: PathBuf,
        /// The manifest, when PATH is a .wasm file.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// The component, overriding the manifest's `component`.
        #[arg(long)]
        component: Option<PathBuf>,
        /// Bind a directory the manifest asks for: NAME=PATH.
        #[arg(long = "dir", value_name = "NAME=PATH")]
        dirs: Vec<String>,
        /// Set a config value the manifest declares: KEY=VALUE.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// At most this many runs at once under `keel up` (lowers the
        /// manifest's limits.concurrency).
        #[arg(long)]
        concurrency: Option<u32>,
        /// At most this many runs started per unit under `keel up`, like
        /// 30/m (slows the manifest's limits.rate).
        #[arg(long)]
        rate: Option<String>,
        /// Install a package that is not signed (audited).
        #[arg(long)]
        allow_unsigned: bool,
        /// Grant what the manifest asks for without asking.
        #[arg(long, short)]
        yes: bool,
        /// Grant less than asked: KIND:VALUE, e.g. write:core/task,
        /// action:send, send:email, read:core/message (repeatable).
        #[arg(long, value_name = "KIND:VALUE")]
        deny: Vec<String>,
        /// Install only the contents with this package digest (sha256:…).
        #[arg(long)]
        digest: Option<String>,
        /// Let sends with at least this confidence go out without review
        /// (0.0 to 1.0); by default every send waits (`all`). The manifest
        /// can only make it stricter.
        #[arg(long, value_name = "CONFIDENCE")]
        review_below: Option<crate::manifest::ReviewGate>,
        #[arg(long)]
        json: bool,
    },
    /// Show a plugin's review gate, or change it with --review-below
    /// (audited as the operator).
    Policy {
        id: String,
        /// Sends below this confidence (or without one) wait for review;
        /// `all` holds every send.
        #[arg(long, value_name = "CONFIDENCE|all")]
        review_below: Option<crate::manifest::ReviewGate>,
        #[arg(long)]
        json: bool,
    },
    /// List installed plugins.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a plugin's manifest, grant and recent state.
    Inspect {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a plugin (its records and audit trail stay).
    Remove { id: String },
    /// A plugin's webhooks: `rotate PLUGIN HOOK` makes a new secret.
    #[command(subcommand)]
    Webhook(WebhookCmd),
}

#[derive(Debug, Subcommand)]
enum WebhookCmd {
    /// Replace a hook's secret: the new one is shown once, the old one is
    /// refused from now on.
    Rotate {
        plugin: String,
        hook: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum RecordsCmd {
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

#[derive(Debug, Subcommand)]
enum ActionsCmd {
    /// List the actions plugins can call.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ReviewCmd {
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

#[derive(Debug, Subcommand)]
enum JobsCmd {
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

#[derive(Debug, Subcommand)]
enum RunsCmd {
    /// List runs, newest first, with fuel, memory peak, wall time, outcome.
    List {
        #[arg(long)]
        plugin: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct AuditArgs {
    #[command(subcommand)]
    verify: Option<AuditCmd>,
    /// Only entries about this record.
    #[arg(long)]
    record: Option<String>,
    /// Only entries by this plugin (or `operator`).
    #[arg(long)]
    plugin: Option<String>,
    /// Only entries of this run.
    #[arg(long)]
    run: Option<String>,
    #[arg(long)]
    limit: Option<u32>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum AuditCmd {
    /// Recompute the hash chain; names the first broken entry. With
    /// --checkpoint, also hold it against a signed head kept elsewhere.
    Verify {
        /// A file `keel audit checkpoint` wrote.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// The key the checkpoint must be signed by (default: any of this
        /// home's keys).
        #[arg(long, value_name = "ed25519:HEX")]
        public_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Sign the chain's head (entry count and hash) with a key from `keel
    /// key generate` and write it outside the database; keep a copy away
    /// from this machine.
    Checkpoint {
        /// The signing key's name.
        #[arg(long)]
        key: String,
        /// Where to write it (default: HOME/audit-checkpoints/COUNT.json).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Also print it, to paste somewhere safe.
        #[arg(long)]
        print: bool,
    },
}

/// Runs the command line and maps errors to one line on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `keel up` is a long-running service: it says what it does by default.
    let default_filter = if matches!(cli.command, Command::Up { .. }) {
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

fn pairs(items: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("`{item}` is not {what}; write it as {what}"))
        })
        .collect()
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let root = Home::locate(cli.home.clone())?;
    match cli.command {
        Command::Init => {
            let home = Home::init(&root)?;
            say!("keel home ready at {}", home.root().display());
        }
        Command::New {
            world: NewWorld::Agent,
            name,
            lang,
            dir,
            sdk,
        } => {
            let made = crate::scaffold::new_agent(&dir, &name, lang, sdk.as_deref())?;
            say!("made {}: edit the handler, then ./test.sh", made.display());
        }
        Command::Plugin(cmd) => plugin(&root, cmd)?,
        Command::Run {
            plugin,
            input,
            json,
        } => {
            let home = Home::open(&root)?;
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
                say!(
                    "run {} of {}: {} — {} (fuel {}, memory peak {} KiB, {:.1} ms)",
                    report.run,
                    report.plugin,
                    report.outcome,
                    what,
                    report.fuel_consumed,
                    report.memory_peak / 1024,
                    report.wall_us as f64 / 1000.0
                );
            }
            if report.outcome != crate::run::Outcome::Ok {
                if !json {
                    esay!("error: {}", report.detail);
                }
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Records(cmd) => records_cmd(&root, cmd)?,
        Command::Actions(ActionsCmd::List { json }) => {
            /// One action of the registry, core or provided.
            #[derive(Serialize)]
            struct ActionView {
                name: String,
                provider: String,
                description: String,
                /// What the caller's grant must contain.
                needs: String,
                /// What a provided action does with its provider's grant.
                #[serde(skip_serializing_if = "Vec::is_empty")]
                uses: Vec<String>,
                input: serde_json::Value,
            }
            let mut actions: Vec<ActionView> = crate::actions::core_actions()
                .into_iter()
                .map(|a| ActionView {
                    name: a.name.into(),
                    provider: a.provider.into(),
                    description: a.description.into(),
                    needs: a.needs.into(),
                    uses: Vec::new(),
                    input: a.input,
                })
                .collect();
            // Provided actions come from the home's installed providers.
            if let Ok(home) = Home::open(&root) {
                let provided = crate::invoke::provided(home.store()?.conn())?;
                actions.extend(provided.into_iter().map(|a| ActionView {
                    needs: format!("invoke: {}", a.name),
                    name: a.name,
                    provider: a.provider,
                    description: a.description,
                    uses: a.needs,
                    input: a.input,
                }));
            }
            if json {
                print_json(&actions)?;
            } else {
                for a in actions {
                    say!(
                        "{:<24} {:<20} {}\n{:<25}needs {}",
                        a.name,
                        a.provider,
                        a.description,
                        "",
                        a.needs
                    );
                }
            }
        }
        Command::Up {
            idle_ms,
            workers,
            max_depth,
            lease_ms,
            listen,
        } => {
            let home = Home::open(&root)?;
            let workers = workers.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
            if workers == 0 {
                bail!("--workers must be at least 1");
            }
            if max_depth < 1 {
                bail!("--max-depth must be at least 1");
            }
            if lease_ms == 0 {
                bail!("--lease-ms must be at least 1");
            }
            let settings = crate::up::Settings {
                workers,
                idle: std::time::Duration::from_millis(idle_ms),
                max_depth,
                lease: std::time::Duration::from_millis(lease_ms),
                listen,
            };
            let tally = crate::up::run(&home, &settings)?;
            say!(
                "keel up stopped: {} done, {} to retry, {} dead, {} stopped",
                tally.done,
                tally.retried,
                tally.dead,
                tally.stopped
            );
        }
        Command::Review(cmd) => review_cmd(&root, cmd)?,
        Command::Key(cmd) => {
            let home = Home::open(&root)?;
            match cmd {
                KeyCmd::Generate { name } => {
                    let public = crate::packages::generate_key(&home, &name)?;
                    say!("{public}");
                }
                KeyCmd::List { json } => {
                    let keys = crate::packages::list_keys(&home)?;
                    if json {
                        let keys: Vec<serde_json::Value> = keys
                            .iter()
                            .map(|(n, k)| serde_json::json!({"name": n, "key": k.to_string()}))
                            .collect();
                        print_json(&keys)?;
                    } else {
                        for (name, key) in keys {
                            say!("{name:<16} {key}");
                        }
                    }
                }
            }
        }
        Command::Trust(cmd) => {
            let home = Home::open(&root)?;
            let mut db = home.store()?;
            match cmd {
                TrustCmd::Add {
                    key,
                    name,
                    plugins,
                    any,
                } => {
                    let scope = match (any, plugins.is_empty()) {
                        (true, _) => crate::packages::TrustScope::any(),
                        (false, false) => crate::packages::TrustScope::Plugins(plugins),
                        (false, true) => bail!(
                            "say which plugins {name} may sign: --for ID,ID, or --any for every plugin"
                        ),
                    };
                    crate::packages::trust(&mut db, &key, &name, &scope)?;
                    say!("trusted {name} {scope}");
                }
                TrustCmd::List { json } => {
                    let keys = crate::packages::trusted(db.conn())?;
                    if json {
                        print_json(&keys)?;
                    } else {
                        for k in keys {
                            say!(
                                "{:<16} {}  {}  since {}",
                                k.name,
                                k.key,
                                k.scope,
                                k.added_at
                            );
                        }
                    }
                }
                TrustCmd::Remove { name } => {
                    crate::packages::distrust(&mut db, &name)?;
                    say!("no longer trusted: {name}");
                }
            }
        }
        Command::Secret(cmd) => {
            let home = Home::open(&root)?;
            let mut db = home.store()?;
            match cmd {
                SecretCmd::Set { name } => {
                    let mut value = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)
                        .context("cannot read the secret from standard input")?;
                    crate::secrets::set(home.root(), &mut db, &name, &value)?;
                    say!("secret {name} set");
                }
                SecretCmd::List { json } => {
                    let all = crate::secrets::list(db.conn())?;
                    if json {
                        print_json(&all)?;
                    } else {
                        for s in all {
                            say!(
                                "{:<24} set {}  created {}",
                                s.name,
                                s.updated_at,
                                s.created_at
                            );
                        }
                    }
                }
                SecretCmd::Remove { name } => {
                    crate::secrets::remove(&mut db, &name)?;
                    say!("secret {name} removed");
                }
            }
        }
        Command::Jobs(JobsCmd::List { state, limit, json }) => {
            const STATES: [&str; 5] = ["queued", "leased", "done", "dead", "stopped"];
            if let Some(s) = state.as_deref().filter(|s| !STATES.contains(s)) {
                bail!("unknown job state `{s}`; use one of {}", STATES.join(", "));
            }
            let home = Home::open(&root)?;
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
        }
        Command::Runs(RunsCmd::List {
            plugin,
            limit,
            json,
        }) => {
            let home = Home::open(&root)?;
            let runs = plugin_rows::list_runs(home.store()?.conn(), plugin.as_deref(), limit)?;
            if json {
                print_json(&runs)?;
            } else {
                for r in runs {
                    say!(
                        "{}  {:<24} {:<8} {:<8} fuel {:>12}  mem {:>6} KiB  {:>9.1} ms  {}",
                        r.id,
                        format!("{}@{}", r.plugin, r.plugin_version),
                        r.export,
                        r.outcome,
                        r.fuel_consumed.unwrap_or(0),
                        r.memory_peak.unwrap_or(0) / 1024,
                        r.wall_us.unwrap_or(0) as f64 / 1000.0,
                        crate::terminal::field(&match &r.quota {
                            Some(q) => format!("reached {q}; {}", r.detail.unwrap_or_default()),
                            None => r.detail.unwrap_or_default(),
                        })
                    );
                }
            }
        }
        Command::Audit(args) => return audit_cmd(&root, args),
        Command::Usage {
            plugin,
            since,
            json,
        } => {
            if let Some(day) = &since
                && chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").is_err()
            {
                bail!("--since {day}: write a day as YYYY-MM-DD");
            }
            let home = Home::open(&root)?;
            let rows =
                crate::models::usage(home.store()?.conn(), plugin.as_deref(), since.as_deref())?;
            if json {
                print_json(&rows)?;
            } else if rows.is_empty() {
                say!("no model calls yet");
            } else {
                say!(
                    "{:<10} {:<20} {:<28} {:>6} {:>9} {:>9} {:>10} {:>6}",
                    "day",
                    "plugin",
                    "model",
                    "calls",
                    "in",
                    "out",
                    "cost $",
                    "cached"
                );
                for u in rows {
                    say!(
                        "{:<10} {:<20} {:<28} {:>6} {:>9} {:>9} {:>10.6} {:>6}",
                        u.day,
                        u.plugin,
                        u.model,
                        u.calls,
                        u.tokens_in,
                        u.tokens_out,
                        u.cost,
                        u.cache_hits
                    );
                }
            }
        }
        Command::Models { json } => {
            let home = Home::open(&root)?;
            let config = crate::models::ModelsConfig::load(home.root())?;
            let tiers: Vec<serde_json::Value> = config
                .tiers
                .all()
                .iter()
                .map(|(tier, chain)| {
                    let served: Vec<String> = chain
                        .iter()
                        .filter_map(|name| {
                            let p = config.providers.get(name)?;
                            let at = match p.kind {
                                crate::models::config::ProviderKind::Local => {
                                    format!("in keel, weights in {}", p.weights_dir().display())
                                }
                                crate::models::config::ProviderKind::Openai => p.base_url.clone(),
                            };
                            Some(format!("{name}/{} ({at})", p.model_for(tier)?))
                        })
                        .collect();
                    serde_json::json!({ "tier": tier, "chain": served })
                })
                .collect();
            if json {
                print_json(&tiers)?;
            } else {
                for t in &tiers {
                    let chain: Vec<&str> = t["chain"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                        .unwrap_or_default();
                    say!(
                        "{:<6} {}",
                        t["tier"].as_str().unwrap_or(""),
                        if chain.is_empty() {
                            format!(
                                "nothing (name providers under [tiers] in {})",
                                home.root().join(crate::models::config::FILE).display()
                            )
                        } else {
                            chain.join(" -> ")
                        }
                    );
                }
            }
        }
        Command::Demo { models, json } => {
            crate::demo::run(&root, cli.home.is_some(), models.as_deref(), json)?
        }
        Command::Bench {
            starts,
            creates,
            jobs,
            memories,
            models,
            languages,
            json,
        } => crate::bench::run(
            starts,
            creates,
            jobs,
            memories,
            models.as_deref(),
            languages.as_deref(),
            json,
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

fn plugin(root: &std::path::Path, cmd: PluginCmd) -> anyhow::Result<()> {
    if let PluginCmd::Pack { dir, out } = &cmd {
        let (path, digest) = crate::packages::pack(dir, out.as_deref())?;
        say!("packed {} {digest}", path.display());
        return Ok(());
    }
    if let PluginCmd::Push { package, reference } = &cmd {
        let (digest, signed) = crate::packages::push(package, reference)?;
        say!("pushed {} {reference}@{digest}", package.display());
        if !signed {
            esay!(
                "note: the package is not signed; installs will need --allow-unsigned (sign it with `keel plugin sign` and push again)"
            );
        }
        return Ok(());
    }
    let home = Home::open(root)?;
    match cmd {
        PluginCmd::Pack { .. } | PluginCmd::Push { .. } => {
            unreachable!("packed or pushed above, without a home")
        }
        PluginCmd::Sign {
            package,
            key,
            signer,
        } => {
            let (digest, public) = crate::packages::sign(&home, &package, &key, signer.as_deref())?;
            say!("signed {} {digest} by {public}", package.display());
        }
        PluginCmd::Install {
            path,
            manifest,
            component,
            dirs,
            config,
            concurrency,
            rate,
            allow_unsigned,
            yes,
            deny,
            digest,
            review_below,
            json,
        } => {
            let digest = digest
                .as_deref()
                .map(str::parse::<keel_registry::Digest>)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--digest: {e}"))?;
            if concurrency == Some(0) {
                bail!("--concurrency must be at least 1");
            }
            let rate = rate
                .as_deref()
                .map(crate::manifest::parse_rate)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--{e}"))?;
            let source = path.to_string_lossy().into_owned();
            let fetched = crate::packages::fetch(&source)?;
            let req = InstallRequest {
                source: fetched.as_ref().map_or(path, |f| f.path.clone()),
                origin: fetched.as_ref().map(|f| f.origin.clone()),
                manifest,
                component,
                dirs: pairs(&dirs, "NAME=PATH")?
                    .into_iter()
                    .map(|(k, v)| (k, PathBuf::from(v)))
                    .collect(),
                config: pairs(&config, "KEY=VALUE")?,
                concurrency,
                rate,
                allow_unsigned,
                digest,
            };
            let runtime = Runtime::new(&home)?;
            let mut checked = crate::plugins::check(runtime.engine(), runtime.linker(), &req)?;
            let mut db = home.store()?;
            // An untrusted signer is refused before the operator is asked.
            let signer = crate::plugins::signer(&db, &checked)?;
            if let Some(notice) = signer.as_ref().and_then(|t| t.legacy_notice()) {
                esay!("{notice}");
            }
            for cap in &deny {
                crate::consent::deny(&mut checked.grant, cap).map_err(anyhow::Error::msg)?;
            }
            if let Some(gate) = review_below {
                checked.grant.review_below = gate;
            }
            for line in crate::consent::summary(&checked.manifest, &checked.grant) {
                esay!("{line}");
            }
            let installed = |id: &str| {
                crate::store::plugins::get(db.conn(), id)
                    .ok()
                    .flatten()
                    .map(|row| (row.label(), row.grant))
            };
            for line in crate::consent::invoke_reach(&checked.grant, installed) {
                esay!("{line}");
            }
            if let Some(t) = &signer {
                esay!("  signed by {}", t.shown());
            }
            if checked.grant.allows_action("send")
                && checked.grant.review_below == crate::manifest::ReviewGate::All
            {
                esay!(
                    "  (to let confident sends out without review: --review-below CONFIDENCE, or later `keel plugin policy {} --review-below CONFIDENCE`)",
                    checked.manifest.plugin.id
                );
            }
            if !yes {
                crate::consent::ask(
                    &format!(
                        "Install {} with these capabilities?",
                        checked.manifest.label()
                    ),
                    "keel asks before it installs a plugin; pass --yes to grant what is listed above (and --deny KIND:VALUE to grant less)",
                )?;
            }
            let row = crate::plugins::install(&home, runtime.engine(), &mut db, &checked)?;
            let secrets = crate::webhooks::issue(&home, &mut db, &row.id)?;
            if json {
                #[derive(Serialize)]
                struct Installed<'a> {
                    #[serde(flatten)]
                    row: &'a crate::store::plugins::PluginRow,
                    webhook_secrets: &'a [crate::webhooks::Issued],
                }
                print_json(&Installed {
                    row: &row,
                    webhook_secrets: &secrets,
                })?;
            } else {
                let by = row
                    .signer
                    .as_deref()
                    .map_or(String::new(), |s| format!(" signed by {s}"));
                say!(
                    "installed {} ({}) {}{by}",
                    row.label(),
                    row.world,
                    row.digest
                );
                show_hook_secrets(&secrets);
            }
        }
        PluginCmd::List { json } => {
            let rows = plugin_rows::list(home.store()?.conn())?;
            if json {
                print_json(&rows)?;
            } else if rows.is_empty() {
                say!("no plugins installed; install one with `keel plugin install PATH`");
            } else {
                for r in rows {
                    say!(
                        "{:<20} {:<10} {:<10} {}  {}",
                        r.id,
                        r.version,
                        r.world,
                        r.digest,
                        r.signer.as_deref().unwrap_or("unsigned")
                    );
                }
            }
        }
        PluginCmd::Inspect { id, json } => {
            let db = home.store()?;
            let row = crate::runtime::installed(&db, &id)?;
            let webhooks = crate::webhooks::list(db.conn(), &row.id)?;
            if json {
                #[derive(Serialize)]
                struct Inspected<'a> {
                    #[serde(flatten)]
                    row: &'a crate::store::plugins::PluginRow,
                    webhooks: &'a [crate::webhooks::Hook],
                }
                print_json(&Inspected {
                    row: &row,
                    webhooks: &webhooks,
                })?;
            } else {
                say!("{} ({}) {}", row.label(), row.world, row.digest);
                if !row.manifest.plugin.description.is_empty() {
                    say!("  {}", row.manifest.plugin.description);
                }
                if let Some(source) = &row.source {
                    say!("  from:     {}", crate::plugins::shown(source));
                }
                if let Some(package) = &row.package_digest {
                    say!("  package:  {package}");
                }
                say!(
                    "  signed:   {}",
                    row.signer.as_deref().unwrap_or("no (installed unsigned)")
                );
                let caps = &row.grant.capabilities;
                say!("  read:     {}", caps.read.join(", "));
                say!("  write:    {}", caps.write.join(", "));
                say!("  actions:  {}", caps.actions.join(", "));
                if !row.grant.denied.is_empty() {
                    say!("  denied:   {}", row.grant.denied.join(", "));
                }
                say!(
                    "  review:   {}",
                    crate::consent::review_line(&row.manifest, &row.grant)
                );
                for (name, dir) in &row.grant.dirs {
                    say!(
                        "  dir {name} ({}) = {}",
                        dir.access.as_str(),
                        dir.path.display()
                    );
                }
                let l = &row.manifest.limits;
                say!(
                    "  limits:   {} MiB, {} fuel, {} ms",
                    l.memory_mb,
                    l.fuel,
                    l.timeout_ms
                );
                if let Some(c) = row.grant.concurrency {
                    say!("  at once:  {c}");
                }
                if let Some(r) = row.grant.rate {
                    say!("  rate:     {r}");
                }
                for h in &webhooks {
                    let secret = if h.has_secret {
                        "secret sealed"
                    } else {
                        "no secret yet"
                    };
                    let refused: u64 = h.refused.values().sum();
                    say!(
                        "  webhook {}: POST {} (keel up --listen), up to {} bytes, {secret} (new one: keel plugin webhook rotate {} {}), {refused} refused",
                        h.hook,
                        h.path,
                        h.max_bytes,
                        row.id,
                        h.hook
                    );
                }
            }
        }
        PluginCmd::Update {
            id,
            yes,
            allow_unsigned,
            allow_downgrade,
        } => {
            let runtime = Runtime::new(&home)?;
            let mut db = home.store()?;
            let row = crate::runtime::installed(&db, &id)?;
            let Some(source) = row.source.clone() else {
                bail!(
                    "{} does not say where it was installed from; install it again from its folder or package",
                    row.label()
                );
            };
            let from = crate::plugins::shown(&source).to_string();
            // Installs before sources were stored absolute recorded paths
            // like `dir:.`, which name whatever folder keel runs in.
            if !crate::packages::is_remote(&from) && std::path::Path::new(&from).is_relative() {
                bail!(
                    "{} was recorded as installed from the relative path `{from}`, which depends on the folder keel runs in; install it again from its folder's full path (`keel plugin install /path/to/{from}`), then update",
                    row.label()
                );
            }
            let fetched = crate::packages::fetch(&from)
                .with_context(|| format!("cannot update {} from {from}", row.label()))?;
            let req = InstallRequest {
                source: fetched
                    .as_ref()
                    .map_or_else(|| PathBuf::from(&from), |f| f.path.clone()),
                origin: fetched.as_ref().map(|f| f.origin.clone()),
                dirs: row
                    .grant
                    .dirs
                    .iter()
                    .map(|(n, d)| (n.clone(), d.path.clone()))
                    .collect(),
                config: row.grant.config.clone(),
                concurrency: row.grant.concurrency,
                rate: row.grant.rate,
                allow_unsigned,
                ..InstallRequest::default()
            };
            let mut checked = crate::plugins::check(runtime.engine(), runtime.linker(), &req)
                .with_context(|| format!("cannot update {} from {from}", row.label()))?;
            // What the source holds now must be this plugin, and not an
            // older one: an update never swaps in another plugin, and a
            // downgrade is the operator's explicit choice.
            let new = &checked.manifest.plugin;
            if new.id != row.id {
                bail!(
                    "{from} now holds {}, not {id}; nothing was updated (install that plugin with `keel plugin install`, or reinstall {id} from its own source)",
                    checked.manifest.label()
                );
            }
            if crate::plugins::compare_versions(&new.version, &row.version).is_lt()
                && !allow_downgrade
            {
                bail!(
                    "{from} holds {}, older than the installed {}; nothing was updated (pass --allow-downgrade to go back to it)",
                    checked.manifest.label(),
                    row.label()
                );
            }
            let digest = checked.package_digest.to_string();
            if row.package_digest.as_deref() == Some(digest.as_str()) {
                say!("{} is up to date ({digest})", row.label());
                return Ok(());
            }
            let signer = crate::plugins::signer(&db, &checked)?;
            if let Some(notice) = signer.as_ref().and_then(|t| t.legacy_notice()) {
                esay!("{notice}");
            }
            // The operator's choices outlive the version they were made
            // for: the review gate, and what was denied.
            checked.grant.review_below = row.grant.review_below;
            crate::consent::deny_again(&mut checked.grant, &row.grant.denied);
            let (added, removed) = crate::consent::diff(
                (&row.manifest, &row.grant),
                (&checked.manifest, &checked.grant),
            );
            esay!("update {} -> {}", row.label(), checked.manifest.label());
            for line in removed.iter().chain(&added) {
                esay!("  {line}");
            }
            if !checked.grant.denied.is_empty() {
                esay!("  still denied: {}", checked.grant.denied.join(", "));
            }
            esay!(
                "  review: {}",
                crate::consent::review_line(&checked.manifest, &checked.grant)
            );
            if let Some(t) = &signer {
                esay!("  signed by {}", t.shown());
            }
            if !added.is_empty() && !yes {
                crate::consent::ask(
                    "The update asks for more (+ above). Accept?",
                    "the update asks for more or changes how it runs (+ above); pass --yes to grant it",
                )?;
            }
            let new = crate::plugins::install(&home, runtime.engine(), &mut db, &checked)?;
            say!("updated {} -> {} {}", row.label(), new.label(), new.digest);
            show_hook_secrets(&crate::webhooks::issue(&home, &mut db, &new.id)?);
        }
        PluginCmd::Policy {
            id,
            review_below,
            json,
        } => {
            let mut db = home.store()?;
            let row = match review_below {
                Some(gate) => crate::plugins::set_review_gate(&home, &mut db, &id, gate)?,
                None => crate::runtime::installed(&db, &id)?,
            };
            let operator = row.grant.review_below;
            let in_force = row.manifest.policy.under(operator);
            if json {
                print_json(&serde_json::json!({
                    "plugin": row.id,
                    "review_below": operator,
                    "manifest_review_below": crate::manifest::as_written(row.manifest.policy.review_below),
                    "in_force": in_force,
                }))?;
            } else {
                say!(
                    "{}: {}",
                    row.label(),
                    crate::consent::review_line(&row.manifest, &row.grant)
                );
            }
        }
        PluginCmd::Rollback { id } => {
            let mut db = home.store()?;
            let row = crate::plugins::rollback(&home, &mut db, &id)?;
            say!("rolled back to {} {}", row.label(), row.digest);
            show_hook_secrets(&crate::webhooks::issue(&home, &mut db, &row.id)?);
        }
        PluginCmd::Webhook(WebhookCmd::Rotate { plugin, hook, json }) => {
            let mut db = home.store()?;
            let issued = crate::webhooks::rotate(&home, &mut db, &plugin, &hook)?;
            if json {
                print_json(&issued)?;
            } else {
                show_hook_secrets(std::slice::from_ref(&issued));
            }
        }
        PluginCmd::Remove { id } => {
            let mut db = home.store()?;
            crate::install::remove(&home, &mut db, &id)?;
            say!("removed {id}");
        }
    }
    Ok(())
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

/// A short title for a record in listings.
pub fn title_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let t = ["title", "subject", "name", "path"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|x| x.as_str()))
        .unwrap_or("");
    let mut t: String = t.chars().take(60).collect();
    if t.is_empty() {
        t = "-".into();
    }
    crate::terminal::field(&t).into_owned()
}

fn records_cmd(root: &std::path::Path, cmd: RecordsCmd) -> anyhow::Result<()> {
    let home = Home::open(root)?;
    let db = home.store()?;
    match cmd {
        RecordsCmd::List {
            kind,
            limit,
            after,
            json,
        } => {
            let rows = records::query(db.conn(), kind.as_deref(), after.as_deref(), limit)?;
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
                        title_of(&r.body)
                    );
                }
            }
        }
        RecordsCmd::Show { id, history, json } => {
            let record = records::get(db.conn(), &id)?.with_context(|| {
                format!("no record with id {id}; list them with `keel records list`")
            })?;
            let links = records::links(db.conn(), &id, None)?;
            let versions = if history {
                Some(records::history(db.conn(), &id)?)
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
        }
    }
    Ok(())
}

fn review_cmd(root: &std::path::Path, cmd: ReviewCmd) -> anyhow::Result<()> {
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

/// `keel audit verify [--checkpoint FILE]`.
fn audit_verify(
    home: &Home,
    db: &crate::store::Store,
    checkpoint: Option<PathBuf>,
    public_key: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut report = audit::verify(db.conn())?;
    if report.broken.is_none()
        && let Some(file) = &checkpoint
    {
        let text = std::fs::read_to_string(file).with_context(|| {
            format!(
                "cannot read {}; give a file `keel audit checkpoint` wrote",
                file.display()
            )
        })?;
        let cp: audit::Checkpoint = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{} is not an audit checkpoint ({e}); give a file `keel audit checkpoint` wrote",
                file.display()
            )
        })?;
        let trusted: Vec<keel_registry::keys::PublicKey> = match public_key {
            Some(k) => vec![
                k.parse()
                    .map_err(|e| anyhow::anyhow!("--public-key: {e}"))?,
            ],
            None => crate::packages::list_keys(home)?
                .into_iter()
                .map(|(_, k)| k)
                .collect(),
        };
        cp.check_signature(&trusted)?;
        report.broken = audit::check_checkpoint(db.conn(), &cp)?;
    }
    if json {
        print_json(&report)?;
    }
    Ok(match report.broken {
        None => {
            if !json {
                match &checkpoint {
                    Some(f) => say!(
                        "audit log intact: {} entries verified, consistent with {}",
                        report.entries,
                        f.display()
                    ),
                    None => say!("audit log intact: {} entries verified", report.entries),
                }
            }
            ExitCode::SUCCESS
        }
        Some(b) => {
            esay!(
                "error: audit entry {} does not verify: {}; keep a copy of {} for investigation before changing anything",
                b.seq,
                b.reason,
                home.db_path().display()
            );
            ExitCode::FAILURE
        }
    })
}

/// Writes `bytes` to `path` readable by the owner only, atomically.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create {}; pick another --out", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot write in {}; pick another --out", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Prints webhook secrets just made: the only time they are shown.
fn show_hook_secrets(secrets: &[crate::webhooks::Issued]) {
    for s in secrets {
        say!(
            "webhook {} of {}: POST {} signed with secret {} (shown once; keep it with the sender)",
            s.hook,
            s.plugin,
            s.path,
            s.secret
        );
    }
}

fn audit_cmd(root: &std::path::Path, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let home = Home::open(root)?;
    let db = home.store()?;
    match args.verify {
        Some(AuditCmd::Verify {
            checkpoint,
            public_key,
            json,
        }) => {
            return audit_verify(&home, &db, checkpoint, public_key, json);
        }
        Some(AuditCmd::Checkpoint { key, out, print }) => {
            let secret = crate::packages::load_key(&home, &key)?;
            let cp = audit::checkpoint(db.conn(), &secret)?;
            let path = out.unwrap_or_else(|| {
                home.root()
                    .join("audit-checkpoints")
                    .join(format!("{}.json", cp.count))
            });
            let text = serde_json::to_string(&cp)?;
            write_private(&path, text.as_bytes())?;
            say!(
                "audit checkpoint: {} entries, head {}, signed by {} -> {}",
                cp.count,
                cp.hash,
                cp.key,
                path.display()
            );
            if print {
                say!("{text}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    if args.json && args.limit.is_some_and(|l| l == 0) {
        bail!("--limit must be at least 1");
    }
    let entries = audit::list(
        db.conn(),
        &Filter {
            record: args.record,
            plugin: args.plugin,
            run: args.run,
            limit: args.limit,
        },
    )?;
    if args.json {
        print_json(&entries)?;
    } else {
        for e in entries {
            let who = match &e.plugin_version {
                Some(v) => format!("{}@{}", e.plugin, v),
                None => e.plugin.clone(),
            };
            say!(
                "{:>5} {} {:<18} {:<15} {:<9} {} {}",
                e.seq,
                e.at,
                who,
                e.action,
                e.outcome,
                e.record_id
                    .as_deref()
                    .map(|r| format!("{r} v{}", e.record_version.unwrap_or(0)))
                    .unwrap_or_default(),
                crate::terminal::field(&e.detail)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
