//! `keel plugin install` and `keel plugin update`: check what a plugin
//! asks for, show it, ask the operator, then install.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;

use super::{pairs, print_json, show_hook_secrets};
use crate::home::Home;
use crate::install::Checked;
use crate::install::InstallRequest;
use crate::install::packages::{Fetched, Trusted};
use crate::plugins::PluginRow;
use crate::runtime::Runtime;
use crate::store::Store;
use crate::terminal::{esay, say};

#[derive(Debug, Args)]
pub(in crate::cli) struct InstallArgs {
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
    #[command(flatten)]
    network: NetworkArgs,
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
}

/// `--endpoint` and `--secret`, on install and update.
#[derive(Debug, Args)]
pub(in crate::cli) struct NetworkArgs {
    /// Bind an endpoint the manifest asks for: NAME=URL (http) or
    /// NAME=HOST:PORT (tcp; imaps:// and smtps:// for TLS).
    #[arg(long = "endpoint", value_name = "NAME=ADDRESS")]
    endpoints: Vec<String>,
    /// Bind a secret the manifest asks for to a stored one
    /// (`keel secret set`): NAME=STORED; by default the same name.
    #[arg(long = "secret", value_name = "NAME=STORED")]
    secrets: Vec<String>,
}

impl NetworkArgs {
    /// Adds the flags' bindings over `bindings` (an update's earlier ones).
    fn apply(&self, bindings: &mut crate::grant::Bindings) -> anyhow::Result<()> {
        bindings
            .endpoints
            .extend(pairs(&self.endpoints, "NAME=ADDRESS")?);
        bindings
            .secrets
            .extend(pairs(&self.secrets, "NAME=STORED")?);
        Ok(())
    }
}

/// `keel plugin update`'s flags.
#[derive(Debug, Args)]
pub(in crate::cli) struct UpdateArgs {
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
    /// Endpoints and secrets to bind anew (the earlier bindings stay
    /// otherwise).
    #[command(flatten)]
    network: NetworkArgs,
}

pub(super) fn install(home: &Home, args: InstallArgs) -> anyhow::Result<()> {
    // Holds a fetched package's file until it is installed.
    let (_fetched, req) = request(&args)?;
    let runtime = Runtime::new(home)?;
    let mut checked = crate::install::check(runtime.engine(), runtime.linker(), &req)?;
    let mut db = home.store()?;
    // An untrusted signer is refused before the operator is asked.
    let signer = crate::install::signer(&db, &checked)?;
    if let Some(notice) = signer.as_ref().and_then(|t| t.legacy_notice()) {
        esay!("{notice}");
    }
    for cap in &args.deny {
        crate::install::consent::deny(&mut checked.grant, cap).map_err(anyhow::Error::msg)?;
    }
    if let Some(gate) = args.review_below {
        checked.grant.review_below = gate;
    }
    show_asked(&db, &checked, signer.as_ref());
    if !args.yes {
        crate::install::consent::ask(
            &format!(
                "Install {} with these capabilities?",
                checked.manifest.label()
            ),
            "keel asks before it installs a plugin; pass --yes to grant what is listed above (and --deny KIND:VALUE to grant less)",
        )?;
    }
    let row = crate::install::install(home, runtime.engine(), &mut db, &checked)?;
    let secrets = crate::jobs::webhooks::issue(home, &mut db, &row.id)?;
    if args.json {
        #[derive(Serialize)]
        struct Installed<'a> {
            #[serde(flatten)]
            row: &'a PluginRow,
            webhook_secrets: &'a [crate::jobs::webhooks::Issued],
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
    Ok(())
}

/// The install request from the flags, with the package fetched when the
/// path names a remote one.
fn request(args: &InstallArgs) -> anyhow::Result<(Option<Fetched>, InstallRequest)> {
    let digest = args
        .digest
        .as_deref()
        .map(str::parse::<keel_registry::Digest>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--digest: {e}"))?;
    if args.concurrency == Some(0) {
        bail!("--concurrency must be at least 1");
    }
    let rate = args
        .rate
        .as_deref()
        .map(crate::manifest::parse_rate)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--{e}"))?;
    let mut bindings = crate::grant::Bindings {
        dirs: pairs(&args.dirs, "NAME=PATH")?
            .into_iter()
            .map(|(k, v)| (k, PathBuf::from(v)))
            .collect(),
        config: pairs(&args.config, "KEY=VALUE")?,
        ..Default::default()
    };
    args.network.apply(&mut bindings)?;
    let source = args.path.to_string_lossy().into_owned();
    let fetched = crate::install::packages::fetch(&source)?;
    let req = InstallRequest {
        source: fetched
            .as_ref()
            .map_or_else(|| args.path.clone(), |f| f.path.clone()),
        origin: fetched.as_ref().map(|f| f.origin.clone()),
        manifest: args.manifest.clone(),
        component: args.component.clone(),
        bindings,
        concurrency: args.concurrency,
        rate,
        allow_unsigned: args.allow_unsigned,
        digest,
    };
    Ok((fetched, req))
}

/// What the plugin would be granted, whom it could invoke, and who signed
/// it, on stderr before the operator is asked.
fn show_asked(db: &Store, checked: &Checked, signer: Option<&Trusted>) {
    for line in crate::install::consent::summary(&checked.manifest, &checked.grant) {
        esay!("{line}");
    }
    let installed = |id: &str| {
        crate::plugins::get(db.conn(), id)
            .ok()
            .flatten()
            .map(|row| (row.label(), row.grant))
    };
    for line in crate::install::consent::invoke_reach(&checked.grant, installed) {
        esay!("{line}");
    }
    if let Some(t) = signer {
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
}

/// Installs plugin `id`'s newer version from where it was installed from;
/// asks again when it asks for more.
pub(super) fn update(home: &Home, args: UpdateArgs) -> anyhow::Result<()> {
    let UpdateArgs {
        id,
        yes,
        allow_unsigned,
        allow_downgrade,
        network,
    } = args;
    let id = id.as_str();
    let runtime = Runtime::new(home)?;
    let mut db = home.store()?;
    let row = crate::plugins::installed(&db, id)?;
    let mut bindings = kept_bindings(&row);
    network.apply(&mut bindings)?;
    let from = recorded_source(&row)?;
    let fetched = crate::install::packages::fetch(&from)
        .with_context(|| format!("cannot update {} from {from}", row.label()))?;
    let req = InstallRequest {
        source: fetched
            .as_ref()
            .map_or_else(|| PathBuf::from(&from), |f| f.path.clone()),
        origin: fetched.as_ref().map(|f| f.origin.clone()),
        bindings,
        concurrency: row.grant.concurrency,
        rate: row.grant.rate,
        allow_unsigned,
        ..InstallRequest::default()
    };
    let mut checked = crate::install::check(runtime.engine(), runtime.linker(), &req)
        .with_context(|| format!("cannot update {} from {from}", row.label()))?;
    same_plugin(&row, &checked, &from, id, allow_downgrade)?;
    let digest = checked.package_digest.to_string();
    if row.package_digest.as_deref() == Some(digest.as_str()) {
        say!("{} is up to date ({digest})", row.label());
        return Ok(());
    }
    let signer = crate::install::signer(&db, &checked)?;
    if let Some(notice) = signer.as_ref().and_then(|t| t.legacy_notice()) {
        esay!("{notice}");
    }
    // The operator's choices outlive the version they were made
    // for: the review gate, and what was denied.
    checked.grant.review_below = row.grant.review_below;
    crate::install::consent::deny_again(&mut checked.grant, &row.grant.denied);
    let asks_more = show_changes(&row, &checked, signer.as_ref());
    if asks_more && !yes {
        crate::install::consent::ask(
            "The update asks for more (+ above). Accept?",
            "the update asks for more or changes how it runs (+ above); pass --yes to grant it",
        )?;
    }
    let new = crate::install::install(home, runtime.engine(), &mut db, &checked)?;
    say!("updated {} -> {} {}", row.label(), new.label(), new.digest);
    show_hook_secrets(&crate::jobs::webhooks::issue(home, &mut db, &new.id)?);
    Ok(())
}

/// What the operator bound for the installed version, for the next: its
/// folders, config, named endpoints (fixed ones come from the manifest)
/// and secrets.
fn kept_bindings(row: &PluginRow) -> crate::grant::Bindings {
    let named: Vec<&str> = row
        .manifest
        .capabilities
        .asked_endpoints()
        .filter(|(_, asked)| !matches!(asked, crate::manifest::Asked::Fixed(_)))
        .map(|(name, _)| name)
        .collect();
    crate::grant::Bindings {
        dirs: row
            .grant
            .dirs
            .iter()
            .map(|(n, d)| (n.clone(), d.path.clone()))
            .collect(),
        config: row.grant.config.clone(),
        endpoints: row
            .grant
            .endpoints
            .iter()
            .filter(|(name, _)| named.contains(&name.as_str()))
            .map(|(name, e)| (name.clone(), e.to_string()))
            .collect(),
        secrets: row.grant.secrets.clone(),
    }
}

/// Where `row` was installed from, when an update can go back there.
fn recorded_source(row: &PluginRow) -> anyhow::Result<String> {
    let Some(source) = row.source.clone() else {
        bail!(
            "{} does not say where it was installed from; install it again from its folder or package",
            row.label()
        );
    };
    let from = crate::install::shown(&source).to_string();
    // Installs before sources were stored absolute recorded paths
    // like `dir:.`, which name whatever folder keel runs in.
    if !crate::install::packages::is_remote(&from) && std::path::Path::new(&from).is_relative() {
        bail!(
            "{} was recorded as installed from the relative path `{from}`, which depends on the folder keel runs in; install it again from its folder's full path (`keel plugin install /path/to/{from}`), then update",
            row.label()
        );
    }
    Ok(from)
}

/// What the source holds now must be this plugin, and not an older one: an
/// update never swaps in another plugin, and a downgrade is the operator's
/// explicit choice.
fn same_plugin(
    row: &PluginRow,
    checked: &Checked,
    from: &str,
    id: &str,
    allow_downgrade: bool,
) -> anyhow::Result<()> {
    let new = &checked.manifest.plugin;
    if new.id != row.id {
        bail!(
            "{from} now holds {}, not {id}; nothing was updated (install that plugin with `keel plugin install`, or reinstall {id} from its own source)",
            checked.manifest.label()
        );
    }
    if crate::install::compare_versions(&new.version, &row.version).is_lt() && !allow_downgrade {
        bail!(
            "{from} holds {}, older than the installed {}; nothing was updated (pass --allow-downgrade to go back to it)",
            checked.manifest.label(),
            row.label()
        );
    }
    Ok(())
}

/// What the update adds and removes, on stderr; whether it asks for more.
fn show_changes(row: &PluginRow, checked: &Checked, signer: Option<&Trusted>) -> bool {
    let (added, removed) = crate::install::consent::diff(
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
        crate::install::consent::review_line(&checked.manifest, &checked.grant)
    );
    if let Some(t) = signer {
        esay!("  signed by {}", t.shown());
    }
    !added.is_empty()
}
