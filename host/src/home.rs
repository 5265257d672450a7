//! The operator's home: the SQLite store, installed plugins and the
//! compiled-component cache.
//!
//! Everything in it is the operator's alone: the home is made `0700` and
//! every file in it `0600` (the database and its `-wal`/`-shm`, keys, the
//! cache, installed plugins, the lockfile), whatever the umask. A home made
//! by an earlier keel is tightened the same way when it is opened, with a
//! one-line notice. SQLite makes its `-wal` and `-shm` files with the
//! database file's mode, so creating that file `0600` first covers them.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::store::Store;

/// File name of the store inside the home.
const DB_FILE: &str = "keel.db";

/// A keel home folder.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
    caches: Caches,
}

/// What the host keeps in memory for one home between runs (a
/// capability's caches: memory vectors, model circuit breakers), one value
/// per type, shared by every clone of the [`Home`] and never between homes.
#[derive(Clone, Default)]
struct Caches(Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>);

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Caches")
    }
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
            caches: Caches::default(),
        };
        // Made owner-only before SQLite opens it, so no moment exists where
        // the database (or its -wal/-shm, which copy its mode) is readable.
        let db = home.db_path();
        if !db.exists() {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options
                .open(&db)
                .with_context(|| format!("cannot create {}", db.display()))?;
        }
        home.store()?;
        // A home being made says nothing: it was never open to others.
        home.tighten(false)?;
        Ok(home)
    }

    /// Makes the home `0700` and everything in it owner-only (folders
    /// `0700`, files `0600`); symlinks are left alone. Says so on stderr,
    /// once, when the home itself was open to others (a home from an earlier
    /// keel or a loose umask).
    fn tighten(&self, announce: bool) -> anyhow::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let loose = std::fs::metadata(&self.root)?.permissions().mode() & 0o077 != 0;
            let changed = tighten_tree(&self.root, 0)?;
            if announce && loose && changed > 0 {
                eprintln!(
                    "notice: {} was readable by other users; keel made it and the {changed} entries in it owner-only (0700 folders, 0600 files)",
                    self.root.display()
                );
            }
        }
        Ok(())
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
        let home = Home {
            root: root.canonicalize()?,
            caches: Caches::default(),
        };
        home.tighten(true)?;
        Ok(home)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This home's in-memory value of type `T`, made on first use.
    pub fn cache<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut all = self.caches.0.lock().unwrap_or_else(|p| p.into_inner());
        let value = all
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()))
            .clone();
        value
            .downcast::<T>()
            .unwrap_or_else(|_| unreachable!("each cache is stored under its own type"))
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

/// Deepest folder [`tighten_tree`] walks below the home (plugins keep
/// their files two levels down).
#[cfg(unix)]
const MAX_DEPTH: usize = 6;
/// Most entries it changes in one folder, so a huge folder someone put in
/// the home cannot stall every command.
#[cfg(unix)]
const MAX_ENTRIES: usize = 100_000;

/// Sets `dir` to `0700`, its files to `0600` (`0700` for the owner's
/// executables) and its folders likewise, down to [`MAX_DEPTH`]; returns how
/// many modes changed.
#[cfg(unix)]
fn tighten_tree(dir: &Path, depth: usize) -> anyhow::Result<usize> {
    use std::os::unix::fs::PermissionsExt as _;
    // Other keel processes make and rename files here meanwhile (temporary
    // files, SQLite's journals): one that is gone by the time it is looked
    // at needs nothing.
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let set = |path: &Path, meta: &std::fs::Metadata, mode: u32| -> anyhow::Result<usize> {
        if meta.permissions().mode() & 0o777 == mode {
            return Ok(0);
        }
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            Ok(()) => Ok(1),
            Err(e) if gone(&e) => Ok(0),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "cannot make {} owner-only; fix its owner or run `chmod -R go-rwx` on the home",
                    path.display()
                )
            }),
        }
    };
    let mut changed = match std::fs::symlink_metadata(dir) {
        Ok(meta) => set(dir, &meta, 0o700)?,
        Err(e) if gone(&e) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    if depth >= MAX_DEPTH {
        return Ok(changed);
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if gone(&e) => return Ok(changed),
        Err(e) => return Err(e.into()),
    };
    for entry in entries.take(MAX_ENTRIES) {
        let path = entry?.path();
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e.into()),
        };
        if meta.is_dir() {
            changed += tighten_tree(&path, depth + 1)?;
        } else if meta.is_file() {
            // An executable someone keeps here (a model server, a script)
            // stays runnable by its owner.
            let mode = if meta.permissions().mode() & 0o100 != 0 {
                0o700
            } else {
                0o600
            };
            changed += set(&path, &meta, mode)?;
        }
    }
    Ok(changed)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn m3_home_and_its_files_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home");
        let home = Home::init(&root).unwrap();
        assert_eq!(mode(home.root()), 0o700);
        assert_eq!(mode(&home.plugins_dir()), 0o700);
        assert_eq!(mode(&home.cache_dir()), 0o700);
        assert_eq!(mode(&home.db_path()), 0o600);
        // SQLite's side files take the database's mode.
        let db = home.store().unwrap();
        db.conn()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        let wal = root.join("keel.db-wal");
        assert!(wal.exists());
        assert_eq!(mode(&wal), 0o600);
        assert_eq!(mode(&root.join("keel.db-shm")), 0o600);
        drop(db);

        // A home left open by an earlier keel is closed up when opened.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(home.db_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let plugin = home.plugin_dir("p");
        std::fs::create_dir_all(&plugin).unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(plugin.join("component.wasm"), b"x").unwrap();
        std::fs::set_permissions(
            plugin.join("component.wasm"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let home = Home::open(&root).unwrap();
        assert_eq!(mode(home.root()), 0o700);
        assert_eq!(mode(&home.db_path()), 0o600);
        assert_eq!(mode(&plugin), 0o700);
        assert_eq!(mode(&plugin.join("component.wasm")), 0o600);
        // And the home still serves.
        home.store().unwrap();
    }
}
