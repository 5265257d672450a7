//! Packages from elsewhere: an OCI registry (`oci://HOST[:PORT]/REPO:TAG`
//! or `@sha256:…`) and `https://` downloads.
//!
//! A plugin in a registry follows the Wasm component artifact layout: the
//! config has media type `application/vnd.wasm.config.v0+json` (`os`
//! `wasip2`, the layers' digests, the component's imports and exports) and
//! the component is an `application/wasm` layer, so Wasm tooling sees a
//! component. The other parts of the package (`keel.toml`, `README.md`,
//! `signature.json`) are further layers, each named by its
//! `org.opencontainers.image.title` annotation as ORAS names files. A pull
//! reassembles the package from the layers; its digest and signature are
//! the package's own, so the registry is trusted with nothing.
//!
//! Plain HTTP is used only for a registry or URL on this machine
//! (`127.0.0.1`, `localhost`, `[::1]`). Credentials for a registry come from
//! `KEEL_REGISTRY_USERNAME` and `KEEL_REGISTRY_PASSWORD`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};

use crate::package::{self, Package, PackageError};

/// The media type of a Wasm artifact's config.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The media type of a Wasm component layer.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The media type of the `keel.toml` layer.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.keel.manifest.v1+toml";
/// The media type of the `signature.json` layer.
pub const SIGNATURE_MEDIA_TYPE: &str = "application/vnd.keel.signature.v1+json";
/// The media type of the `README.md` layer.
pub const README_MEDIA_TYPE: &str = "text/markdown";
/// The annotation naming a layer's file.
pub const TITLE: &str = "org.opencontainers.image.title";
/// The manifest annotation carrying the package digest.
pub const PACKAGE_DIGEST: &str = "io.keel.package.digest";

/// Largest OCI manifest or config accepted.
const MAX_METADATA_BYTES: usize = 256 * 1024;

/// Why a package could not be fetched or pushed. Each says what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "`{0}` is not an OCI reference; write oci://HOST[:PORT]/REPO:TAG or oci://HOST[:PORT]/REPO@sha256:DIGEST"
    )]
    BadReference(String),
    #[error("`{0}` is not an https:// URL of a package")]
    BadUrl(String),
    #[error(
        "{0} uses plain HTTP to another machine; use https:// (plain HTTP reaches only this machine)"
    )]
    PlainHttp(String),
    #[error(
        "{0} does not exist in the registry (no such repository, tag or digest); check the reference"
    )]
    NotFound(String),
    #[error("cannot reach {0}: {1}")]
    Unreachable(String, String),
    #[error("the registry at {0} refused: {1}")]
    Refused(String, String),
    #[error("{0} answered {1}")]
    Status(String, String),
    #[error(
        "the download of {what} from {from} broke off after {got} of {expected} bytes; nothing was installed, try again"
    )]
    Interrupted {
        what: String,
        from: String,
        got: u64,
        expected: u64,
    },
    #[error("{what} from {from} has digest {got}, not the {expected} it was announced with")]
    DigestMismatch {
        what: String,
        from: String,
        got: String,
        expected: String,
    },
    #[error(
        "{0} is not a keel plugin ({1}); plugins are pushed with `keel plugin push PACKAGE oci://…`"
    )]
    NotKeel(String, String),
    #[error("{from}: {what} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        from: String,
        what: String,
        size: u64,
        limit: u64,
    },
    #[error("{0}: {1}")]
    Package(String, PackageError),
    #[error(
        "{0} redirects to {1}, which is not https://; nothing was installed (ask whoever serves it to redirect to https://, or install from the final https:// URL)"
    )]
    InsecureRedirect(String, String),
}

/// Most redirects a download follows.
const MAX_REDIRECTS: usize = 5;

/// Whether a download that started at `from` may follow a redirect to
/// `to`. An https:// download stays on https://: the signature still
/// protects the contents, but a plain-HTTP hop would show what is installed
/// to the network and let it answer for the server. A plain-HTTP download
/// (allowed only on this machine) may also stay on this machine.
pub fn redirect_allowed(from: &str, to: &reqwest::Url) -> bool {
    match to.scheme() {
        "https" => true,
        "http" => {
            from.starts_with("http://")
                && to
                    .host_str()
                    .is_some_and(|h| is_loopback(h.trim_start_matches('[').trim_end_matches(']')))
        }
        _ => false,
    }
}

/// A parsed `oci://` reference.
#[derive(Debug, Clone)]
pub struct OciRef {
    text: String,
    reference: Reference,
}

impl OciRef {
    /// Parses `oci://HOST[:PORT]/REPO:TAG` or `…/REPO@sha256:DIGEST`.
    pub fn parse(text: &str) -> Result<OciRef, RemoteError> {
        let bad = || RemoteError::BadReference(text.into());
        let rest = text.strip_prefix("oci://").ok_or_else(bad)?;
        let (host, path) = rest.split_once('/').ok_or_else(bad)?;
        if host.is_empty() || path.is_empty() {
            return Err(bad());
        }
        // Without a tag or digest a reference would silently mean `latest`.
        let last = path.rsplit('/').next().unwrap_or(path);
        if !last.contains(':') && !last.contains('@') {
            return Err(bad());
        }
        let reference: Reference = rest.parse().map_err(|_| bad())?;
        // A host without a dot or port would be taken for a Docker Hub
        // namespace: the host must be the one written.
        if reference.registry() != host {
            return Err(bad());
        }
        Ok(OciRef {
            text: text.into(),
            reference,
        })
    }

    /// The registry host and port.
    pub fn registry(&self) -> &str {
        self.reference.registry()
    }

    /// The reference as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for OciRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Whether `host` (with or without a port) is this machine, where plain
/// HTTP is allowed.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    matches!(name, "127.0.0.1" | "localhost" | "::1")
}

fn runtime() -> tokio::runtime::Runtime {
    // A current-thread runtime cannot fail to build short of the OS
    // refusing a timer or I/O driver, which nothing else would survive.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start the I/O runtime")
}

pub fn install_crypto() {
    // Only the first call installs; later ones find it in place.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn client_for(registry: &str) -> Client {
    install_crypto();
    let protocol = if is_loopback(registry) {
        ClientProtocol::HttpsExcept(vec![registry.to_string()])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(60)),
        platform_resolver: None,
        ..ClientConfig::default()
    })
}

fn auth() -> RegistryAuth {
    match (
        std::env::var("KEEL_REGISTRY_USERNAME"),
        std::env::var("KEEL_REGISTRY_PASSWORD"),
    ) {
        (Ok(user), Ok(password)) => RegistryAuth::Basic(user, password),
        _ => RegistryAuth::Anonymous,
    }
}

/// The innermost cause of an error: what actually went wrong ("Connection
/// refused", "invalid peer certificate: UnknownIssuer"), without the layers
/// of request wrapping around it.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// Turns a registry client error into one sentence.
fn oci_error(r: &OciRef, e: OciDistributionError) -> RemoteError {
    use OciDistributionError as E;
    let registry = r.registry().to_string();
    match e {
        E::ImageManifestNotFoundError(_) => RemoteError::NotFound(r.to_string()),
        E::RegistryError { envelope, .. } => {
            use oci_client::errors::OciErrorCode as C;
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    C::ManifestUnknown | C::NameUnknown | C::BlobUnknown | C::NotFound
                )
            }) {
                return RemoteError::NotFound(r.to_string());
            }
            let detail: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| format!("{} ({:?})", e.message, e.code))
                .collect();
            RemoteError::Refused(registry, detail.join("; "))
        }
        E::ServerError { code: 404, .. } => RemoteError::NotFound(r.to_string()),
        E::ServerError { code, message, .. } => {
            RemoteError::Refused(registry, format!("HTTP {code} {message}"))
        }
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => RemoteError::Refused(
            registry,
            "not authorized; set KEEL_REGISTRY_USERNAME and KEEL_REGISTRY_PASSWORD".into(),
        ),
        E::RequestError(e) => {
            RemoteError::Unreachable(format!("the registry at {registry}"), root_cause(&e))
        }
        other => RemoteError::Refused(registry, other.to_string()),
    }
}

/// What a push left in the registry.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The reference pushed to.
    pub reference: String,
    /// The OCI manifest's digest, for `oci://…@sha256:…`.
    pub manifest_digest: String,
}

/// The component's own import and export names, types left out (not those
/// of the modules and components inside it), for the artifact's config.
pub fn component_names(bytes: &[u8]) -> (Vec<String>, Vec<String>) {
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { break };
        match payload {
            wasmparser::Payload::ModuleSection { .. }
            | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(reader) if depth == 0 => {
                imports.extend(
                    reader
                        .into_iter()
                        .flatten()
                        .filter(|i| !matches!(i.ty, wasmparser::ComponentTypeRef::Type(_)))
                        .map(|i| i.name.name.to_string()),
                );
            }
            wasmparser::Payload::ComponentExportSection(reader) if depth == 0 => {
                exports.extend(
                    reader
                        .into_iter()
                        .flatten()
                        .filter(|e| e.kind != wasmparser::ComponentExternalKind::Type)
                        .map(|e| e.name.name.to_string()),
                );
            }
            _ => {}
        }
    }
    (imports, exports)
}

fn titled(bytes: Vec<u8>, media_type: &str, title: &str) -> ImageLayer {
    ImageLayer::new(
        bytes,
        media_type.into(),
        Some(BTreeMap::from([(TITLE.to_string(), title.to_string())])),
    )
}

/// Pushes `package` to `reference`, with `annotations` on the manifest
/// (the plugin's id, version and description) and `created` (RFC 3339) in
/// the config.
pub fn push(
    package: &Package,
    reference: &OciRef,
    annotations: BTreeMap<String, String>,
    created: &str,
) -> Result<Pushed, RemoteError> {
    let mut layers = vec![
        titled(
            package.component.clone(),
            WASM_LAYER_MEDIA_TYPE,
            package::COMPONENT,
        ),
        titled(
            package.manifest.clone().into_bytes(),
            MANIFEST_MEDIA_TYPE,
            package::MANIFEST,
        ),
    ];
    if let Some(readme) = &package.readme {
        layers.push(titled(
            readme.clone().into_bytes(),
            README_MEDIA_TYPE,
            package::README,
        ));
    }
    if let Some(sig) = &package.signature {
        let json = serde_json::to_vec_pretty(sig).unwrap_or_default();
        layers.push(titled(json, SIGNATURE_MEDIA_TYPE, package::SIGNATURE));
    }
    let (imports, exports) = component_names(&package.component);
    let config = serde_json::json!({
        "created": created,
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": layers.iter().map(|l| format!("sha256:{}", hex::encode(Sha256::digest(&l.data)))).collect::<Vec<_>>(),
        "component": { "imports": imports, "exports": exports },
    });
    let config = Config::new(
        serde_json::to_vec(&config).unwrap_or_default(),
        WASM_CONFIG_MEDIA_TYPE.into(),
        None,
    );
    let mut annotations = annotations;
    annotations.insert(PACKAGE_DIGEST.into(), package.digest().to_string());
    let manifest = OciImageManifest::build(&layers, &config, Some(annotations));
    let client = client_for(reference.registry());
    let auth = auth();
    runtime().block_on(async {
        client
            .push(&reference.reference, &layers, config, &auth, Some(manifest))
            .await
            .map_err(|e| oci_error(reference, e))?;
        let manifest_digest = client
            .fetch_manifest_digest(&reference.reference, &auth)
            .await
            .map_err(|e| oci_error(reference, e))?;
        Ok(Pushed {
            reference: reference.to_string(),
            manifest_digest,
        })
    })
}

/// A package fetched from elsewhere.
#[derive(Debug)]
pub struct Fetched {
    pub package: Package,
    /// The OCI manifest digest, for a registry.
    pub manifest_digest: Option<String>,
}

/// Reads a stream into memory, at most `limit` bytes, with a progress bar
/// on a terminal, checking the announced length and digest.
async fn collect<S>(
    mut stream: S,
    what: &str,
    from: &str,
    expected_len: Option<u64>,
    expected_digest: Option<&str>,
    limit: u64,
) -> Result<Vec<u8>, RemoteError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Unpin,
{
    let bar = indicatif::ProgressBar::with_draw_target(
        expected_len,
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    let mut out = Vec::new();
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(_) => {
                bar.abandon();
                return Err(RemoteError::Interrupted {
                    what: what.into(),
                    from: from.into(),
                    got: out.len() as u64,
                    expected: expected_len.unwrap_or(0),
                });
            }
        };
        if (out.len() + chunk.len()) as u64 > limit {
            bar.abandon();
            return Err(RemoteError::TooLarge {
                from: from.into(),
                what: what.into(),
                size: (out.len() + chunk.len()) as u64,
                limit,
            });
        }
        hasher.update(&chunk);
        out.extend_from_slice(&chunk);
        bar.set_position(out.len() as u64);
    }
    bar.finish_and_clear();
    if let Some(expected) = expected_len
        && out.len() as u64 != expected
    {
        return Err(RemoteError::Interrupted {
            what: what.into(),
            from: from.into(),
            got: out.len() as u64,
            expected,
        });
    }
    if let Some(expected) = expected_digest {
        let got = format!("sha256:{}", hex::encode(hasher.finalize()));
        if got != expected {
            return Err(RemoteError::DigestMismatch {
                what: what.into(),
                from: from.into(),
                got,
                expected: expected.into(),
            });
        }
    }
    Ok(out)
}

fn title_of(layer: &OciDescriptor) -> Option<&str> {
    layer
        .annotations
        .as_ref()
        .and_then(|a| a.get(TITLE))
        .map(String::as_str)
}

/// The manifest media types a pull accepts.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Pulls the image manifest at `reference`, reading at most
/// [`MAX_METADATA_BYTES`] of it (the registry client would read a body of
/// any size into memory), and checks it against a pinned digest. Returns
/// the manifest and its digest.
async fn pull_manifest(
    client: &Client,
    reference: &OciRef,
    auth: &RegistryAuth,
) -> Result<(OciImageManifest, String), RemoteError> {
    let from = reference.to_string();
    let image = &reference.reference;
    // The client negotiates the registry's token (and keeps it for the
    // blobs); the manifest itself is read here, bounded.
    let token = client
        .auth(image, auth, oci_client::RegistryOperation::Pull)
        .await
        .map_err(|e| oci_error(reference, e))?;
    let registry = reference.registry();
    let scheme = if is_loopback(registry) {
        "http"
    } else {
        "https"
    };
    let Some(wanted) = image.digest().or(image.tag()) else {
        return Err(RemoteError::BadReference(from));
    };
    let url = format!(
        "{scheme}://{}/v2/{}/manifests/{wanted}",
        image.resolve_registry(),
        image.repository()
    );
    install_crypto();
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| {
            RemoteError::Unreachable(format!("the registry at {registry}"), e.to_string())
        })?;
    let mut request = http
        .get(&url)
        .header(reqwest::header::ACCEPT, MANIFEST_TYPES);
    request = match (token, auth) {
        (Some(token), _) => request.bearer_auth(token),
        (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
        (None, _) => request,
    };
    let response = request.send().await.map_err(|e| {
        RemoteError::Unreachable(format!("the registry at {registry}"), root_cause(&e))
    })?;
    let status = response.status();
    match status.as_u16() {
        200..=299 => {}
        404 => return Err(RemoteError::NotFound(from)),
        401 | 403 => {
            return Err(RemoteError::Refused(
                registry.into(),
                "not authorized; set KEEL_REGISTRY_USERNAME and KEEL_REGISTRY_PASSWORD".into(),
            ));
        }
        _ => return Err(RemoteError::Status(url, status.to_string())),
    }
    let limit = MAX_METADATA_BYTES as u64;
    let len = response.content_length();
    if let Some(len) = len.filter(|l| *l > limit) {
        return Err(RemoteError::TooLarge {
            from,
            what: "the manifest".into(),
            size: len,
            limit,
        });
    }
    let stream = response
        .bytes_stream()
        .map(|r| r.map_err(std::io::Error::other));
    let body = collect(
        Box::pin(stream),
        "the manifest",
        &from,
        len,
        image.digest(),
        limit,
    )
    .await?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
    let manifest: OciImageManifest = serde_json::from_slice(&body)
        .map_err(|e| RemoteError::NotKeel(from, format!("its manifest does not parse: {e}")))?;
    Ok((manifest, digest))
}

/// Pulls the package at `reference`.
pub fn pull(reference: &OciRef) -> Result<Fetched, RemoteError> {
    let client = client_for(reference.registry());
    let auth = auth();
    let from = reference.to_string();
    runtime().block_on(async {
        let (manifest, manifest_digest) = pull_manifest(&client, reference, &auth).await?;
        if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
            return Err(RemoteError::NotKeel(
                from,
                format!("its config is {}", manifest.config.media_type),
            ));
        }
        if manifest.config.size < 0 || manifest.config.size as usize > MAX_METADATA_BYTES {
            return Err(RemoteError::TooLarge {
                from,
                what: "the config".into(),
                size: manifest.config.size.max(0) as u64,
                limit: MAX_METADATA_BYTES as u64,
            });
        }
        // Every layer is a part of the package, named by its title; sizes
        // are checked before anything is downloaded.
        let mut total = 0u64;
        for layer in &manifest.layers {
            let Some(title) = title_of(layer) else {
                return Err(RemoteError::NotKeel(
                    from,
                    format!("a layer {} has no file name", layer.digest),
                ));
            };
            let Some(limit) = package::limit_of(title) else {
                return Err(RemoteError::Package(
                    from,
                    PackageError::Unexpected(title.into()),
                ));
            };
            let size = layer.size.max(0) as u64;
            if layer.size < 0 || size > limit {
                return Err(RemoteError::TooLarge {
                    from,
                    what: title.into(),
                    size,
                    limit,
                });
            }
            total += size;
        }
        if total > package::MAX_PACKAGE_BYTES {
            return Err(RemoteError::TooLarge {
                from,
                what: "the package".into(),
                size: total,
                limit: package::MAX_PACKAGE_BYTES,
            });
        }
        let mut files = Vec::new();
        for layer in &manifest.layers {
            let title = title_of(layer).unwrap_or_default().to_string();
            let stream = client
                .pull_blob_stream(&reference.reference, layer)
                .await
                .map_err(|e| oci_error(reference, e))?;
            let bytes = collect(
                stream,
                &title,
                &from,
                Some(layer.size as u64),
                Some(&layer.digest),
                layer.size as u64,
            )
            .await?;
            files.push((title, bytes));
        }
        let package = Package::from_files(files).map_err(|e| RemoteError::Package(from, e))?;
        Ok(Fetched {
            package,
            manifest_digest: Some(manifest_digest),
        })
    })
}

/// Downloads the package file at `url` (`https://`, or `http://` on this
/// machine).
pub fn download(url: &str) -> Result<Fetched, RemoteError> {
    let bad = || RemoteError::BadUrl(url.into());
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(bad());
    }
    if url.starts_with("http://") && !is_loopback(host) {
        return Err(RemoteError::PlainHttp(url.into()));
    }
    install_crypto();
    let start = url.to_string();
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else if redirect_allowed(&start, attempt.url()) {
            attempt.follow()
        } else {
            attempt.stop()
        }
    });
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .redirect(redirects)
        .build()
        .map_err(|e| RemoteError::Unreachable(url.into(), e.to_string()))?;
    runtime().block_on(async {
        let response = client
            .get(url)
            .send()
            .await
            .map_err(|e| RemoteError::Unreachable(url.into(), root_cause(&e)))?;
        let status = response.status();
        // A redirect the policy stopped comes back as the redirect itself.
        if status.is_redirection() {
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("elsewhere");
            return Err(RemoteError::InsecureRedirect(url.into(), to.into()));
        }
        if !status.is_success() {
            return Err(RemoteError::Status(url.into(), status.to_string()));
        }
        let len = response.content_length();
        if let Some(len) = len
            && len > package::MAX_PACKAGE_BYTES
        {
            return Err(RemoteError::TooLarge {
                from: url.into(),
                what: "the package".into(),
                size: len,
                limit: package::MAX_PACKAGE_BYTES,
            });
        }
        let stream = response
            .bytes_stream()
            .map(|r| r.map_err(std::io::Error::other));
        let bytes = collect(
            Box::pin(stream),
            "package",
            url,
            len,
            None,
            package::MAX_PACKAGE_BYTES,
        )
        .await?;
        let package =
            Package::from_bytes(&bytes).map_err(|e| RemoteError::Package(url.into(), e))?;
        Ok(Fetched {
            package,
            manifest_digest: None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_host_repository_and_tag_or_digest() {
        let r = OciRef::parse("oci://127.0.0.1:5000/keel/todo:0.1.0").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.reference.repository(), "keel/todo");
        assert_eq!(r.reference.tag(), Some("0.1.0"));
        let d = format!(
            "oci://registry.example.com/keel/todo@sha256:{}",
            "a".repeat(64)
        );
        assert!(OciRef::parse(&d).unwrap().reference.digest().is_some());
        for bad in [
            "127.0.0.1:5000/keel/todo:0.1.0",
            "oci://127.0.0.1:5000/keel/todo",
            "oci://keel/todo:1",
            "oci://",
            "oci://host:5000/",
        ] {
            let e = OciRef::parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("is not an OCI reference"),
                "{bad}: {e}"
            );
        }
    }

    /// A one-thread HTTP server on 127.0.0.1 that answers each of the
    /// next `n` requests with `reply(request line)`; returns its port.
    fn serve(n: usize, reply: fn(&str) -> Vec<u8>) -> u16 {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(n) {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let _ = stream.write_all(&reply(&first));
            }
        });
        port
    }

    #[test]
    fn https_installs_refuse_a_redirect_to_http() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        let from = "https://example.com/todo.keel";
        assert!(redirect_allowed(
            from,
            &url("https://cdn.example.com/t.keel")
        ));
        assert!(!redirect_allowed(
            from,
            &url("http://example.com/todo.keel")
        ));
        assert!(!redirect_allowed(from, &url("http://127.0.0.1/todo.keel")));
        assert!(!redirect_allowed(from, &url("ftp://example.com/todo.keel")));
        let local = "http://127.0.0.1:9/todo.keel";
        assert!(redirect_allowed(local, &url("http://localhost:8/t.keel")));
        assert!(!redirect_allowed(local, &url("http://example.com/t.keel")));
        // Through the client: the redirect is not followed, and says so.
        let port = serve(1, |_| {
            b"HTTP/1.1 302 Found\r\nLocation: http://example.com/todo.keel\r\nContent-Length: 0\r\n\r\n"
                .to_vec()
        });
        let e = download(&format!("http://127.0.0.1:{port}/todo.keel")).unwrap_err();
        assert!(
            e.to_string()
                .contains("redirects to http://example.com/todo.keel, which is not https://"),
            "{e}"
        );
    }

    #[test]
    fn oci_manifests_are_read_only_up_to_their_limit() {
        // A registry that accepts anyone and answers the manifest with more
        // than the limit: announced, or streamed without a length.
        fn registry(line: &str) -> Vec<u8> {
            if line.starts_with("GET /v2/ ") {
                return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec();
            }
            let huge = "x".repeat(MAX_METADATA_BYTES + 1);
            if line.contains(":announced ") {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{huge}",
                    huge.len()
                )
                .into_bytes()
            } else {
                format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{huge}").into_bytes()
            }
        }
        for tag in ["announced", "streamed"] {
            let port = serve(8, registry);
            let r = OciRef::parse(&format!("oci://127.0.0.1:{port}/keel/x:{tag}")).unwrap();
            let e = pull(&r).unwrap_err();
            let says = format!("the manifest is {} bytes, over the", MAX_METADATA_BYTES + 1);
            assert!(e.to_string().contains(&says), "{tag}: {e}");
        }
    }

    #[test]
    fn plain_http_only_on_this_machine() {
        for h in ["127.0.0.1:5000", "localhost", "localhost:80", "[::1]:5000"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "example.com",
            "10.0.0.1:5000",
            "127.0.0.2",
            "localhost.example",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
        let e = download("http://example.com/x.keel").unwrap_err();
        assert!(e.to_string().contains("plain HTTP"), "{e}");
    }
}
