//! `keel demo`.

use std::path::{Path, PathBuf};

use clap::Args;

#[derive(Debug, Args)]
pub(super) struct DemoArgs {
    /// Where the local models' weights are (`scripts/setup
    /// --local-models DIR` fetches them; default
    /// ~/.cache/keel/local-models).
    #[arg(long)]
    models: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// Runs the demo in the home at `root` when one was named, else in a new
/// temporary one.
pub(super) fn run(root: &Path, home_given: bool, args: DemoArgs) -> anyhow::Result<()> {
    crate::demo::run(root, home_given, args.models.as_deref(), args.json)
}
