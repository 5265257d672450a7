//! `keel plugin`: pack, sign, push, install, update, roll back, inspect and
//! remove plugins, and rotate their webhooks' secrets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;

use super::print_json;
use crate::home::Home;
use crate::plugins as plugin_rows;
use crate::terminal::{esay, say};

mod install;

use install::InstallArgs;

#[derive(Debug, Subcommand)]
pub(super) enum PluginCmd {
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
    Update(install::UpdateArgs),
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
    Install(InstallArgs),
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
pub(super) enum WebhookCmd {
    /// Replace a hook's secret: the new one is shown once, the old one is
    /// refused from now on.
    Rotate {
        plugin: String,
        hook: String,
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn run(root: &Path, cmd: PluginCmd) -> anyhow::Result<()> {
    if let PluginCmd::Pack { dir, out } = &cmd {
        let (path, digest) = crate::install::packages::pack(dir, out.as_deref())?;
        say!("packed {} {digest}", path.display());
        return Ok(());
    }
    if let PluginCmd::Push { package, reference } = &cmd {
        let (digest, signed) = crate::install::packages::push(package, reference)?;
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
            let (digest, public) =
                crate::install::packages::sign(&home, &package, &key, signer.as_deref())?;
            say!("signed {} {digest} by {public}", package.display());
        }
        PluginCmd::Install(args) => install::install(&home, args)?,
        PluginCmd::List { json } => list(&home, json)?,
        PluginCmd::Inspect { id, json } => inspect(&home, &id, json)?,
        PluginCmd::Update(args) => install::update(&home, args)?,
        PluginCmd::Policy {
            id,
            review_below,
            json,
        } => policy(&home, &id, review_below, json)?,
        PluginCmd::Rollback { id } => {
            let mut db = home.store()?;
            let row = crate::install::rollback(&home, &mut db, &id)?;
            say!("rolled back to {} {}", row.label(), row.digest);
            show_hook_secrets(&crate::jobs::webhooks::issue(&home, &mut db, &row.id)?);
        }
        PluginCmd::Webhook(WebhookCmd::Rotate { plugin, hook, json }) => {
            let mut db = home.store()?;
            let issued = crate::jobs::webhooks::rotate(&home, &mut db, &plugin, &hook)?;
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

fn list(home: &Home, json: bool) -> anyhow::Result<()> {
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
    Ok(())
}

fn inspect(home: &Home, id: &str, json: bool) -> anyhow::Result<()> {
    let db = home.store()?;
    let row = crate::plugins::installed(&db, id)?;
    let webhooks = crate::jobs::webhooks::list(db.conn(), &row.id)?;
    if json {
        #[derive(Serialize)]
        struct Inspected<'a> {
            #[serde(flatten)]
            row: &'a crate::plugins::PluginRow,
            webhooks: &'a [crate::jobs::webhooks::Hook],
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
            say!("  from:     {}", crate::install::shown(source));
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
            crate::install::consent::review_line(&row.manifest, &row.grant)
        );
        for (name, dir) in &row.grant.dirs {
            say!(
                "  dir {name} ({}) = {}",
                dir.access.as_str(),
                dir.path.display()
            );
        }
        for (name, e) in &row.grant.endpoints {
            say!("  endpoint {name} ({}) = {e}", e.kind());
        }
        for (name, stored) in &row.grant.secrets {
            say!("  secret {name} = stored secret {stored}");
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
    Ok(())
}

fn policy(
    home: &Home,
    id: &str,
    review_below: Option<crate::manifest::ReviewGate>,
    json: bool,
) -> anyhow::Result<()> {
    let mut db = home.store()?;
    let row = match review_below {
        Some(gate) => crate::install::set_review_gate(home, &mut db, id, gate)?,
        None => crate::plugins::installed(&db, id)?,
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
            crate::install::consent::review_line(&row.manifest, &row.grant)
        );
    }
    Ok(())
}

/// Prints webhook secrets just made: the only time they are shown.
pub(super) fn show_hook_secrets(secrets: &[crate::jobs::webhooks::Issued]) {
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

pub(super) fn pairs(items: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("`{item}` is not {what}; write it as {what}"))
        })
        .collect()
}
