//! Packages, keys and trust, as the operator uses them: `keel plugin pack`
//! makes a one-file package from a plugin folder, `keel key generate` a
//! signing key in the home, `keel plugin sign` signs a package, `keel trust`
//! keeps the public keys whose signatures an install accepts. The package
//! format and signatures themselves live in `keel-registry`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use keel_registry::Digest;
use keel_registry::keys::{PublicKey, SecretKey};
use keel_registry::package::{self, Package, Signed};

use crate::home::Home;
use crate::manifest::{Manifest, valid_id};
use crate::store::{Actor, Store, Touched, now};

/// Writes `bytes` to `path` through a temporary file beside it, so a
/// failure never leaves half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The package of the plugin in folder `dir` (its `keel.toml`, the
/// component it names, its `README.md` if any), checked enough to be worth
/// shipping: the manifest parses and the component is a Wasm binary.
pub fn read_folder(dir: &Path) -> anyhow::Result<Package> {
    let manifest_path = dir.join(package::MANIFEST);
    let manifest = Manifest::load(&manifest_path)?;
    let manifest_text = std::fs::read_to_string(&manifest_path)?;
    let component_path = dir.join(
        manifest
            .plugin
            .component
            .as_deref()
            .unwrap_or("plugin.wasm"),
    );
    let size = std::fs::metadata(&component_path)
        .with_context(|| {
            format!(
                "{}: component {} not found; build the plugin first",
                manifest.label(),
                component_path.display()
            )
        })?
        .len();
    if size > package::MAX_COMPONENT_BYTES {
        bail!(
            "{}: component {} is {size} bytes, over the {}-byte limit",
            manifest.label(),
            component_path.display(),
            package::MAX_COMPONENT_BYTES
        );
    }
    let component = std::fs::read(&component_path)?;
    if !component.starts_with(b"\0asm") {
        bail!(
            "{}: {} is not a WebAssembly binary",
            manifest.label(),
            component_path.display()
        );
    }
    let readme = match std::fs::read_to_string(dir.join(package::README)) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).context("cannot read README.md"),
    };
    Ok(Package {
        manifest: manifest_text,
        component,
        readme,
        signature: None,
    })
}

/// `keel plugin pack DIR [-o FILE]`: writes `ID-VERSION.keel` (or `out`).
pub fn pack(dir: &Path, out: Option<&Path>) -> anyhow::Result<(PathBuf, Digest)> {
    let package = read_folder(dir)?;
    let manifest = Manifest::parse(&package.manifest, "keel.toml")?;
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| {
        PathBuf::from(format!(
            "{}-{}.keel",
            manifest.plugin.id, manifest.plugin.version
        ))
    });
    write_atomically(&out, &package.to_bytes())?;
    Ok((out, package.digest()))
}

/// Reads a package file, refusing one over the size limit before reading.
pub fn open(path: &Path) -> anyhow::Result<Package> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("{} does not exist", path.display()))?
        .len();
    if size > package::MAX_PACKAGE_BYTES {
        bail!(
            "{} is {size} bytes, over the {}-byte package limit",
            path.display(),
            package::MAX_PACKAGE_BYTES
        );
    }
    let bytes = std::fs::read(path)?;
    Package::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn key_path(home: &Home, name: &str) -> PathBuf {
    home.keys_dir().join(format!("{name}.key"))
}

/// `keel key generate --name NAME`: a new signing key in the home.
pub fn generate_key(home: &Home, name: &str) -> anyhow::Result<PublicKey> {
    if !valid_id(name) {
        bail!("key name `{name}` must be a-z, 0-9 and `-`, starting with a letter");
    }
    let path = key_path(home, name);
    if path.exists() {
        bail!(
            "a key named `{name}` already exists at {}; pick another name",
            path.display()
        );
    }
    std::fs::create_dir_all(home.keys_dir())?;
    let key = SecretKey::generate()?;
    let mut tmp = tempfile::NamedTempFile::new_in(home.keys_dir())?;
    std::io::Write::write_all(&mut tmp, key.to_hex().as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.persist_noclobber(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key.public())
}

/// The signing key `name` from the home.
pub fn load_key(home: &Home, name: &str) -> anyhow::Result<SecretKey> {
    let path = key_path(home, name);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no key named `{name}` in this home; make one with `keel key generate --name {name}`"
        )
    })?;
    SecretKey::from_hex(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The public keys of the home's signing keys, by name.
pub fn list_keys(home: &Home) -> anyhow::Result<Vec<(String, PublicKey)>> {
    let mut keys = Vec::new();
    let Ok(entries) = std::fs::read_dir(home.keys_dir()) else {
        return Ok(keys);
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".key"))
        else {
            continue;
        };
        keys.push((name.to_string(), load_key(home, name)?.public()));
    }
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(keys)
}

/// `keel plugin sign PACKAGE --key NAME`: signs the package in place.
pub fn sign(
    home: &Home,
    path: &Path,
    key_name: &str,
    signer: Option<&str>,
) -> anyhow::Result<(Digest, PublicKey)> {
    let key = load_key(home, key_name)?;
    let mut package = open(path)?;
    package.sign(&key, signer.unwrap_or(key_name));
    write_atomically(path, &package.to_bytes())?;
    Ok((package.digest(), key.public()))
}

/// Which plugins a trusted key may sign packages of.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum TrustScope {
    /// `--for ID,ID`: only these plugin ids.
    Plugins(Vec<String>),
    /// `--any`, or a key trusted before trust was scoped (`legacy`): any
    /// plugin id.
    Any { any: bool, legacy: bool },
}

impl TrustScope {
    /// `--any`.
    pub fn any() -> TrustScope {
        TrustScope::Any {
            any: true,
            legacy: false,
        }
    }

    /// Whether a package of plugin `id` may be signed under this scope.
    pub fn covers(&self, id: &str) -> bool {
        match self {
            TrustScope::Plugins(ids) => ids.iter().any(|i| i == id),
            TrustScope::Any { .. } => true,
        }
    }

    /// The `plugins` column: ids joined by commas, `*`, or NULL (legacy).
    fn column(&self) -> Option<String> {
        match self {
            TrustScope::Plugins(ids) => Some(ids.join(",")),
            TrustScope::Any { legacy: false, .. } => Some("*".into()),
            TrustScope::Any { legacy: true, .. } => None,
        }
    }

    fn from_column(column: Option<String>) -> TrustScope {
        match column.as_deref() {
            None => TrustScope::Any {
                any: true,
                legacy: true,
            },
            Some("*") => TrustScope::any(),
            Some(ids) => TrustScope::Plugins(ids.split(',').map(str::to_string).collect()),
        }
    }
}

impl std::fmt::Display for TrustScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrustScope::Plugins(ids) => write!(f, "for {}", ids.join(", ")),
            TrustScope::Any { legacy: false, .. } => f.write_str("for any plugin"),
            TrustScope::Any { legacy: true, .. } => {
                f.write_str("for any plugin (trusted before keys were scoped)")
            }
        }
    }
}

/// A public key the operator trusts, under the operator's name for it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Trusted {
    pub name: String,
    pub key: String,
    pub added_at: String,
    #[serde(rename = "for")]
    pub scope: TrustScope,
}

impl Trusted {
    /// How a signer is shown everywhere (install, list, lockfile, audit):
    /// the operator's name for the key, never the name a package gives
    /// itself.
    pub fn shown(&self) -> String {
        format!("{} ({})", self.name, self.key)
    }

    /// What to tell the operator when this key is trusted for any plugin
    /// only because it was trusted before keys were scoped.
    pub fn legacy_notice(&self) -> Option<String> {
        matches!(self.scope, TrustScope::Any { legacy: true, .. }).then(|| {
            format!(
                "note: key {} was trusted before keys were scoped to plugins, so it counts as trusted for any plugin; to narrow it, `keel trust remove {}` then `keel trust add {} --name {} --for ID,ID`",
                self.name, self.name, self.key, self.name
            )
        })
    }
}

/// The trusted keys, by name.
pub fn trusted(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<Trusted>> {
    conn.prepare("SELECT name, key, added_at, plugins FROM trusted_keys ORDER BY name")?
        .query_map([], |r| {
            Ok(Trusted {
                name: r.get(0)?,
                key: r.get(1)?,
                added_at: r.get(2)?,
                scope: TrustScope::from_column(r.get(3)?),
            })
        })?
        .collect()
}

/// `keel trust add KEY --name NAME (--for ID,ID | --any)`, audited as the
/// operator.
pub fn trust(db: &mut Store, key: &str, name: &str, scope: &TrustScope) -> anyhow::Result<()> {
    let key: PublicKey = key.parse()?;
    if !valid_id(name) {
        bail!("trust name `{name}` must be a-z, 0-9 and `-`, starting with a letter");
    }
    if let TrustScope::Plugins(ids) = scope {
        if ids.is_empty() {
            bail!("--for needs at least one plugin id, like `--for todo,files`; or pass --any");
        }
        if let Some(bad) = ids.iter().find(|i| !valid_id(i)) {
            bail!(
                "--for: `{bad}` is not a plugin id; ids are a-z, 0-9 and `-`, starting with a letter"
            );
        }
    }
    let key = key.to_string();
    let column = scope.column();
    db.write(&Actor::operator(), "trust.add", None, Ok(()), |tx| {
        let r = tx
            .execute(
                "INSERT INTO trusted_keys (name, key, added_at, plugins) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![name, key, now(), column],
            )
            .map(|_| ())
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    crate::error::CallError::Conflict(format!(
                        "the name `{name}` or the key {key} is already trusted; see `keel trust list`, and `keel trust remove NAME` first to trust it for other plugins"
                    ))
                }
                e => e.into(),
            });
        (r, Touched::detail(format!("{name} {key} {scope}")))
    })?;
    Ok(())
}

/// `keel trust remove NAME`, audited as the operator.
pub fn distrust(db: &mut Store, name: &str) -> anyhow::Result<()> {
    db.write(&Actor::operator(), "trust.remove", None, Ok(()), |tx| {
        let r = match tx.execute("DELETE FROM trusted_keys WHERE name = ?1", [name]) {
            Ok(1) => Ok(()),
            Ok(_) => Err(crate::error::CallError::NotFound(format!(
                "no trusted key is named `{name}`; see `keel trust list`"
            ))),
            Err(e) => Err(e.into()),
        };
        (r, Touched::detail(name))
    })?;
    Ok(())
}

/// A package unpacked for install, and what its signature says.
#[derive(Debug)]
pub struct Unpacked {
    /// Holds `keel.toml` and `component.wasm`; removed when dropped.
    pub dir: tempfile::TempDir,
    pub digest: Digest,
    pub signed: Signed,
}

/// Opens, verifies and unpacks a package file for install.
pub fn unpack(path: &Path) -> anyhow::Result<Unpacked> {
    let package = open(path)?;
    let signed = package
        .verify()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let dir = tempfile::Builder::new().prefix("keel-package-").tempdir()?;
    std::fs::write(dir.path().join(package::MANIFEST), &package.manifest)?;
    std::fs::write(dir.path().join(package::COMPONENT), &package.component)?;
    Ok(Unpacked {
        dir,
        digest: package.digest(),
        signed,
    })
}

/// A package fetched from a registry or URL into a temporary file, and
/// where it came from.
#[derive(Debug)]
pub struct Fetched {
    /// Holds the package file; removed when dropped.
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    /// The reference or URL as the operator wrote it.
    pub origin: String,
}

/// Whether `source` names a package elsewhere (`oci://`, `https://`,
/// `http://`) rather than a path.
pub fn is_remote(source: &str) -> bool {
    ["oci://", "https://", "http://"]
        .iter()
        .any(|p| source.starts_with(p))
}

/// Fetches the package `source` names when it is elsewhere; `None` for a
/// path. The package is checked as a file package is, after this.
pub fn fetch(source: &str) -> anyhow::Result<Option<Fetched>> {
    use keel_registry::remote;
    let fetched = if source.starts_with("oci://") {
        remote::pull(&remote::OciRef::parse(source)?)?
    } else if is_remote(source) {
        remote::download(source)?
    } else {
        return Ok(None);
    };
    let dir = tempfile::Builder::new().prefix("keel-fetch-").tempdir()?;
    let path = dir.path().join("fetched.keel");
    std::fs::write(&path, fetched.package.to_bytes())?;
    Ok(Some(Fetched {
        dir,
        path,
        origin: source.to_string(),
    }))
}

/// `keel plugin push PACKAGE oci://…`: the package's parts as an OCI
/// artifact. Returns the manifest digest and whether the package is signed.
pub fn push(path: &Path, reference: &str) -> anyhow::Result<(String, bool)> {
    use keel_registry::remote;
    let reference = remote::OciRef::parse(reference)?;
    let package = open(path)?;
    package
        .verify()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let manifest = Manifest::parse(&package.manifest, "keel.toml")
        .with_context(|| format!("{} holds a manifest keel cannot read", path.display()))?;
    let mut annotations = std::collections::BTreeMap::from([
        (
            "org.opencontainers.image.title".to_string(),
            manifest.plugin.id.clone(),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            manifest.plugin.version.clone(),
        ),
    ]);
    if !manifest.plugin.description.is_empty() {
        annotations.insert(
            "org.opencontainers.image.description".to_string(),
            manifest.plugin.description.clone(),
        );
    }
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let pushed = remote::push(&package, &reference, annotations, &created)?;
    Ok((pushed.manifest_digest, package.signature.is_some()))
}
