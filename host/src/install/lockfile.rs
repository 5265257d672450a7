//! `keel.lock` in the home: for every installed plugin its id, version,
//! digests, source, signer and the capabilities granted, so the operator
//! (or a backup, or a diff in version control) sees exactly what runs. It
//! is written from the store after every install, update, policy change and
//! removal, through a temporary file, so it is never half-written.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Serialize;

use crate::home::Home;
use crate::manifest::Capabilities;
use crate::plugins;
use crate::store::Store;

/// The lockfile's name in the home.
pub const FILE: &str = "keel.lock";

#[derive(Debug, Serialize)]
struct Lock {
    /// Bumped when the layout changes.
    version: u32,
    plugin: Vec<Locked>,
}

#[derive(Debug, Serialize)]
struct Locked {
    id: String,
    version: String,
    world: String,
    /// The component's digest.
    digest: String,
    /// The package digest (manifest, component, readme).
    #[serde(skip_serializing_if = "Option::is_none")]
    package_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    /// The operator's name for the key that signed it, and the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    signer: Option<String>,
    installed_at: String,
    /// What the operator denied of what it asked (kept across updates).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    denied: Vec<String>,
    /// The operator's review gate: `all`, or the confidence below which its
    /// sends wait (the manifest's `policy.review_below` can only raise it).
    /// Written as text: TOML would widen the threshold to a long float.
    review_below: String,
    granted: Capabilities,
    /// Folder bindings: logical name → host path.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    dirs: BTreeMap<String, String>,
    /// Endpoints: name → the address it may reach.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    endpoints: BTreeMap<String, String>,
    /// Secrets: the plugin's name → the stored secret's name (never a
    /// value).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    secrets: BTreeMap<String, String>,
}

/// Writes `keel.lock` from what the store says is installed.
pub fn write(home: &Home, db: &Store) -> anyhow::Result<()> {
    let plugin = plugins::list(db.conn())?
        .into_iter()
        .map(|p| Locked {
            dirs: p
                .grant
                .dirs
                .iter()
                .map(|(name, d)| (name.clone(), d.path.display().to_string()))
                .collect(),
            endpoints: p
                .grant
                .endpoints
                .iter()
                .map(|(name, e)| (name.clone(), e.to_string()))
                .collect(),
            secrets: p.grant.secrets,
            id: p.id,
            version: p.version,
            world: p.world,
            digest: p.digest,
            package_digest: p.package_digest,
            source: p.source,
            signer: p.signer,
            installed_at: p.installed_at,
            denied: p.grant.denied,
            review_below: p.grant.review_below.to_string(),
            granted: p.grant.capabilities,
        })
        .collect();
    let text = toml::to_string_pretty(&Lock { version: 1, plugin })
        .context("cannot write the lockfile")?;
    let text = format!(
        "# What is installed in this keel home and what it was granted.\n# Written by keel after every install and removal; do not edit.\n\n{text}"
    );
    let mut tmp = tempfile::NamedTempFile::new_in(home.root())?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    tmp.persist(home.root().join(FILE))
        .context("cannot write keel.lock in the home")?;
    Ok(())
}
