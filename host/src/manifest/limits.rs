//! `[limits]`: what one run of the plugin may use, how its jobs are
//! retried and paced, and how much it may write.

use serde::{Deserialize, Serialize};

/// Upper bounds an operator never has to think about: a manifest asking for
/// more is refused at install.
pub const MAX_MEMORY_MB: u64 = 4096;
/// Longest wall-clock deadline a run may ask for (ten minutes).
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// Most fuel a run may ask for: about ten minutes of compute, the longest
/// deadline.
pub const MAX_FUEL: u64 = 1_000_000_000_000;
/// Writes one run may make unless its manifest says otherwise: enough for a
/// connector's first sync of a large source in one run.
pub const DEFAULT_WRITES_PER_RUN: u64 = 250_000;
/// Writes a plugin may make per UTC day unless its manifest says otherwise.
pub const DEFAULT_WRITES_PER_DAY: u64 = 1_000_000;
/// Most writes per run or per day a manifest may ask for.
pub const MAX_WRITES: u64 = 100_000_000;
/// Jobs one run may schedule unless its manifest says otherwise.
pub const DEFAULT_JOBS_PER_RUN: u64 = 1000;
/// Most jobs per run a manifest may ask for.
pub const MAX_JOBS_PER_RUN: u64 = 100_000;

/// Failures a manifest may declare worth retrying (`limits.retry_on`).
pub const RETRYABLE: &[&str] = &[
    "trap",
    "fuel",
    "memory",
    "denied",
    "not-found",
    "conflict",
    "invalid",
    "limit",
    "internal",
];

/// Most attempts a job may get (`limits.attempts`).
pub const MAX_ATTEMPTS: u32 = 20;

/// Per-run limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    #[serde(default = "default_fuel")]
    pub fuel: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Failures retried beyond the transient ones (`unavailable`, a missed
    /// deadline): outcomes `trap`, `fuel`, `memory`, or error variants
    /// `denied`, `not-found`, `conflict`, `invalid`, `limit`, `internal`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_on: Vec<String>,
    /// Attempts a job of this plugin gets before it is dead-lettered
    /// (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Runs of this plugin at once under `keel up`, across all workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Runs started under `keel up` per unit of time, `"N/s"`, `"N/m"`,
    /// `"N/h"` or `"N/d"`: a token bucket holding N.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// Record writes (creates, updates, links, schedules, sends, memories,
    /// task ends) one run may make; past it every write is refused with
    /// `limit` and the run goes up for review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes_per_run: Option<u64>,
    /// The same, per UTC day across all the plugin's runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes_per_day: Option<u64>,
    /// Jobs one run may `schedule` (its fan-out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs_per_run: Option<u64>,
}

impl Limits {
    /// Writes one run may make.
    pub fn writes_per_run(&self) -> u64 {
        self.writes_per_run.unwrap_or(DEFAULT_WRITES_PER_RUN)
    }

    /// Writes the plugin may make per UTC day.
    pub fn writes_per_day(&self) -> u64 {
        self.writes_per_day.unwrap_or(DEFAULT_WRITES_PER_DAY)
    }

    /// Jobs one run may schedule.
    pub fn jobs_per_run(&self) -> u64 {
        self.jobs_per_run.unwrap_or(DEFAULT_JOBS_PER_RUN)
    }
}

/// A parsed `limits.rate`: `per` runs every `every`, in bursts of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub per: u32,
    pub every_secs: u64,
}

impl Rate {
    /// Tokens added per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.per) / self.every_secs.max(1) as f64
    }

    /// The slower of two rates.
    pub fn min(self, other: Rate) -> Rate {
        if other.per_second() < self.per_second() {
            other
        } else {
            self
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.every_secs {
            1 => "s",
            60 => "m",
            3600 => "h",
            _ => "d",
        };
        write!(f, "{}/{unit}", self.per)
    }
}

/// Parses `30/m`, `5/s`, `100/h`, `1000/d`.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let bad = || {
        format!(
            "rate `{text}` is not a rate; write runs per unit, like \"30/m\", \"5/s\", \"100/h\" or \"1000/d\""
        )
    };
    let (n, unit) = text.split_once('/').ok_or_else(bad)?;
    let per: u32 = n.trim().parse().map_err(|_| bad())?;
    let every_secs = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if per == 0 {
        return Err(bad());
    }
    Ok(Rate { per, every_secs })
}

fn default_memory_mb() -> u64 {
    64
}
fn default_fuel() -> u64 {
    10_000_000_000
}
fn default_timeout_ms() -> u64 {
    30_000
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: default_memory_mb(),
            fuel: default_fuel(),
            timeout_ms: default_timeout_ms(),
            retry_on: Vec::new(),
            attempts: None,
            concurrency: None,
            rate: None,
            writes_per_run: None,
            writes_per_day: None,
            jobs_per_run: None,
        }
    }
}

impl Limits {
    /// Checks every limit is within keel's bounds.
    pub(super) fn validate(&self) -> Result<(), String> {
        let l = self;
        if l.memory_mb == 0 || l.memory_mb > MAX_MEMORY_MB {
            return Err(format!(
                "limits.memory_mb must be between 1 and {MAX_MEMORY_MB}"
            ));
        }
        if l.fuel == 0 || l.fuel > MAX_FUEL {
            return Err(format!("limits.fuel must be between 1 and {MAX_FUEL}"));
        }
        for (name, writes) in [
            ("writes_per_run", l.writes_per_run),
            ("writes_per_day", l.writes_per_day),
        ] {
            if writes.is_some_and(|w| w == 0 || w > MAX_WRITES) {
                return Err(format!("limits.{name} must be between 1 and {MAX_WRITES}"));
            }
        }
        if l.jobs_per_run
            .is_some_and(|j| j == 0 || j > MAX_JOBS_PER_RUN)
        {
            return Err(format!(
                "limits.jobs_per_run must be between 1 and {MAX_JOBS_PER_RUN}"
            ));
        }
        if l.timeout_ms == 0 || l.timeout_ms > MAX_TIMEOUT_MS {
            return Err(format!(
                "limits.timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"
            ));
        }
        self.validate_retries()
    }

    /// `retry_on`, `attempts`, `concurrency` and `rate`.
    fn validate_retries(&self) -> Result<(), String> {
        let l = self;
        for kind in &l.retry_on {
            if !RETRYABLE.contains(&kind.as_str()) {
                return Err(format!(
                    "limits.retry_on: `{kind}` is not a failure keel can retry; use {}",
                    RETRYABLE.join(", ")
                ));
            }
        }
        if l.attempts.is_some_and(|a| a == 0 || a > MAX_ATTEMPTS) {
            return Err(format!(
                "limits.attempts must be between 1 and {MAX_ATTEMPTS}"
            ));
        }
        if l.concurrency == Some(0) {
            return Err("limits.concurrency must be at least 1".into());
        }
        if let Some(rate) = &l.rate {
            parse_rate(rate).map_err(|e| format!("limits.{e}"))?;
        }
        Ok(())
    }
}
