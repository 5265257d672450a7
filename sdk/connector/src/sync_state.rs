//! The connector's keyed state in the host: a value per item of its source
//! (a file's hash, a message's uid), read and written in batches, and
//! scanned in key order to find the items that are gone.
//!
//! Writes belong to the run: kept once a call returns and committed with
//! the next [`crate::actions::checkpoint`] (or the run's end). Write an
//! item's record first and its state after, so state never claims an
//! item whose record was lost.

use crate::__bindings::keel::host::sync_state as wit;
use crate::Error;

/// Most keys the host takes in one call; [`get`] and [`set`] split larger
/// batches into calls of this size.
pub const MAX_BATCH: usize = 1_000;
/// Entries one scan page asks for (the host's most).
const PAGE: u32 = 1_000;
/// Largest key, in bytes.
pub const MAX_KEY_BYTES: usize = 4 * 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// The value of each of `keys`, in order (`None` for a key not set).
pub fn get(keys: &[String]) -> Result<Vec<Option<String>>, Error> {
    let mut values = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(MAX_BATCH) {
        values.extend(wit::get(chunk)?);
    }
    Ok(values)
}

/// Sets each key to its value (`None` deletes it). Each call of up to
/// [`MAX_BATCH`] entries is all or nothing.
pub fn set(entries: &[(String, Option<String>)]) -> Result<(), Error> {
    entries.chunks(MAX_BATCH).try_for_each(wit::set)
}

/// Collects changes and writes them a batch at a time ([`MAX_BATCH`]
/// unless told fewer), so a connector walking a large source makes few
/// host calls. Call [`Writer::flush`] before a checkpoint: what is still
/// buffered is not written.
#[derive(Debug)]
pub struct Writer {
    pending: Vec<(String, Option<String>)>,
    batch: usize,
}

impl Default for Writer {
    fn default() -> Writer {
        Writer::with_batch(MAX_BATCH)
    }
}

impl Writer {
    /// An empty writer that writes [`MAX_BATCH`] changes at a time.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// An empty writer that writes `batch` changes at a time (1 to
    /// [`MAX_BATCH`]): smaller batches lose less to a sync stopped before
    /// its next flush.
    pub fn with_batch(batch: usize) -> Writer {
        Writer {
            pending: Vec::new(),
            batch: batch.clamp(1, MAX_BATCH),
        }
    }

    /// Sets `key` to `value` (written by the flush that comes due).
    pub fn put(&mut self, key: impl Into<String>, value: impl Into<String>) -> Result<(), Error> {
        self.push(key.into(), Some(value.into()))
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: impl Into<String>) -> Result<(), Error> {
        self.push(key.into(), None)
    }

    fn push(&mut self, key: String, value: Option<String>) -> Result<(), Error> {
        self.pending.push((key, value));
        if self.pending.len() >= self.batch {
            self.flush()?;
        }
        Ok(())
    }

    /// Changes buffered and not yet written.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) -> Result<(), Error> {
        if !self.pending.is_empty() {
            set(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }
}

/// The entries under `prefix` after `after`, in key order (bytewise, as
/// UTF-8), fetched a page at a time: memory holds one page, however many
/// keys there are.
pub fn scan(prefix: &str, after: Option<&str>) -> Scan {
    Scan {
        prefix: prefix.to_string(),
        after: after.map(str::to_string),
        page: Vec::new().into_iter(),
        done: false,
    }
}

/// An iterator over sync-state entries; see [`scan`].
#[derive(Debug)]
pub struct Scan {
    prefix: String,
    after: Option<String>,
    page: std::vec::IntoIter<(String, String)>,
    done: bool,
}

impl Scan {
    /// The next entry without taking it.
    pub fn peek_key(&mut self) -> Result<Option<&str>, Error> {
        self.fill()?;
        Ok(self.page.as_slice().first().map(|(k, _)| k.as_str()))
    }

    /// Fetches the next page when the current one is used up.
    fn fill(&mut self) -> Result<(), Error> {
        while self.page.as_slice().is_empty() && !self.done {
            let page = wit::scan(&self.prefix, self.after.as_deref(), PAGE)?;
            self.done = page.next.is_none();
            self.after = page.next;
            self.page = page.entries.into_iter();
        }
        Ok(())
    }
}

impl Iterator for Scan {
    type Item = Result<(String, String), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.fill() {
            Ok(()) => self.page.next().map(Ok),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
