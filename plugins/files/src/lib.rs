//! The `files` connector: ingests the folder the operator bound to `notes`
//! (mounted at `/notes`): `.md` and `.txt` become `core/document`, `.eml`
//! becomes `core/message`. The identity is the relative path, so a file is
//! one record forever; a changed file becomes a new version.
//!
//! Each file's hash, size and modification time live in the connector's
//! sync state under `path:REL`, so an unchanged file costs one `stat` and
//! no read, and the cursor is only a position: the last path of a pass
//! that has not finished. A pass walks the folder in the order the state
//! is kept (bytewise by path) beside a scan of that state, so a key with
//! no file is found gone without holding a million keys at once.
//!
//! A file read is followed by its state within the next 32 files, so a
//! sync stopped by its deadline reads few files again. The pass checkpoints its position soon
//! after a run starts reading and then at doubling intervals, up to every
//! 500 files read or 5 s (a pass that reads nothing, every 5 s: an
//! unchanged folder resyncs without a write unless that takes longer); the next sync goes on
//! from there (under `keel up`, at once), passing the files before it by
//! their state alone. After a crash the files read since the last
//! commit are read again, and their identity makes that write nothing
//! twice.

mod parse;
mod seen;
mod walk;

use std::time::{Duration, Instant, SystemTime};

use keel_connector::prelude::*;
use keel_connector::sync_state::{Scan, Writer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use seen::Seen;
use walk::Walk;

const ROOT: &str = "/notes";
const SOURCE: &str = "files:notes";
/// Files larger than this are skipped with a warning.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// The prefix of every sync-state key: `path:` and the relative path.
const KEY: &str = "path:";
/// Files read since the last checkpoint that make the next one due, at a
/// run's start and at most: the interval doubles after each checkpoint, so
/// a run cut short early still keeps its first steps (the connector does
/// not know its deadline) while a long one checkpoints every few hundred
/// files.
const CHECKPOINT_FILES: (u32, u32) = (25, 500);
/// The same in time, once a file was read since the last checkpoint.
const CHECKPOINT_EVERY: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(5));
/// Time after which a pass that read nothing checkpoints its position
/// anyway, so a long pass over unchanged files still moves on across
/// runs; a shorter one writes nothing at all.
const CHECKPOINT_IDLE: Duration = Duration::from_secs(5);
/// Sync-state changes written in one call: few enough that a sync stopped
/// by its deadline reads few files again, enough that a first sync makes
/// one state call per this many files.
const STATE_BATCH: usize = 32;
/// The cursor's format; older ones start a new pass.
const CURSOR_VERSION: u32 = 2;

/// Where the next sync starts: after `after` in the pass under way, or a
/// new pass when none.
#[derive(Default, Serialize, Deserialize)]
struct Cursor {
    v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
}

impl Cursor {
    fn parse(text: Option<&str>) -> Option<String> {
        let cursor: Cursor = serde_json::from_str(text?).ok()?;
        (cursor.v == CURSOR_VERSION)
            .then_some(cursor.after)
            .flatten()
    }

    fn text(after: Option<String>) -> Result<String, Error> {
        let cursor = Cursor {
            v: CURSOR_VERSION,
            after,
        };
        serde_json::to_string(&cursor)
            .map_err(|e| Error::Internal(format!("cannot encode the cursor: {e}")))
    }
}

/// What one file came to.
enum Wrote {
    Created,
    Updated,
    Same,
}

/// One run's part of a pass over the folder.
struct Pass {
    /// The sync state from where the run starts, in key order.
    state: Scan,
    /// The states of files read and the keys of files gone, written in
    /// batches of [`STATE_BATCH`].
    writer: Writer,
    /// When the run started, to tell a racy modification time.
    now: SystemTime,
    created: u32,
    updated: u32,
    unchanged: u32,
    gone: u32,
    /// The last path visited, and whether it moved since the last
    /// checkpoint.
    position: Option<String>,
    moved: bool,
    /// Files read since the last checkpoint.
    read_since: u32,
    checkpointed: Instant,
    /// What makes the next checkpoint due: files read, time passed.
    due: (u32, Duration),
}

impl Pass {
    fn new(after: Option<&str>) -> Pass {
        let from = after.map(|a| format!("{KEY}{a}"));
        Pass {
            state: keel_connector::sync_state::scan(KEY, from.as_deref()),
            writer: Writer::with_batch(STATE_BATCH),
            now: SystemTime::now(),
            created: 0,
            updated: 0,
            unchanged: 0,
            gone: 0,
            position: after.map(str::to_string),
            moved: false,
            read_since: 0,
            checkpointed: Instant::now(),
            due: (CHECKPOINT_FILES.0, CHECKPOINT_EVERY.0),
        }
    }

    /// The state of `key`, deleting the keys before it: their files are
    /// gone.
    fn state_of(&mut self, key: &str) -> Result<Option<Seen>, Error> {
        loop {
            let order = self.state.peek_key()?.map(|k| k.cmp(key));
            match order {
                Some(std::cmp::Ordering::Less) => self.drop_next()?,
                Some(std::cmp::Ordering::Equal) => {
                    let (_, value) = self.state.next().transpose()?.unwrap_or_default();
                    return Ok(Seen::parse(&value));
                }
                _ => return Ok(None),
            }
        }
    }

    /// Deletes the next key of the state: its file is gone. Its record
    /// stays, as the file's last version.
    fn drop_next(&mut self) -> Result<(), Error> {
        if let Some((key, _)) = self.state.next().transpose()? {
            self.writer.delete(key)?;
            self.gone += 1;
        }
        Ok(())
    }

    fn file(&mut self, rel: &str) -> Result<(), Error> {
        let key = format!("{KEY}{rel}");
        let old = self.state_of(&key)?;
        self.position = Some(rel.to_string());
        self.moved = true;
        let full = format!("{ROOT}/{rel}");
        let Ok(meta) = std::fs::metadata(&full) else {
            // Gone since it was listed: the next pass finds it gone.
            return Ok(());
        };
        let (size, mtime) = (meta.len(), meta.modified().ok());
        if size > MAX_FILE_BYTES {
            log::warn(&format!(
                "skipping {rel}: {size} bytes is over {MAX_FILE_BYTES}"
            ));
        } else if old.as_ref().is_some_and(|s| s.matches(size, mtime)) {
            self.unchanged += 1;
        } else {
            self.read(rel, &key, old, mtime)?;
            self.read_since += 1;
        }
        self.checkpoint_if_due()
    }

    /// Reads and hashes a file that may have changed, writes its record
    /// when it did, then its state.
    fn read(
        &mut self,
        rel: &str,
        key: &str,
        old: Option<Seen>,
        mtime: Option<SystemTime>,
    ) -> Result<(), Error> {
        let bytes = std::fs::read(format!("{ROOT}/{rel}"))
            .map_err(|e| Error::Unavailable(format!("cannot read {rel}: {e}")))?;
        let sha = parse::hex(&Sha256::digest(&bytes));
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let seen = Seen::new(sha, size, mtime, self.now);
        if old.as_ref().is_some_and(|o| o.sha256 == seen.sha256) {
            self.unchanged += 1;
        } else {
            let Some((kind, body)) = parse::parse(rel, &bytes, &seen.sha256) else {
                return Ok(());
            };
            match write(rel, kind, &body, &seen.sha256)? {
                Wrote::Created => self.created += 1,
                Wrote::Updated => self.updated += 1,
                Wrote::Same => self.unchanged += 1,
            }
        }
        // The record first, then the state that vouches for it, written
        // in small batches: a sync stopped before the next one reads at
        // most a batch of files again.
        if old.as_ref() != Some(&seen) {
            self.writer.put(key, seen.value())?;
        }
        Ok(())
    }

    fn checkpoint_if_due(&mut self) -> Result<(), Error> {
        let elapsed = self.checkpointed.elapsed();
        let due = self.read_since >= self.due.0
            || (self.read_since > 0 && elapsed >= self.due.1)
            || (self.moved && elapsed >= CHECKPOINT_IDLE);
        if !due {
            return Ok(());
        }
        self.writer.flush()?;
        actions::checkpoint(&Cursor::text(self.position.clone())?)?;
        self.read_since = 0;
        self.moved = false;
        self.checkpointed = Instant::now();
        self.due = (
            (self.due.0 * 2).min(CHECKPOINT_FILES.1),
            (self.due.1 * 2).min(CHECKPOINT_EVERY.1),
        );
        Ok(())
    }

    /// Ends the pass: what is left of the state has no file.
    fn finish(mut self) -> Result<SyncResult, Error> {
        while self.state.peek_key()?.is_some() {
            self.drop_next()?;
        }
        self.writer.flush()?;
        log::info(&format!(
            "{} created, {} updated, {} unchanged, {} gone from the folder",
            self.created, self.updated, self.unchanged, self.gone
        ));
        Ok(SyncResult {
            cursor: Some(Cursor::text(None)?),
            created: self.created,
            updated: self.updated,
            unchanged: self.unchanged,
        })
    }
}

/// Writes the record of the file at `rel`: created, or a new version when
/// its contents changed since the record's. The identity makes a file
/// redone after a crash a no-op.
fn write(rel: &str, kind: &str, body: &serde_json::Value, sha: &str) -> Result<Wrote, Error> {
    let options = || WriteOptions::new().note(format!("ingested from {rel}"));
    let identity = Identity::new(SOURCE, rel);
    let created = actions::create(kind, body, Some(identity), options())?;
    if !created.existed {
        return Ok(Wrote::Created);
    }
    let existing = created.record;
    let same = existing
        .body_as::<serde_json::Value>()
        .map(|b| b["sha256"] == sha)
        .unwrap_or(false);
    if same {
        return Ok(Wrote::Same);
    }
    actions::update(&existing.id, existing.version, body, options())?;
    Ok(Wrote::Updated)
}

struct Files;

impl Connector for Files {
    fn sync(cursor: Option<String>) -> Result<SyncResult, Error> {
        let after = Cursor::parse(cursor.as_deref());
        let mut pass = Pass::new(after.as_deref());
        for rel in Walk::new(ROOT, after)? {
            let rel = rel?;
            if parse::ingested(&rel) {
                pass.file(&rel)?;
            }
        }
        pass.finish()
    }
}

keel_connector::export_connector!(Files);
