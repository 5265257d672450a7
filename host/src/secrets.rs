//! Secrets the operator gives keel, such as a model provider's API key
//! (`api_key_secret = "NAME"` in `models.toml`): `keel secret set NAME`
//! reads the value from standard input, never from the command line.
//!
//! A secret is sealed with XChaCha20-Poly1305 under a 256-bit key kept in
//! `HOME/secrets.key` (mode 0600, made at the first `set`), with its name as
//! associated data, so the store, its backups and the audit log never hold
//! it in the clear, and a sealed value moved to another name does not open.
//! `KEEL_SECRETS_KEY_FILE=PATH` keeps the key outside the home instead, so a
//! copy of the home alone (a backup, a shared folder) cannot unseal
//! anything. Webhook secrets are sealed under the same key ([`seal`],
//! [`open`]).
//! Setting and removing are audited as the operator, by name only. A plugin
//! reaches only the secrets bound to it: filled into an HTTP header by the
//! host (`net`), or read through the `secrets` interface ([`host`]) for a
//! protocol that sends a credential itself; each read is audited.

mod host;

/// Links the `secrets` interface, answered from the run's grant.
pub fn add_to_linker<T: 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> &mut crate::run::RunCtx,
) -> wasmtime::Result<()> {
    crate::bindings::secrets::add_to_linker::<T, crate::run::RunData>(linker, get)
}

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::error::CallError;
use crate::store::{Actor, Store, Touched, now};

/// The key file's name in the home.
pub const KEY_FILE: &str = "secrets.key";
/// The environment variable naming a key file outside the home.
pub const KEY_FILE_ENV: &str = "KEEL_SECRETS_KEY_FILE";
/// Longest secret value.
const MAX_VALUE: usize = 16 * 1024;
const NONCE: usize = 24;

/// A secret as `keel secret list` shows it: never the value.
#[derive(Debug, Clone, Serialize)]
pub struct SecretInfo {
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
}

/// Where the sealing key lives: `KEEL_SECRETS_KEY_FILE`, or
/// `HOME/secrets.key`.
pub fn key_path(home: &Path) -> PathBuf {
    match std::env::var_os(KEY_FILE_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => home.join(KEY_FILE),
    }
}

fn cipher(home: &Path, create: bool) -> anyhow::Result<XChaCha20Poly1305> {
    let path = key_path(home);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let mut staged = tempfile::NamedTempFile::new_in(dir).with_context(|| {
                format!(
                    "cannot create the secrets key in {}; make the folder or point {KEY_FILE_ENV} elsewhere",
                    dir.display()
                )
            })?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                staged
                    .as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            staged.write_all(&key)?;
            staged.as_file().sync_all()?;
            staged
                .persist_noclobber(&path)
                .map_err(|e| e.error)
                .with_context(|| format!("cannot write {}", path.display()))?;
            std::fs::read(&path)?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} is missing, so no secret can be opened; restore it (or set {KEY_FILE_ENV} to where it is), or set the secrets again",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if bytes.len() != 32 {
        bail!(
            "{} is not a 32-byte key; restore it from a backup, or remove it and set the secrets again",
            path.display()
        );
    }
    Ok(XChaCha20Poly1305::new(Key::from_slice(&bytes)))
}

/// Seals `value` under the home's key with `label` as associated data
/// (nonce first), making the key at first use.
pub fn seal(home: &Path, label: &str, value: &[u8]) -> anyhow::Result<Vec<u8>> {
    let cipher = cipher(home, true)?;
    let mut nonce = [0u8; NONCE];
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: value,
                aad: label.as_bytes(),
            },
        )
        .map_err(|_| anyhow::anyhow!("`{label}` could not be sealed"))?;
    let mut blob = nonce.to_vec();
    blob.extend(sealed);
    Ok(blob)
}

/// Opens what [`seal`] made under the same `label`.
pub fn open(home: &Path, label: &str, blob: &[u8]) -> anyhow::Result<Vec<u8>> {
    if blob.len() <= NONCE {
        bail!("`{label}` is damaged; set it again");
    }
    let (nonce, sealed) = blob.split_at(NONCE);
    cipher(home, false)?
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: label.as_bytes(),
            },
        )
        .map_err(|_| {
            anyhow::anyhow!(
                "`{label}` does not open with {}; it was sealed under another key: set it again",
                key_path(home).display()
            )
        })
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if !crate::manifest::valid_secret_name(name) {
        bail!(
            "secret name `{name}` must be letters, digits, `-` and `_`, starting with a letter (at most 64)"
        );
    }
    Ok(())
}

/// Seals `value` under `name`, replacing an earlier one; audited.
pub fn set(home: &Path, db: &mut Store, name: &str, value: &str) -> anyhow::Result<()> {
    check_name(name)?;
    let value = value.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        bail!("the secret `{name}` is empty; give its value on standard input");
    }
    if value.len() > MAX_VALUE {
        bail!("the secret `{name}` is over {MAX_VALUE} bytes");
    }
    let blob = seal(home, name, value.as_bytes())?;
    db.write(&Actor::operator(), "secret.set", None, Ok(()), |tx| {
        let at = now();
        let r = tx
            .execute(
                "INSERT INTO secrets (name, sealed, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT(name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
                params![name, blob, at],
            )
            .map(|_| ())
            .map_err(CallError::from);
        (r, Touched::detail(name.to_string()))
    })?;
    Ok(())
}

/// Removes a secret; audited.
pub fn remove(db: &mut Store, name: &str) -> anyhow::Result<()> {
    db.write(&Actor::operator(), "secret.remove", None, Ok(()), |tx| {
        let r = match tx.execute("DELETE FROM secrets WHERE name = ?1", [name]) {
            Ok(0) => Err(CallError::NotFound(format!(
                "there is no secret `{name}`; see `keel secret list`"
            ))),
            Ok(_) => Ok(()),
            Err(e) => Err(e.into()),
        };
        (r, Touched::detail(name.to_string()))
    })?;
    Ok(())
}

/// The secrets' names and dates.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<SecretInfo>> {
    let mut stmt =
        conn.prepare("SELECT name, created_at, updated_at FROM secrets ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        Ok(SecretInfo {
            name: r.get(0)?,
            created_at: r.get(1)?,
            updated_at: r.get(2)?,
        })
    })?;
    rows.collect()
}

/// The value of secret `name`.
pub fn reveal(home: &Path, conn: &Connection, name: &str) -> anyhow::Result<String> {
    let blob: Option<Vec<u8>> = conn
        .query_row("SELECT sealed FROM secrets WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(blob) = blob else {
        bail!(
            "there is no secret `{name}`; set it with `keel secret set {name}` (the value on standard input)"
        );
    };
    let value = open(home, name, &blob)?;
    String::from_utf8(value).context("a secret is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_opens_only_under_its_name_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let home = crate::home::Home::init(dir.path()).unwrap();
        let mut db = home.store().unwrap();
        set(home.root(), &mut db, "lab-key", "sk-123\n").unwrap();
        assert_eq!(reveal(home.root(), db.conn(), "lab-key").unwrap(), "sk-123");
        // Not in the clear anywhere in the database file.
        drop(db);
        let raw = std::fs::read(home.root().join("keel.db")).unwrap_or_default();
        assert!(!raw.windows(6).any(|w| w == b"sk-123"));
        let mut db = home.store().unwrap();
        // Moved to another name, it does not open.
        db.conn()
            .execute(
                "INSERT INTO secrets (name, sealed, created_at, updated_at)
                 SELECT 'other', sealed, created_at, updated_at FROM secrets WHERE name = 'lab-key'",
                [],
            )
            .unwrap();
        let e = reveal(home.root(), db.conn(), "other").unwrap_err();
        assert!(e.to_string().contains("does not open"), "{e}");
        // Replaced, listed by name only, removed.
        set(home.root(), &mut db, "lab-key", "sk-456").unwrap();
        assert_eq!(reveal(home.root(), db.conn(), "lab-key").unwrap(), "sk-456");
        let names: Vec<String> = list(db.conn())
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["lab-key", "other"]);
        remove(&mut db, "lab-key").unwrap();
        let e = reveal(home.root(), db.conn(), "lab-key").unwrap_err();
        assert!(e.to_string().contains("keel secret set lab-key"), "{e}");
        assert!(remove(&mut db, "lab-key").is_err());
        assert!(set(home.root(), &mut db, "bad name", "x").is_err());
        assert!(set(home.root(), &mut db, "empty", "\n").is_err());
        // Without the key file nothing opens.
        std::fs::remove_file(home.root().join(KEY_FILE)).unwrap();
        let e = reveal(home.root(), db.conn(), "other").unwrap_err();
        assert!(e.to_string().contains("is missing"), "{e}");
    }
}
