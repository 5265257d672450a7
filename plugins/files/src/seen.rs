//! What the connector keeps per file in its sync state: the sha256 of the
//! contents it last ingested, with the size and modification time it had
//! then, so an unchanged file is recognised without being read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A file's state, as `SHA256 SIZE MTIME_NS` (`-` for a time not to be
/// trusted).
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub sha256: String,
    pub size: u64,
    /// None when the file changed too recently for its time to tell a
    /// later change apart (it is read again next time).
    pub mtime_ns: Option<u128>,
}

/// How close to the sync's start a modification time must not be for it
/// to vouch for the contents: a file written again within the same clock
/// tick keeps its time.
const RACY: Duration = Duration::from_secs(2);

impl Seen {
    /// The state of a file with `sha256` and `size`, modified at `mtime`,
    /// seen by a sync that started at `now`.
    pub fn new(sha256: String, size: u64, mtime: Option<SystemTime>, now: SystemTime) -> Seen {
        let trusted = mtime.filter(|m| now.duration_since(*m).is_ok_and(|age| age >= RACY));
        Seen {
            sha256,
            size,
            mtime_ns: trusted.and_then(nanos),
        }
    }

    /// Parses a stored value; None for one this version does not read.
    pub fn parse(value: &str) -> Option<Seen> {
        let mut parts = value.split(' ');
        let sha256 = parts.next()?.to_string();
        let size = parts.next()?.parse().ok()?;
        let mtime_ns = match parts.next()? {
            "-" => None,
            t => Some(t.parse().ok()?),
        };
        Some(Seen {
            sha256,
            size,
            mtime_ns,
        })
    }

    /// The stored value.
    pub fn value(&self) -> String {
        match self.mtime_ns {
            Some(t) => format!("{} {} {t}", self.sha256, self.size),
            None => format!("{} {} -", self.sha256, self.size),
        }
    }

    /// Whether a file of `size` modified at `mtime` is, without reading
    /// it, the one this state describes.
    pub fn matches(&self, size: u64, mtime: Option<SystemTime>) -> bool {
        self.size == size && self.mtime_ns.is_some() && self.mtime_ns == mtime.and_then(nanos)
    }
}

fn nanos(t: SystemTime) -> Option<u128> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_round_trips_and_only_an_old_time_vouches() {
        let now = SystemTime::now();
        let old = now - Duration::from_secs(60);
        let seen = Seen::new("ab".into(), 7, Some(old), now);
        assert_eq!(Seen::parse(&seen.value()), Some(seen.clone()));
        assert!(seen.matches(7, Some(old)));
        assert!(!seen.matches(8, Some(old)));
        assert!(!seen.matches(7, Some(old + Duration::from_nanos(1))));
        let fresh = Seen::new("ab".into(), 7, Some(now), now);
        assert_eq!(fresh.value(), "ab 7 -");
        assert!(!fresh.matches(7, Some(now)), "a racy time is read again");
        assert_eq!(Seen::parse("garbage"), None);
    }
}
