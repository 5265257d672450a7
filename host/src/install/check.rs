//! Checking an install request before anything is written: the source
//! opened (a package unpacked and its signature checked), the manifest
//! read, the component loaded within its size limit, its imports held to
//! the manifest and its exports to the world it names, the grant made.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use keel_registry::Digest;
use wasmtime::component::Component;

use super::{InstallRequest, shown};
use crate::bindings::{AgentPre, ChannelPre, ConnectorPre, ProviderPre};
use crate::engine::KeelEngine;
use crate::grant::Grant;
use crate::manifest::{Manifest, World};
use crate::runtime::RunState;

/// Largest component keel installs.
pub const MAX_COMPONENT_BYTES: u64 = 256 * 1024 * 1024;

/// Reads what a request names and checks it, without writing anything.
pub struct Checked {
    pub manifest: Manifest,
    pub manifest_text: String,
    pub component_bytes: Vec<u8>,
    pub digest: Digest,
    pub grant: Grant,
    pub imports: Vec<String>,
    /// The compiled component, cached only once the install succeeds.
    pub component: Component,
    /// The package digest of the contents (manifest, component, readme).
    pub package_digest: Digest,
    /// `dir:PATH`, `package:PATH`, or the `oci://` reference or URL.
    pub source: String,
    /// What the package's signature says (a folder is unsigned).
    pub signed: keel_registry::package::Signed,
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked")
            .field("plugin", &self.manifest.label())
            .field("digest", &self.digest)
            .finish()
    }
}

/// Loads and checks an install request: manifest, component, imports,
/// exports, grant.
pub fn check(
    engine: &KeelEngine,
    linker: &wasmtime::component::Linker<RunState>,
    req: &InstallRequest,
) -> anyhow::Result<Checked> {
    let opened = open_source(req)?;
    let req = opened.request.as_ref().unwrap_or(req);
    let manifest_path = locate(req)?;
    let manifest = Manifest::load(&manifest_path)?;
    let manifest_text = std::fs::read_to_string(&manifest_path)?;
    let base = manifest_path.parent().unwrap_or(Path::new("."));
    let (component_bytes, component) = load_component(engine, req, &manifest, base)?;
    let imports = check_imports(engine.engine(), &component, &manifest)?;
    check_world(linker, &component, &manifest)?;
    let mut grant = Grant::new(&manifest, &req.bindings).map_err(anyhow::Error::msg)?;
    grant.cap(req.concurrency, req.rate);
    let package_digest = match &opened.unpacked {
        Some(u) => u.digest.clone(),
        None => {
            let readme = std::fs::read_to_string(base.join(keel_registry::package::README)).ok();
            keel_registry::package::digest_of(&manifest_text, &component_bytes, readme.as_deref())
        }
    };
    if let Some(pinned) = &req.digest
        && *pinned != package_digest
    {
        bail!(
            "{}: {} has digest {package_digest}, not the pinned {pinned}; nothing was installed",
            manifest.label(),
            shown(&opened.source)
        );
    }
    Ok(Checked {
        digest: Digest::of(&component_bytes),
        manifest,
        manifest_text,
        component_bytes,
        grant,
        imports,
        component,
        package_digest,
        source: opened.source,
        signed: opened.signed,
    })
}

/// An install's source, opened: a package unpacked into a temporary
/// folder (its signature checked against its contents on the way), or a
/// folder or file as it is.
struct Opened {
    unpacked: Option<crate::install::packages::Unpacked>,
    /// The request pointed at the unpacked package, for a package.
    request: Option<InstallRequest>,
    /// Where it came from, as `keel plugin list` shows it.
    source: String,
    signed: keel_registry::package::Signed,
}

fn open_source(req: &InstallRequest) -> anyhow::Result<Opened> {
    let is_package = req.source.extension().is_some_and(|e| e == "keel");
    let unpacked = if is_package {
        if req.manifest.is_some() || req.component.is_some() {
            bail!(
                "a package carries its own manifest and component; drop --manifest and --component"
            );
        }
        Some(crate::install::packages::unpack(&req.source)?)
    } else {
        None
    };
    // Stored absolute: `keel plugin update` runs from any folder.
    let absolute = |p: &Path| {
        p.canonicalize()
            .or_else(|_| std::path::absolute(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let source = match (&unpacked, &req.origin) {
        (Some(_), Some(origin)) => origin.clone(),
        (Some(_), None) => format!("package:{}", absolute(&req.source).display()),
        (None, _) => format!("dir:{}", absolute(&req.source).display()),
    };
    let request = unpacked.as_ref().map(|u| InstallRequest {
        source: u.dir.path().to_path_buf(),
        manifest: None,
        component: Some(u.dir.path().join(keel_registry::package::COMPONENT)),
        ..req.clone()
    });
    let signed = unpacked
        .as_ref()
        .map(|u| u.signed.clone())
        .unwrap_or(keel_registry::package::Signed::Unsigned);
    if unpacked.is_some()
        && signed == keel_registry::package::Signed::Unsigned
        && !req.allow_unsigned
    {
        bail!(
            "{} is not signed; sign it with `keel plugin sign`, or install it with --allow-unsigned",
            shown(&source)
        );
    }
    Ok(Opened {
        unpacked,
        request,
        source,
        signed,
    })
}

/// The component's bytes, within the size limit, compiled.
fn load_component(
    engine: &KeelEngine,
    req: &InstallRequest,
    manifest: &Manifest,
    base: &Path,
) -> anyhow::Result<(Vec<u8>, Component)> {
    let label = manifest.label();
    let component_path = match (&req.component, &manifest.plugin.component) {
        (Some(c), _) => c.clone(),
        _ if req.source.extension().is_some_and(|e| e == "wasm") => req.source.clone(),
        (None, Some(c)) => base.join(c),
        (None, None) => base.join("plugin.wasm"),
    };
    let size = std::fs::metadata(&component_path)
        .with_context(|| {
            format!(
                "{label}: component {} not found; build the plugin first (for first-party plugins, `cargo build` builds them) or pass --component FILE",
                component_path.display()
            )
        })?
        .len();
    if size > MAX_COMPONENT_BYTES {
        bail!(
            "{label}: component {} is {size} bytes, over the {MAX_COMPONENT_BYTES}-byte limit",
            component_path.display()
        );
    }
    let component_bytes = std::fs::read(&component_path)?;
    let component = crate::engine::compile(engine.engine(), &component_bytes)
        .with_context(|| format!("{label}: {} cannot be installed", component_path.display()))?;
    Ok((component_bytes, component))
}

/// Refuses a component that needs an import keel does not provide, or
/// does not export the world its manifest names.
fn check_world(
    linker: &wasmtime::component::Linker<RunState>,
    component: &Component,
    manifest: &Manifest,
) -> anyhow::Result<()> {
    let label = manifest.label();
    let pre = linker.instantiate_pre(component).map_err(|e| {
        anyhow::anyhow!("{label}: the component needs an import keel does not provide: {e}")
    })?;
    let world_ok = match manifest.plugin.world {
        World::Connector => ConnectorPre::new(pre).map(|_| ()),
        World::Agent => AgentPre::new(pre).map(|_| ()),
        World::Channel => ChannelPre::new(pre).map(|_| ()),
        World::Provider => ProviderPre::new(pre).map(|_| ()),
    };
    world_ok.map_err(|e| {
        anyhow::anyhow!(
            "{label}: keel.toml says world `{}` but the component does not export it ({e}); fix plugin.world or rebuild against wit/",
            manifest.plugin.world.as_str()
        )
    })
}

/// Refuses a component whose imports reach past what its manifest declares.
pub fn check_imports(
    engine: &wasmtime::Engine,
    component: &Component,
    manifest: &Manifest,
) -> anyhow::Result<Vec<String>> {
    let caps = &manifest.capabilities;
    let label = manifest.label();
    let mut names = Vec::new();
    for (name, _) in component.component_type().imports(engine) {
        names.push(name.to_string());
        let interface = name.split('@').next().unwrap_or(name);
        let refusal = match interface {
            "keel:host/types" | "keel:host/log" => None,
            "keel:host/records" if caps.read.is_empty() && caps.write.is_empty() => {
                Some("it declares no record kinds to read; add them under [capabilities] read")
            }
            "keel:host/actions" if caps.actions.is_empty() => {
                Some("it declares no actions; add them under [capabilities] actions")
            }
            "keel:host/llm" if caps.llm.is_none() => Some(
                "it declares no models; add `llm = { tiers = [\"small\"] }` under [capabilities]",
            ),
            "keel:host/secrets" if caps.secrets.is_empty() => Some(
                "it declares no secrets; add them under [capabilities], e.g. secrets = [\"token\"]",
            ),
            "keel:host/memory" if !caps.memory => {
                Some("it declares no memory; add `memory = true` under [capabilities]")
            }
            // Sync state is a connector's own: its runs are the only ones
            // that may use it.
            "keel:host/sync-state" if manifest.plugin.world != World::Connector => {
                Some("only a connector keeps sync state; set plugin.world = \"connector\"")
            }
            "keel:host/sync-state" => None,
            // `config` needs no grant of its own: `get` answers only the
            // declared keys, and `caller` names who caused the run.
            "keel:host/records" | "keel:host/actions" | "keel:host/config" | "keel:host/llm"
            | "keel:host/memory" | "keel:host/secrets" => None,
            // A component may import the filesystem interfaces (language
            // runtimes such as CPython's always do): it reaches only the
            // directories its manifest declares and the operator binds,
            // and without any it has no preopened directory at all.
            i if i.starts_with("wasi:filesystem/") => None,
            // The socket interfaces may be imported (language runtimes
            // do), but every run's WASI context has TCP, UDP and name
            // lookup turned off: each socket call fails.
            i if i.starts_with("wasi:sockets/") => None,
            // HTTP only for a plugin with an HTTP endpoint: a component
            // that imports it without one asks for a reach it was not given.
            i if i.starts_with("wasi:http/") && !asks_http(caps) => Some(
                "it declares no HTTP endpoint; add one under [capabilities.endpoints], e.g. api = \"http\" (the operator binds it) or api = \"https://api.example.com\"",
            ),
            i if i.starts_with("wasi:http/") => None,
            i if ["wasi:cli/", "wasi:io/", "wasi:clocks/", "wasi:random/"]
                .iter()
                .any(|p| i.starts_with(p)) =>
            {
                None
            }
            _ => Some("keel provides no such interface"),
        };
        if let Some(why) = refusal {
            bail!(
                "{label} imports `{name}`, which its keel.toml does not allow: {why}; or rebuild the component without that import"
            );
        }
    }
    Ok(names)
}

/// Whether the manifest asks for at least one HTTP(S) endpoint.
fn asks_http(caps: &crate::manifest::Capabilities) -> bool {
    caps.asked_endpoints().any(|(_, asked)| match asked {
        crate::manifest::Asked::Http => true,
        crate::manifest::Asked::Fixed(e) => matches!(e, crate::manifest::Endpoint::Http { .. }),
        crate::manifest::Asked::Tcp => false,
    })
}

/// Finds the manifest and component an install request names.
fn locate(req: &InstallRequest) -> anyhow::Result<PathBuf> {
    let src = &req.source;
    if !src.exists() {
        bail!(
            "{} does not exist; pass a plugin folder, its keel.toml, or a .wasm file with --manifest",
            src.display()
        );
    }
    let manifest_path = if src.is_dir() {
        src.join("keel.toml")
    } else if src.extension().is_some_and(|e| e == "wasm") {
        req.manifest.clone().with_context(|| {
            format!(
                "{} is a component; name its manifest with --manifest keel.toml",
                src.display()
            )
        })?
    } else {
        src.clone()
    };
    if !manifest_path.is_file() {
        bail!(
            "{} has no keel.toml; a plugin folder holds its manifest",
            src.display()
        );
    }
    Ok(manifest_path)
}
