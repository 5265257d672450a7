//! `keel secret`: secrets for the host's own use, sealed in the home.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;

use super::print_json;
use crate::home::Home;
use crate::terminal::say;

#[derive(Debug, Subcommand)]
pub(super) enum SecretCmd {
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

pub(super) fn run(root: &Path, cmd: SecretCmd) -> anyhow::Result<()> {
    let home = Home::open(root)?;
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
    Ok(())
}
