//! `keel new`: start a plugin project.

use std::path::PathBuf;

use clap::Args;

use crate::terminal::say;

/// The worlds `keel new` can start a project for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum NewWorld {
    Agent,
}

#[derive(Debug, Args)]
pub(super) struct NewArgs {
    /// What to make: `agent`.
    world: NewWorld,
    /// The plugin id, also the project folder's name.
    name: String,
    #[arg(long, value_enum)]
    lang: crate::scaffold::Lang,
    /// The folder to make the project in (default: the current one).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// keel's `sdk` folder, for a Rust project (default: the SDK this keel
    /// carries, written into the project as keel-sdk/).
    #[arg(long)]
    sdk: Option<PathBuf>,
}

pub(super) fn run(args: NewArgs) -> anyhow::Result<()> {
    let NewArgs {
        world: NewWorld::Agent,
        name,
        lang,
        dir,
        sdk,
    } = args;
    let made = crate::scaffold::new_agent(&dir, &name, lang, sdk.as_deref())?;
    say!("made {}: edit the handler, then ./test.sh", made.display());
    Ok(())
}
