//! Write quotas: how many writes a plugin may make in one run
//! (`limits.writes_per_run`) and per UTC day across all its runs
//! (`limits.writes_per_day`). A write is a create that wrote a record, an
//! update, link, schedule, send, claim, task end or release, or a memory.
//! Past a quota every further write of the run is refused with `limit`, the
//! run is marked with the quota it reached, and the plugin shows up once in
//! the review queue (kind `quota`).
//!
//! A run takes writes from the day's quota in blocks of [`BLOCK`], in the
//! same write transaction as its calls, and gives back what it did not use
//! when it ends; so concurrent runs of one plugin, in any process, never
//! make more than the day's quota, and the count costs one small write per
//! block rather than per write. A run that dies keeps its block: the day
//! only ever undercounts what is left, never overcounts it.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::CallError;
use crate::manifest::Limits;

/// Writes a run takes from the day's quota at once.
pub const BLOCK: u64 = 1000;

/// One run's writes against its plugin's quotas.
#[derive(Debug, Clone)]
pub struct WriteQuota {
    plugin: String,
    label: String,
    per_run: u64,
    per_day: u64,
    /// Writes this run made.
    used: u64,
    /// Writes taken from `day`'s quota and not used yet.
    held: u64,
    day: String,
    /// When `day` ends (Unix seconds).
    day_ends: i64,
    /// The first quota the run reached, e.g. `writes_per_run 100`.
    reached: Option<String>,
    /// Jobs this run may still schedule.
    jobs_left: u64,
    jobs_per_run: u64,
}

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// When the current UTC day ends, in Unix seconds.
fn day_ends() -> i64 {
    let now = chrono::Utc::now().timestamp();
    (now.div_euclid(86_400) + 1) * 86_400
}

impl WriteQuota {
    /// The quotas of plugin `plugin` (`label` is its `id@version`).
    pub fn new(plugin: &str, label: &str, limits: &Limits) -> WriteQuota {
        WriteQuota {
            plugin: plugin.to_string(),
            label: label.to_string(),
            per_run: limits.writes_per_run(),
            per_day: limits.writes_per_day(),
            used: 0,
            held: 0,
            day: today(),
            day_ends: day_ends(),
            reached: None,
            jobs_left: limits.jobs_per_run(),
            jobs_per_run: limits.jobs_per_run(),
        }
    }

    /// Takes one of the jobs the run may schedule; `limit` past its
    /// fan-out (`limits.jobs_per_run`).
    pub fn take_job(&mut self) -> Result<(), CallError> {
        if self.jobs_left == 0 {
            return Err(self.reach(
                format!("jobs_per_run {}", self.jobs_per_run),
                format!(
                    "{} scheduled its {} jobs for this run (limits.jobs_per_run)",
                    self.label, self.jobs_per_run
                ),
            ));
        }
        self.jobs_left -= 1;
        Ok(())
    }

    /// Takes one write from what the run already holds, without touching
    /// the store: false when the store must be asked ([`WriteQuota::take`]),
    /// which is once per block.
    pub fn take_held(&mut self) -> bool {
        let ok = self.held > 0
            && self.used < self.per_run
            && chrono::Utc::now().timestamp() < self.day_ends;
        if ok {
            self.held -= 1;
            self.used += 1;
        }
        ok
    }

    /// Takes one write, inside the caller's write transaction; `limit` once
    /// a quota is reached.
    pub fn take(&mut self, conn: &Connection) -> Result<(), CallError> {
        if self.used >= self.per_run {
            return Err(self.reach(
                format!("writes_per_run {}", self.per_run),
                format!(
                    "{} made its {} writes for this run (limits.writes_per_run); the rest waits for its next run",
                    self.label, self.per_run
                ),
            ));
        }
        let day = today();
        if day != self.day {
            // What was held for yesterday stays counted there.
            self.day = day;
            self.day_ends = day_ends();
            self.held = 0;
        }
        if self.held == 0 {
            self.held = self.take_block(conn)?;
            if self.held == 0 {
                return Err(self.reach(
                    format!("writes_per_day {}", self.per_day),
                    format!(
                        "{} made its {} writes for today (limits.writes_per_day); it may write again after 00:00 UTC",
                        self.label, self.per_day
                    ),
                ));
            }
        }
        self.held -= 1;
        self.used += 1;
        Ok(())
    }

    /// Returns a write taken for a call that then wrote nothing.
    pub fn refund(&mut self) {
        if self.used > 0 {
            self.used -= 1;
            self.held += 1;
        }
    }

    /// Gives back to the day's quota what the run took and did not use.
    pub fn give_back(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        if self.held > 0 {
            conn.prepare_cached(
                "UPDATE write_quota SET used = max(used - ?3, 0) WHERE plugin = ?1 AND day = ?2",
            )?
            .execute(params![
                self.plugin,
                self.day,
                i64::try_from(self.held).unwrap_or(i64::MAX)
            ])?;
            self.held = 0;
        }
        Ok(())
    }

    /// The quota the run reached, if any.
    pub fn reached(&self) -> Option<&str> {
        self.reached.as_deref()
    }

    /// Writes the run made.
    pub fn used(&self) -> u64 {
        self.used
    }

    fn reach(&mut self, quota: String, message: String) -> CallError {
        self.reached.get_or_insert(quota);
        CallError::Limit(message)
    }

    /// Takes up to a block from today's quota; 0 when it is spent.
    fn take_block(&self, conn: &Connection) -> Result<u64, CallError> {
        let used: i64 = conn
            .prepare_cached("SELECT used FROM write_quota WHERE plugin = ?1 AND day = ?2")?
            .query_row(params![self.plugin, self.day], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        let used = u64::try_from(used).unwrap_or(0);
        let block = BLOCK.min(self.per_day.saturating_sub(used));
        if block > 0 {
            conn.prepare_cached(
                "INSERT INTO write_quota (plugin, day, used) VALUES (?1, ?2, ?3)
                 ON CONFLICT (plugin, day) DO UPDATE SET used = used + excluded.used",
            )?
            .execute(params![
                self.plugin,
                self.day,
                i64::try_from(block).unwrap_or(i64::MAX)
            ])?;
        }
        Ok(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn limits(per_run: u64, per_day: u64) -> Limits {
        Limits {
            writes_per_run: Some(per_run),
            writes_per_day: Some(per_day),
            ..Limits::default()
        }
    }

    fn take(store: &mut Store, q: &mut WriteQuota) -> Result<(), CallError> {
        store.in_call(|conn| q.take(conn))
    }

    #[test]
    fn a_run_stops_at_its_quota_and_names_it() {
        let mut store = Store::open_in_memory().unwrap();
        let mut q = WriteQuota::new("p", "p@1.0.0", &limits(3, 100));
        for _ in 0..3 {
            take(&mut store, &mut q).unwrap();
        }
        let err = take(&mut store, &mut q).unwrap_err();
        assert_eq!(
            err,
            CallError::Limit(
                "p@1.0.0 made its 3 writes for this run (limits.writes_per_run); the rest waits for its next run".into()
            )
        );
        assert_eq!(q.reached(), Some("writes_per_run 3"));
        // A refunded write can be taken again.
        q.refund();
        take(&mut store, &mut q).unwrap();
    }

    #[test]
    fn concurrent_runs_share_the_days_quota_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keel.db");
        let mut a = Store::open(&path).unwrap();
        let mut b = Store::open(&path).unwrap();
        let l = limits(u64::MAX / 2, 2500);
        let (mut qa, mut qb) = (
            WriteQuota::new("p", "p@1", &l),
            WriteQuota::new("p", "p@1", &l),
        );
        let mut made = 0;
        // Interleaved, as two workers would be.
        for _ in 0..2000 {
            for (store, q) in [(&mut a, &mut qa), (&mut b, &mut qb)] {
                if take(store, q).is_ok() {
                    made += 1;
                }
            }
        }
        assert_eq!(made, 2500);
        assert_eq!(qa.reached(), Some("writes_per_day 2500"));
        // What one run held and did not use goes back to the day.
        let mut c = WriteQuota::new("p", "p@1", &l);
        assert!(take(&mut a, &mut c).is_err());
        let mut fresh = WriteQuota::new("q", "q@1", &limits(10, 1500));
        take(&mut a, &mut fresh).unwrap();
        a.in_call(|conn| Ok(fresh.give_back(conn)?)).unwrap();
        let used: i64 = a
            .conn()
            .query_row("SELECT used FROM write_quota WHERE plugin = 'q'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(used, 1);
    }
}
