//! Installing, listing and removing plugins. Install checks the manifest,
//! the component and its imports against the manifest before anything is
//! written, then writes the files and the store row so that a failure leaves
//! nothing behind.

mod check;
pub mod consent;
pub mod lockfile;
pub mod packages;

pub use check::{Checked, MAX_COMPONENT_BYTES, check, check_imports};

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use keel_registry::Digest;

use crate::engine::KeelEngine;
use crate::home::Home;
use crate::install::packages::Trusted;

use crate::plugins::{self, PluginRow};
use crate::store::{Actor, Store, Touched};

/// What the operator asked to install.
#[derive(Debug, Clone, Default)]
pub struct InstallRequest {
    /// A plugin folder (with `keel.toml`), a `keel.toml`, or a `.wasm` file.
    pub source: PathBuf,
    /// The manifest, when `source` is a `.wasm` file.
    pub manifest: Option<PathBuf>,
    /// The component, overriding the manifest's `component`.
    pub component: Option<PathBuf>,
    /// Folders, config values, endpoints and secrets the operator binds.
    pub bindings: crate::grant::Bindings,
    /// The operator's cap on runs at once.
    pub concurrency: Option<u32>,
    /// The operator's cap on runs started per unit of time.
    pub rate: Option<crate::manifest::Rate>,
    /// Install a package that carries no signature (audited).
    pub allow_unsigned: bool,
    /// Install only these exact contents (the package digest).
    pub digest: Option<Digest>,
    /// Where a fetched package came from (`oci://…`, `https://…`), recorded
    /// as its source instead of the temporary file it was fetched into.
    pub origin: Option<String>,
}

/// A recorded source as the operator wrote it: the path of `dir:PATH` and
/// `package:PATH`, a reference or URL as it is.
pub fn shown(source: &str) -> &str {
    source
        .strip_prefix("dir:")
        .or_else(|| source.strip_prefix("package:"))
        .unwrap_or(source)
}

/// Orders two plugin versions (`MAJOR.MINOR.PATCH[-PRE][+BUILD]`, as the
/// manifest requires): by the numbers, then a pre-release before its
/// release, pre-releases by their dot-separated parts (numbers below words,
/// numbers by value); build metadata does not count.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn split(v: &str) -> (Vec<u64>, Option<&str>) {
        let v = v.split('+').next().unwrap_or(v);
        let (core, pre) = match v.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (v, None),
        };
        (
            core.split('.').map(|n| n.parse().unwrap_or(0)).collect(),
            pre,
        )
    }
    let ((ca, pa), (cb, pb)) = (split(a), split(b));
    ca.cmp(&cb).then_with(|| match (pa, pb) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => {
            let part = |p: &str| (p.parse::<u64>().ok(), p.to_string());
            let xs = x.split('.').map(part);
            let ys = y.split('.').map(part);
            // Numbers sort before words; `Option` puts `None` first, so
            // flip it.
            let key = |(n, s): (Option<u64>, String)| (n.is_none(), n, s);
            xs.map(key).cmp(ys.map(key))
        }
    })
}

/// The trusted key that signed a checked package, refused unless the key
/// is trusted for this plugin's id; `None` for an unsigned package or
/// folder. The name shown for it is the operator's, not the package's.
pub fn signer(db: &Store, checked: &Checked) -> anyhow::Result<Option<Trusted>> {
    let keel_registry::package::Signed::By { key, signer } = &checked.signed else {
        return Ok(None);
    };
    let key = key.to_string();
    let id = &checked.manifest.plugin.id;
    let label = checked.manifest.label();
    let Some(trusted) = crate::install::packages::trusted(db.conn())?
        .into_iter()
        .find(|t| t.key == key)
    else {
        bail!(
            "{label}: the package is signed by {key} (calling itself \"{signer}\"), which is not trusted; if it is theirs, trust it with `keel trust add {key} --name NAME --for {id}`; nothing was installed"
        );
    };
    if let crate::install::packages::TrustScope::Plugins(ids) = &trusted.scope
        && !trusted.scope.covers(id)
    {
        bail!(
            "{label}: the package is signed by {}, which is trusted only for {}; if they may ship {id} too, `keel trust remove {}` then `keel trust add {key} --name {} --for {},{id}`; nothing was installed",
            trusted.shown(),
            ids.join(", "),
            trusted.name,
            trusted.name,
            ids.join(",")
        );
    }
    Ok(Some(trusted))
}

/// Refuses a channel plugin when another installed plugin already serves
/// one of its channels.
fn check_channel_free(db: &Store, checked: &Checked) -> anyhow::Result<()> {
    let id = &checked.manifest.plugin.id;
    let Some(spec) = &checked.manifest.channel else {
        return Ok(());
    };
    for other in plugins::list(db.conn())? {
        let Some(theirs) = other.manifest.channel.as_ref().filter(|_| other.id != *id) else {
            continue;
        };
        if let Some(name) = spec.serves.iter().find(|n| theirs.serves.contains(n)) {
            bail!(
                "{}: channel `{name}` is already served by {}; remove that plugin first (`keel plugin remove {}`)",
                checked.manifest.label(),
                other.label(),
                other.id
            );
        }
    }
    Ok(())
}

/// Installs (or replaces) a checked plugin in `home`.
pub fn install(
    home: &Home,
    engine: &KeelEngine,
    db: &mut Store,
    checked: &Checked,
) -> anyhow::Result<PluginRow> {
    let id = &checked.manifest.plugin.id;
    let signer = signer(db, checked)?.map(|t| t.shown());
    check_channel_free(db, checked)?;
    let dest = home.plugin_dir(id);
    // Write into a fresh folder beside the destination, then swap it in, so
    // a failure never leaves a half-written plugin.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{id}-"))
        .tempdir_in(home.plugins_dir())
        .context("cannot write into the home's plugins folder")?;
    std::fs::write(
        staging.path().join("component.wasm"),
        &checked.component_bytes,
    )?;
    std::fs::write(staging.path().join("keel.toml"), &checked.manifest_text)?;
    // The version being replaced moves aside, and becomes what `keel
    // plugin rollback` goes back to once this install is recorded.
    let replacing = home.plugins_dir().join(format!(".{id}.replacing"));
    if replacing.exists() {
        std::fs::remove_dir_all(&replacing)?;
    }
    let replaces = dest.exists() && plugins::get(db.conn(), id)?.is_some();
    if dest.exists() {
        std::fs::rename(&dest, &replacing)?;
    }
    std::fs::rename(staging.keep(), &dest)?;
    let digest = checked.digest.to_string();
    let label = checked.manifest.label();
    let result = db.write(&Actor::operator(), "plugin.install", None, Ok(()), |tx| {
        let kept = if replaces {
            plugins::keep_replaced(tx, id)
        } else {
            Ok(())
        };
        let r = kept
            .and_then(|()| plugins::upsert(tx, &checked.manifest, &digest, &checked.grant))
            .and_then(|()| {
                let package = checked.package_digest.to_string();
                plugins::set_origin(tx, id, &checked.source, signer.as_deref(), &package)
            })
            .map_err(Into::into)
            .and_then(|()| crate::jobs::webhooks::sync(tx, &checked.manifest));
        let by = match (&signer, !checked.source.starts_with("dir:")) {
            (Some(s), _) => format!("signed by {s}"),
            (None, true) => "unsigned, allowed by --allow-unsigned".to_string(),
            (None, false) => "unsigned folder".to_string(),
        };
        (
            r,
            Touched::detail(format!(
                "{label} {digest} from {} ({by}), package {}",
                checked.source, checked.package_digest
            )),
        )
    });
    if let Err(e) = result {
        // Put the old plugin back: the store still points at it.
        let _ = std::fs::remove_dir_all(&dest);
        if replacing.exists() {
            let _ = std::fs::rename(&replacing, &dest);
        }
        bail!("cannot record the install of {label}: {e}");
    }
    if replacing.exists() {
        keep_previous(home, id, &replacing);
    }
    engine.cache(&home.cache_dir(), &digest, &checked.component);
    crate::install::lockfile::write(home, db)?;
    plugins::get(db.conn(), id)?.context("installed plugin row is missing")
}

/// `keel plugin policy ID --review-below GATE`: sets the operator's review
/// gate for plugin `id`, audited as the operator. The plugin's manifest can
/// still make it stricter, never looser.
pub fn set_review_gate(
    home: &Home,
    db: &mut Store,
    id: &str,
    gate: crate::manifest::ReviewGate,
) -> anyhow::Result<PluginRow> {
    let row = crate::plugins::installed(db, id)?;
    let before = row.grant.review_below;
    let mut grant = row.grant.clone();
    grant.review_below = gate;
    let detail = format!("{} review-below {before} -> {gate}", row.label());
    db.write(&Actor::operator(), "plugin.policy", None, Ok(()), |tx| {
        let r = (|| -> Result<(), crate::error::CallError> {
            let json = serde_json::to_string(&grant)?;
            crate::plugins::set_grant(tx, id, &json)?;
            Ok(())
        })();
        (r, Touched::detail(&detail))
    })?;
    crate::install::lockfile::write(home, db)?;
    crate::plugins::installed(db, id)
}

/// Keeps `dir` (a replaced version's files) as the plugin's previous
/// version, for `keel plugin rollback`.
fn keep_previous(home: &Home, id: &str, dir: &Path) {
    let previous = home.plugins_dir().join(format!(".{id}.previous"));
    if previous.exists() {
        let _ = std::fs::remove_dir_all(&previous);
    }
    if let Err(e) = std::fs::rename(dir, &previous) {
        tracing::warn!("the replaced version of {id} could not be kept for rollback: {e}");
    }
}

/// `keel plugin rollback ID`: puts back the version the last install or
/// rollback replaced (files and grant), keeping the current one so a
/// second rollback goes forward again.
pub fn rollback(home: &Home, db: &mut Store, id: &str) -> anyhow::Result<PluginRow> {
    let current = crate::plugins::installed(db, id)?;
    let dest = home.plugin_dir(id);
    let previous = home.plugins_dir().join(format!(".{id}.previous"));
    if !previous.is_dir() {
        bail!(
            "{} has no earlier version to go back to; rollback works after an install replaced one",
            current.label()
        );
    }
    let replacing = home.plugins_dir().join(format!(".{id}.replacing"));
    if replacing.exists() {
        std::fs::remove_dir_all(&replacing)?;
    }
    std::fs::rename(&dest, &replacing)?;
    std::fs::rename(&previous, &dest)?;
    let label = current.label();
    let gate = current.grant.review_below;
    let result = db.write(&Actor::operator(), "plugin.rollback", None, Ok(()), |tx| {
        let r = plugins::restore_replaced(tx, id)
            .map_err(crate::error::CallError::from)
            .and_then(|row| {
                row.ok_or_else(|| {
                    crate::error::CallError::NotFound(format!(
                        "{label} has no recorded earlier version"
                    ))
                })
            })
            .and_then(|row| crate::jobs::webhooks::sync(tx, &row.manifest).map(|()| row))
            .and_then(|mut row| -> Result<PluginRow, crate::error::CallError> {
                // The review gate is the operator's latest word, not part of
                // the version: going back does not loosen or tighten it.
                row.grant.review_below = gate;
                let json = serde_json::to_string(&row.grant)?;
                crate::plugins::set_grant(tx, id, &json)?;
                Ok(row)
            });
        let detail = match &r {
            Ok(row) => format!("{label} -> {} {}", row.label(), row.digest),
            Err(_) => label.clone(),
        };
        (r.map(|row| row.label()), Touched::detail(detail))
    });
    if let Err(e) = result {
        let _ = std::fs::rename(&dest, &previous);
        let _ = std::fs::rename(&replacing, &dest);
        bail!("cannot roll back {label}: {e}");
    }
    keep_previous(home, id, &replacing);
    crate::install::lockfile::write(home, db)?;
    crate::plugins::installed(db, id)
}

/// Removes an installed plugin; its records, runs and audit stay.
pub fn remove(home: &Home, db: &mut Store, id: &str) -> anyhow::Result<()> {
    let row = crate::plugins::installed(db, id)?;
    let label = row.label();
    db.write(&Actor::operator(), "plugin.remove", None, Ok(()), |tx| {
        let r = plugins::remove(tx, id).and_then(|_| crate::jobs::webhooks::remove(tx, id));
        (r.map_err(Into::into), Touched::detail(label.clone()))
    })?;
    crate::install::lockfile::write(home, db)?;
    let previous = home.plugins_dir().join(format!(".{id}.previous"));
    if previous.exists() {
        let _ = std::fs::remove_dir_all(&previous);
    }
    let dir = home.plugin_dir(id);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| {
            format!(
                "{label} was removed but {} could not be deleted",
                dir.display()
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::compare_versions;
    use std::cmp::Ordering::{Equal, Greater, Less};

    /// A home from before migration 0008: its trusted key counts for any
    /// plugin (as legacy), and a stored manifest's old default
    /// `review_below = 1.0` no longer pins a relaxed gate at 1.0.
    #[test]
    fn h3_old_homes_keep_their_keys_and_lose_the_old_review_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keel.db");
        let mut db = crate::store::Store::open(&path).unwrap();
        let text = "[plugin]\nid = \"p\"\nversion = \"0.1.0\"\nworld = \"agent\"\n";
        let mut manifest = crate::manifest::Manifest::parse(text, "keel.toml").unwrap();
        manifest.policy.review_below = 1.0;
        let grant = crate::grant::Grant::new(&manifest, &Default::default()).unwrap();
        crate::plugins::upsert(db.conn(), &manifest, "sha256:00", &grant).unwrap();
        let key = keel_registry::keys::SecretKey::generate().unwrap().public();
        crate::install::packages::trust(
            &mut db,
            &key.to_string(),
            "old",
            &crate::install::packages::TrustScope::any(),
        )
        .unwrap();
        let conn = db.conn();
        conn.execute_batch(
            // Back to version 7: undo 0008's column and the later ones'.
            "ALTER TABLE trusted_keys DROP COLUMN plugins;
             ALTER TABLE runs DROP COLUMN bytes_in; ALTER TABLE runs DROP COLUMN bytes_out;
             PRAGMA user_version = 7;",
        )
        .unwrap();
        drop(db);

        let db = crate::store::Store::open(&path).unwrap();
        let row = crate::plugins::get(db.conn(), "p").unwrap().unwrap();
        assert_eq!(row.manifest.policy.review_below, 0.0);
        assert_eq!(row.grant.review_below, crate::manifest::ReviewGate::All);
        let trusted = crate::install::packages::trusted(db.conn()).unwrap();
        assert!(trusted[0].scope.covers("anything"));
        assert!(trusted[0].legacy_notice().is_some());
    }

    /// H3: what "older" means for `--allow-downgrade`.
    #[test]
    fn h3_versions_order_as_semver() {
        for (a, b, want) in [
            ("0.1.0", "0.0.1", Greater),
            ("0.10.0", "0.9.9", Greater),
            ("1.0.0", "1.0.0", Equal),
            ("1.0.0-rc.1", "1.0.0", Less),
            ("1.0.0-rc.2", "1.0.0-rc.10", Less),
            ("1.0.0-alpha", "1.0.0-1", Greater),
            ("1.0.0+build.7", "1.0.0", Equal),
            ("2.0.0", "10.0.0", Less),
        ] {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
        }
    }
}
