//! The plugin package: one file, `NAME-VERSION.keel`, an uncompressed tar
//! holding `keel.toml`, `component.wasm`, an optional `README.md` and, once
//! signed, `signature.json`.
//!
//! The package digest is sha256 over a canonical encoding of the contents
//! (each file's name, length and bytes in a fixed order), not over the tar
//! bytes, so the same contents always give the same digest and signing
//! (which adds `signature.json`) does not change it. Reading is strict:
//! only those four names, regular files, no paths, no duplicates, each
//! within its size limit.

use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Digest;
use crate::keys::{PublicKey, SecretKey};

/// The manifest's name in a package.
pub const MANIFEST: &str = "keel.toml";
/// The component's name in a package.
pub const COMPONENT: &str = "component.wasm";
/// The optional readme's name in a package.
pub const README: &str = "README.md";
/// The signature's name in a package.
pub const SIGNATURE: &str = "signature.json";

/// Largest manifest.
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024;
/// Largest component (as keel installs).
pub const MAX_COMPONENT_BYTES: u64 = 256 * 1024 * 1024;
/// Largest readme.
pub const MAX_README_BYTES: u64 = 1024 * 1024;
/// Largest signature file.
pub const MAX_SIGNATURE_BYTES: u64 = 4 * 1024;
/// Largest package file: its parts plus tar headers.
pub const MAX_PACKAGE_BYTES: u64 =
    MAX_MANIFEST_BYTES + MAX_COMPONENT_BYTES + MAX_README_BYTES + MAX_SIGNATURE_BYTES + 64 * 1024;

/// What is signed: a fixed prefix, the package digest and the manifest.
fn signed_message(digest: &Digest, manifest: &str) -> Vec<u8> {
    let mut m = b"keel-package-signature-v1\0".to_vec();
    m.extend_from_slice(digest.to_string().as_bytes());
    m.push(0);
    m.extend_from_slice(manifest.as_bytes());
    m
}

/// `signature.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub format: String,
    /// `ed25519:` and the hex public key.
    pub key: String,
    /// Who signed, in the signer's words.
    pub signer: String,
    /// Hex of the 64-byte signature.
    pub signature: String,
}

const SIGNATURE_FORMAT: &str = "keel-signature-v1";

/// A plugin package in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Package {
    pub manifest: String,
    pub component: Vec<u8>,
    pub readme: Option<String>,
    pub signature: Option<Signature>,
}

/// Why a package cannot be read or trusted. Each says what is wrong.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PackageError {
    #[error(
        "the file is not a keel package (a damaged or foreign archive: {0}); make one with `keel plugin pack`"
    )]
    Corrupt(String),
    #[error("the package has an entry `{0}` with a path; packages hold only plain file names")]
    UnsafePath(String),
    #[error(
        "the package has an unexpected entry `{0}`; packages hold only keel.toml, component.wasm, README.md and signature.json"
    )]
    Unexpected(String),
    #[error("the package holds `{0}` twice")]
    Duplicate(String),
    #[error("the package has no `{0}`")]
    Missing(&'static str),
    #[error("`{what}` is over its {limit}-byte limit")]
    TooLarge { what: String, limit: u64 },
    #[error("`{0}` is not UTF-8 text")]
    NotText(&'static str),
    #[error("the signature is malformed: {0}")]
    BadSignatureFile(String),
    #[error(
        "the signature by {key} does not match the package's contents (it was made over other bytes, or the package was changed after signing)"
    )]
    SignatureMismatch { key: String },
}

/// The size limit of a part of a package, by its name; `None` for a name
/// a package may not hold.
pub fn limit_of(name: &str) -> Option<u64> {
    match name {
        MANIFEST => Some(MAX_MANIFEST_BYTES),
        COMPONENT => Some(MAX_COMPONENT_BYTES),
        README => Some(MAX_README_BYTES),
        SIGNATURE => Some(MAX_SIGNATURE_BYTES),
        _ => None,
    }
}

/// The canonical digest of a package's contents: each part's name, length
/// and bytes in a fixed order.
pub fn digest_of(manifest: &str, component: &[u8], readme: Option<&str>) -> Digest {
    let mut h = Sha256::new();
    h.update(b"keel-package-v1\0");
    let mut part = |name: &str, bytes: &[u8]| {
        h.update(name.as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    part(MANIFEST, manifest.as_bytes());
    part(COMPONENT, component);
    if let Some(readme) = readme {
        part(README, readme.as_bytes());
    }
    Digest(h.finalize().into())
}

/// The outcome of checking a package's signature.
#[derive(Debug, Clone, PartialEq)]
pub enum Signed {
    /// No `signature.json`.
    Unsigned,
    /// A valid signature by `key`, who calls themself `signer`.
    By { key: Box<PublicKey>, signer: String },
}

impl Package {
    /// The canonical digest of the contents (the signature excluded).
    pub fn digest(&self) -> Digest {
        digest_of(&self.manifest, &self.component, self.readme.as_deref())
    }

    /// Signs the package as `signer` with `key` (replacing any signature).
    pub fn sign(&mut self, key: &SecretKey, signer: &str) {
        let message = signed_message(&self.digest(), &self.manifest);
        self.signature = Some(Signature {
            format: SIGNATURE_FORMAT.into(),
            key: key.public().to_string(),
            signer: signer.into(),
            signature: hex::encode(key.sign(&message)),
        });
    }

    /// Checks the signature, if there is one, against the contents.
    pub fn verify(&self) -> Result<Signed, PackageError> {
        let Some(sig) = &self.signature else {
            return Ok(Signed::Unsigned);
        };
        if sig.format != SIGNATURE_FORMAT {
            return Err(PackageError::BadSignatureFile(format!(
                "unknown format `{}`",
                sig.format
            )));
        }
        let key: PublicKey = sig
            .key
            .parse()
            .map_err(|e: crate::keys::KeyError| PackageError::BadSignatureFile(e.to_string()))?;
        let bytes = hex::decode(&sig.signature)
            .map_err(|_| PackageError::BadSignatureFile("the signature is not hex".into()))?;
        if key.verifies(&signed_message(&self.digest(), &self.manifest), &bytes) {
            Ok(Signed::By {
                key: Box::new(key),
                signer: sig.signer.clone(),
            })
        } else {
            Err(PackageError::SignatureMismatch {
                key: sig.key.clone(),
            })
        }
    }

    /// The package file's bytes: a tar with fixed metadata and order, so the
    /// same package always gives the same bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut header = tar::Header::new_ustar();
            // Fixed names and sizes within limits: these cannot fail.
            let _ = header.set_path(name);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            let _ = builder.append(&header, data);
        };
        add(MANIFEST, self.manifest.as_bytes());
        add(COMPONENT, &self.component);
        if let Some(readme) = &self.readme {
            add(README, readme.as_bytes());
        }
        if let Some(sig) = &self.signature {
            let json = serde_json::to_vec_pretty(sig).unwrap_or_default();
            add(SIGNATURE, &json);
        }
        builder.into_inner().unwrap_or_default()
    }

    /// Reads a package file's bytes, strictly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Package, PackageError> {
        if bytes.len() as u64 > MAX_PACKAGE_BYTES {
            return Err(PackageError::TooLarge {
                what: "the package".into(),
                limit: MAX_PACKAGE_BYTES,
            });
        }
        let corrupt = |e: std::io::Error| PackageError::Corrupt(e.to_string());
        let mut archive = tar::Archive::new(bytes);
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for entry in archive.entries().map_err(corrupt)? {
            let mut entry = entry.map_err(corrupt)?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if raw.contains('/') || raw.contains('\\') || raw == ".." || raw == "." {
                return Err(PackageError::UnsafePath(raw));
            }
            let Some(limit) = limit_of(&raw) else {
                return Err(PackageError::Unexpected(raw));
            };
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(PackageError::Unexpected(raw));
            }
            if files.iter().any(|(n, _)| *n == raw) {
                return Err(PackageError::Duplicate(raw));
            }
            if entry.size() > limit {
                return Err(PackageError::TooLarge { what: raw, limit });
            }
            let mut data = Vec::new();
            (&mut entry)
                .take(limit + 1)
                .read_to_end(&mut data)
                .map_err(corrupt)?;
            if data.len() as u64 != entry.size() {
                return Err(PackageError::Corrupt(format!("`{raw}` is cut short")));
            }
            files.push((raw, data));
        }
        Package::from_files(files)
    }

    /// A package from its parts by name (each name one of the four, at
    /// most once, within its limit), as a tar or a registry holds them.
    pub fn from_files(mut files: Vec<(String, Vec<u8>)>) -> Result<Package, PackageError> {
        for (i, (name, data)) in files.iter().enumerate() {
            let Some(limit) = limit_of(name) else {
                return Err(PackageError::Unexpected(name.clone()));
            };
            if files[..i].iter().any(|(n, _)| n == name) {
                return Err(PackageError::Duplicate(name.clone()));
            }
            if data.len() as u64 > limit {
                return Err(PackageError::TooLarge {
                    what: name.clone(),
                    limit,
                });
            }
        }
        let mut take = |name: &str| {
            files
                .iter()
                .position(|(n, _)| n == name)
                .map(|i| files.swap_remove(i).1)
        };
        let text = |bytes: Vec<u8>, what: &'static str| {
            String::from_utf8(bytes).map_err(|_| PackageError::NotText(what))
        };
        let manifest = text(
            take(MANIFEST).ok_or(PackageError::Missing(MANIFEST))?,
            MANIFEST,
        )?;
        let component = take(COMPONENT).ok_or(PackageError::Missing(COMPONENT))?;
        let readme = take(README).map(|b| text(b, README)).transpose()?;
        let signature = match take(SIGNATURE) {
            None => None,
            Some(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| PackageError::BadSignatureFile(e.to_string()))?,
            ),
        };
        Ok(Package {
            manifest,
            component,
            readme,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Package {
        Package {
            manifest: "[plugin]\nid = \"x\"\n".into(),
            component: b"\0asm fake".to_vec(),
            readme: Some("# x\n".into()),
            signature: None,
        }
    }

    #[test]
    fn the_same_contents_give_the_same_bytes_and_digest_signed_or_not() {
        let p = sample();
        assert_eq!(p.to_bytes(), sample().to_bytes());
        let read = Package::from_bytes(&p.to_bytes()).unwrap();
        assert_eq!(read, p);
        let mut signed = p.clone();
        let key = SecretKey::generate().unwrap();
        signed.sign(&key, "me");
        assert_eq!(signed.digest(), p.digest());
        let back = Package::from_bytes(&signed.to_bytes()).unwrap();
        assert_eq!(
            back.verify().unwrap(),
            Signed::By {
                key: Box::new(key.public()),
                signer: "me".into()
            }
        );
        assert_eq!(p.verify().unwrap(), Signed::Unsigned);
        let mut other = p.clone();
        other.component.push(0);
        assert_ne!(other.digest(), p.digest());
    }

    #[test]
    fn a_signature_over_other_contents_is_refused() {
        let key = SecretKey::generate().unwrap();
        let mut p = sample();
        p.sign(&key, "me");
        p.component.push(1);
        assert!(matches!(
            p.verify(),
            Err(PackageError::SignatureMismatch { .. })
        ));
        let mut q = sample();
        q.sign(&key, "me");
        q.manifest.push('\n');
        assert!(matches!(
            q.verify(),
            Err(PackageError::SignatureMismatch { .. })
        ));
    }

    /// A tar with one entry named `name` written straight into the header,
    /// as a hostile packer would.
    fn raw_tar(name: &[u8], data: &[u8]) -> Vec<u8> {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        let mut out = header.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
        out
    }

    #[test]
    fn hostile_archives_are_refused() {
        for name in [
            &b"../keel.toml"[..],
            b"/etc/keel.toml",
            b"a/keel.toml",
            b"..",
        ] {
            let err = Package::from_bytes(&raw_tar(name, b"x")).unwrap_err();
            assert!(matches!(err, PackageError::UnsafePath(_)), "{err:?}");
        }
        let err = Package::from_bytes(&raw_tar(b"evil.sh", b"x")).unwrap_err();
        assert_eq!(err, PackageError::Unexpected("evil.sh".into()));
        let err = Package::from_bytes(&raw_tar(MANIFEST.as_bytes(), b"x")).unwrap_err();
        assert_eq!(err, PackageError::Missing(COMPONENT));
        let err = Package::from_bytes(b"not a tar at all, just some bytes that go on").unwrap_err();
        assert!(
            matches!(err, PackageError::Corrupt(_) | PackageError::Missing(_)),
            "{err:?}"
        );
        let mut bytes = sample().to_bytes();
        bytes.truncate(700);
        let err = Package::from_bytes(&bytes).unwrap_err();
        assert!(
            matches!(err, PackageError::Corrupt(_) | PackageError::Missing(_)),
            "{err:?}"
        );
    }
}
