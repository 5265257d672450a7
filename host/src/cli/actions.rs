//! `keel actions`: the action registry, core and provided.

use std::path::Path;

use clap::Subcommand;
use serde::Serialize;

use super::print_json;
use crate::home::Home;
use crate::terminal::say;

#[derive(Debug, Subcommand)]
pub(super) enum ActionsCmd {
    /// List the actions plugins can call.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn run(root: &Path, cmd: ActionsCmd) -> anyhow::Result<()> {
    let ActionsCmd::List { json } = cmd;
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
    if let Ok(home) = Home::open(root) {
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
    Ok(())
}
