//! What `keel demo` and `keel bench` carry inside the binary: the
//! first-party plugins (built by `build.rs`), how to install one into a
//! home, and where the local models' weights are looked for by default.

use std::path::{Path, PathBuf};

use crate::home::Home;
use crate::install::InstallRequest;
use crate::runtime::Runtime;

/// A first-party plugin carried inside the binary.
#[derive(Debug, Clone, Copy)]
pub struct Embedded {
    pub id: &'static str,
    pub manifest: &'static str,
    pub component: &'static [u8],
}

pub const FILES: Embedded = Embedded {
    id: "files",
    manifest: include_str!("../../plugins/files/keel.toml"),
    component: include_bytes!(env!("KEEL_PLUGIN_FILES_WASM")),
};

pub const TODO: Embedded = Embedded {
    id: "todo",
    manifest: include_str!("../../plugins/todo/keel.toml"),
    component: include_bytes!(env!("KEEL_PLUGIN_TODO_WASM")),
};

pub const TRIAGE: Embedded = Embedded {
    id: "triage",
    manifest: include_str!("../../plugins/triage/keel.toml"),
    component: include_bytes!(env!("KEEL_PLUGIN_TRIAGE_WASM")),
};

pub const BENCH: Embedded = Embedded {
    id: "bench",
    manifest: include_str!("../../plugins/bench/keel.toml"),
    component: include_bytes!(env!("KEEL_PLUGIN_BENCH_WASM")),
};

/// Where `scripts/setup --local-models` keeps the local models' weights.
pub fn default_models_dir() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("keel").join("local-models"))
}

/// Installs an embedded plugin into `home` from files written to `staging`.
pub fn install(
    home: &Home,
    runtime: &Runtime,
    plugin: Embedded,
    staging: &Path,
    bindings: crate::grant::Bindings,
) -> anyhow::Result<()> {
    let dir = staging.join(plugin.id);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("keel.toml"), plugin.manifest)?;
    let component = dir.join("plugin.wasm");
    std::fs::write(&component, plugin.component)?;
    let req = InstallRequest {
        source: dir,
        component: Some(component),
        bindings,
        ..InstallRequest::default()
    };
    let checked = crate::install::check(runtime.engine(), runtime.linker(), &req)?;
    let mut db = home.store()?;
    crate::install::install(home, runtime.engine(), &mut db, &checked)?;
    Ok(())
}
