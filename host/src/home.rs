//! The operator's home: the SQLite store, installed plugins and the
//! compiled-component cache.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::store::Store;

/// File name of the store inside the home.
const DB_FILE: &str = "keel.db";

/// A keel home folder.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The home named by `--home`/`KEEL_HOME`, or `~/.keel`.
    pub fn locate(arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
        match arg {
            Some(p) => Ok(p),
            None => {
                let home = std::env::var_os("HOME")
                    .context("HOME is not set; pass --home DIR or set KEEL_HOME")?;
                Ok(PathBuf::from(home).join(".keel"))
            }
        }
    }

    /// Creates the home (or confirms an existing one) and its store.
    pub fn init(root: &Path) -> anyhow::Result<Home> {
        for dir in [root.to_path_buf(), root.join("plugins"), root.join("cache")] {
            std::fs::create_dir_all(&dir).with_context(|| {
                format!("cannot create {}; pick a writable --home", dir.display())
            })?;
        }
        let home = Home {
            root: root.canonicalize()?,
        };
        home.store()?;
        Ok(home)
    }

    /// Opens an existing home.
    pub fn open(root: &Path) -> anyhow::Result<Home> {
        if !root.join(DB_FILE).is_file() {
            anyhow::bail!(
                "{} is not a keel home; create it with `keel init --home {}`",
                root.display(),
                root.display()
            );
        }
        Ok(Home {
            root: root.canonicalize()?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn db_path(&self) -> PathBuf {
        self.root.join(DB_FILE)
    }

    /// Opens the store.
    pub fn store(&self) -> anyhow::Result<Store> {
        Ok(Store::open(&self.db_path())?)
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.root.join("plugins")
    }

    /// The folder holding an installed plugin's manifest and component.
    pub fn plugin_dir(&self, id: &str) -> PathBuf {
        self.plugins_dir().join(id)
    }

    pub fn component_path(&self, id: &str) -> PathBuf {
        self.plugin_dir(id).join("component.wasm")
    }

    /// Signing keys made by `keel key generate`.
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }
}
