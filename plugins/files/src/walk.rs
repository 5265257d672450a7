//! The folder's files in the order the host sorts sync-state keys
//! (bytewise), so one pass can walk the folder and the state side by side.
//! Memory holds the listings of the directories on the current path, never
//! the whole tree.

use std::cmp::Ordering;
use std::path::PathBuf;

use keel_connector::Error;

/// One directory entry worth visiting.
struct Entry {
    name: String,
    is_dir: bool,
}

impl Entry {
    /// Its place among its siblings: a directory sorts as `name/`, where
    /// its files will sort in full paths (`a-b` < `a/x` < `a0`).
    fn cmp_path(&self, other: &Entry) -> Ordering {
        fn key(e: &Entry) -> impl Iterator<Item = u8> + '_ {
            e.name.bytes().chain(e.is_dir.then_some(b'/'))
        }
        key(self).cmp(key(other))
    }
}

/// Regular files under a root, as paths relative to it with `/`
/// separators, in bytewise order, after a given path.
pub struct Walk {
    root: PathBuf,
    /// The directories being listed: relative path (empty for the root)
    /// and the entries not yet visited, last first.
    stack: Vec<(String, Vec<Entry>)>,
    after: Option<String>,
}

impl Walk {
    /// The files under `root` that sort after `after`.
    pub fn new(root: &str, after: Option<String>) -> Result<Walk, Error> {
        let mut walk = Walk {
            root: PathBuf::from(root),
            stack: Vec::new(),
            after,
        };
        walk.push(String::new())?;
        Ok(walk)
    }

    fn push(&mut self, rel: String) -> Result<(), Error> {
        let dir = if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(&rel)
        };
        let listing = std::fs::read_dir(&dir)
            .map_err(|e| Error::Unavailable(format!("cannot list {}: {e}", dir.display())))?;
        let mut entries = Vec::new();
        for entry in listing {
            let entry = entry
                .map_err(|e| Error::Unavailable(format!("cannot list {}: {e}", dir.display())))?;
            let kind = entry.file_type().map_err(|e| {
                Error::Unavailable(format!("cannot stat in {}: {e}", dir.display()))
            })?;
            // Symlinks and special files are left alone.
            if kind.is_dir() || kind.is_file() {
                entries.push(Entry {
                    name: entry.file_name().to_string_lossy().into_owned(),
                    is_dir: kind.is_dir(),
                });
            }
        }
        entries.sort_by(|a, b| b.cmp_path(a));
        self.stack.push((rel, entries));
        Ok(())
    }

    /// Whether the walk may pass `path` (a file, or a directory as
    /// `dir/`) by without visiting it: all of it sorts before `after`.
    fn passed(&self, path: &str, is_dir: bool) -> bool {
        match &self.after {
            None => false,
            Some(after) if is_dir => !after.starts_with(path) && path < after.as_str(),
            Some(after) => path <= after.as_str(),
        }
    }
}

impl Iterator for Walk {
    type Item = Result<String, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (rel, entries) = self.stack.last_mut()?;
            let Some(entry) = entries.pop() else {
                self.stack.pop();
                continue;
            };
            let path = if rel.is_empty() {
                entry.name
            } else {
                format!("{rel}/{}", entry.name)
            };
            if entry.is_dir {
                if !self.passed(&format!("{path}/"), true)
                    && let Err(e) = self.push(path)
                {
                    return Some(Err(e));
                }
            } else if !self.passed(&path, false) {
                return Some(Ok(path));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder holding `files`, named for the test.
    fn tree(name: &str, files: &[&str]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("keel-files-walk-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for f in files {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        dir
    }

    fn walked(root: &std::path::Path, after: Option<&str>) -> Vec<String> {
        Walk::new(root.to_str().unwrap(), after.map(str::to_string))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn files_come_in_bytewise_order_of_their_paths() {
        let files = ["a0", "a/x", "a-b", "a/y/z", "b", "a/y-1", "A"];
        let dir = tree("order", &files);
        let mut sorted: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        sorted.sort();
        assert_eq!(walked(&dir, None), sorted);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_walk_resumes_after_a_path_without_revisiting() {
        let dir = tree("resume", &["a/x", "a/y/z", "a/y/zz", "b/c", "d"]);
        assert_eq!(walked(&dir, Some("a/y/z")), ["a/y/zz", "b/c", "d"]);
        assert_eq!(walked(&dir, Some("a/y")), ["a/y/z", "a/y/zz", "b/c", "d"]);
        assert_eq!(walked(&dir, Some("c")), ["d"]);
        assert!(walked(&dir, Some("z")).is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
