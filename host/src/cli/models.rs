//! `keel usage` (model tokens and cost from the host's meter) and `keel
//! models` (which providers serve each tier).

use std::path::Path;

use anyhow::bail;
use clap::Args;

use super::print_json;
use crate::home::Home;
use crate::terminal::say;

#[derive(Debug, Args)]
pub(super) struct UsageArgs {
    /// Only this plugin.
    #[arg(long)]
    plugin: Option<String>,
    /// From this day on (YYYY-MM-DD, UTC).
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct ModelsArgs {
    #[arg(long)]
    json: bool,
}

pub(super) fn usage(root: &Path, args: UsageArgs) -> anyhow::Result<()> {
    let UsageArgs {
        plugin,
        since,
        json,
    } = args;
    if let Some(day) = &since
        && chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").is_err()
    {
        bail!("--since {day}: write a day as YYYY-MM-DD");
    }
    let home = Home::open(root)?;
    let rows = crate::models::usage(home.store()?.conn(), plugin.as_deref(), since.as_deref())?;
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
    Ok(())
}

pub(super) fn models(root: &Path, args: ModelsArgs) -> anyhow::Result<()> {
    let ModelsArgs { json } = args;
    let home = Home::open(root)?;
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
    Ok(())
}
