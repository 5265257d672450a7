//! The TLS client configuration every plugin connection is verified with:
//! the system's roots plus the operator's own CA (`HOME/ca.pem`, for a
//! server on the operator's network with a private certificate). There is
//! no way to skip verification.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The operator's CA file in the home.
pub const CA_FILE: &str = "ca.pem";

/// One home's client configuration, made on first use (loading the
/// system's roots takes a few milliseconds) and kept for its runs.
#[derive(Default)]
pub struct TlsCache(Mutex<Option<Arc<rustls::ClientConfig>>>);

impl TlsCache {
    /// The configuration for the home at `root`.
    pub fn get(&self, root: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let mut cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(config) = &*cached {
            return Ok(config.clone());
        }
        let config = Arc::new(client_config(root)?);
        *cached = Some(config.clone());
        Ok(config)
    }
}

/// Roots from the system and from `root/ca.pem`.
pub fn client_config(root: &Path) -> anyhow::Result<rustls::ClientConfig> {
    keel_registry::remote::install_crypto();
    let mut roots = rustls::RootCertStore::empty();
    // A system store that cannot be read leaves only the operator's CA: a
    // public server then fails verification, which says what is wrong.
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    let ca = root.join(CA_FILE);
    if ca.exists() {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ca)
            .and_then(|certs| certs.collect())
            .with_context(|| {
                format!(
                    "{} is not a PEM file of CA certificates; replace or remove it",
                    ca.display()
                )
            })?;
        if certs.is_empty() {
            anyhow::bail!(
                "{} holds no certificate; put the CA's PEM certificate there or remove the file",
                ca.display()
            );
        }
        for cert in certs {
            roots.add(cert).with_context(|| {
                format!("{} holds a certificate that is not a CA", ca.display())
            })?;
        }
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
