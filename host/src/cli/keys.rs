//! `keel key` (signing keys kept in the home) and `keel trust` (the public
//! keys whose package signatures installs accept).

use std::path::Path;

use anyhow::bail;
use clap::Subcommand;

use super::print_json;
use crate::home::Home;
use crate::terminal::say;

#[derive(Debug, Subcommand)]
pub(super) enum KeyCmd {
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
pub(super) enum TrustCmd {
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

pub(super) fn key(root: &Path, cmd: KeyCmd) -> anyhow::Result<()> {
    let home = Home::open(root)?;
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
    Ok(())
}

pub(super) fn trust(root: &Path, cmd: TrustCmd) -> anyhow::Result<()> {
    let home = Home::open(root)?;
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
    Ok(())
}
