//! `[[triggers]]`: when `keel up` runs the plugin besides `keel run`. A
//! trigger is written as a table of options ([`TriggerSpec`], the stored
//! form) and read as a [`Trigger`].

use serde::{Deserialize, Serialize};

use super::{kind_matches, valid_id, valid_kind_pattern};

/// One `[[triggers]]` entry: `every = "15m"` (a time trigger) or
/// `on = "record.created"` with `kinds` (an event trigger).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// An interval: a number and `s`, `m`, `h` or `d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// A cron expression (`minute hour day month weekday`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The time zone `cron` is read in (IANA name); UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// An event name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
    /// For record events: the record kinds (exact or `prefix/*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// A webhook name: `keel up --listen` accepts authenticated POSTs at
    /// `/hooks/<plugin>/<name>` and runs the plugin with the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// For a webhook: the largest body accepted (default and most: 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

/// The largest webhook body keel accepts.
pub const MAX_WEBHOOK_BYTES: u64 = 1024 * 1024;

/// Events a trigger may subscribe to.
pub const EVENTS: &[&str] = &[
    "record.created",
    "record.updated",
    "link.created",
    "job.scheduled",
    "send.queued",
    "send.needs-review",
    "send.approved",
    "send.rejected",
    "send.delivered",
    "run.failed",
];

/// Shortest interval a time trigger may ask for.
pub const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// A parsed cron schedule and the time zone it is read in.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: croner::Cron,
    tz: chrono_tz::Tz,
}

impl CronSchedule {
    /// The first firing strictly after `after`.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let local = after.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }
}

/// Parses a cron expression and an optional IANA time zone.
pub fn parse_cron(expr: &str, tz: Option<&str>) -> Result<CronSchedule, String> {
    let cron: croner::Cron = expr.parse().map_err(|e| {
        format!("cron = \"{expr}\" is not a cron expression ({e}); write e.g. \"0 7 * * MON-FRI\"")
    })?;
    let tz = match tz {
        None => chrono_tz::UTC,
        Some(name) => name.parse().map_err(|_| {
            format!("tz = \"{name}\" is not a time zone; use an IANA name like \"Europe/Brussels\"")
        })?,
    };
    Ok(CronSchedule { cron, tz })
}

/// Parses `30s`, `15m`, `2h`, `1d`.
pub fn parse_interval(text: &str) -> Option<std::time::Duration> {
    let split = text.len().checked_sub(1)?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(secs))
}

/// What one `[[triggers]]` entry is, once its manifest is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger<'a> {
    /// `every = "15m"`: an interval.
    Every(&'a str),
    /// `cron = "0 9 * * 1-5"`, read in `tz` (UTC when absent).
    Cron { expr: &'a str, tz: Option<&'a str> },
    /// `on = "record.created"`: an event, with the record kinds it wakes on.
    On { event: &'a str, kinds: &'a [String] },
    /// `webhook = "name"`: authenticated POSTs at `/hooks/<plugin>/<name>`.
    Webhook {
        name: &'a str,
        max_bytes: Option<u64>,
    },
}

impl TriggerSpec {
    /// Which trigger this entry is; `None` when it gives none or several
    /// (which validation refuses).
    pub fn trigger(&self) -> Option<Trigger<'_>> {
        match (&self.every, &self.cron, &self.on, &self.webhook) {
            (Some(every), None, None, None) => Some(Trigger::Every(every)),
            (None, Some(expr), None, None) => Some(Trigger::Cron {
                expr,
                tz: self.tz.as_deref(),
            }),
            (None, None, Some(event), None) => Some(Trigger::On {
                event,
                kinds: &self.kinds,
            }),
            (None, None, None, Some(name)) => Some(Trigger::Webhook {
                name,
                max_bytes: self.max_bytes,
            }),
            _ => None,
        }
    }
}

const ONE_OF: &str = "give exactly one of `every` (an interval), `cron` (a schedule), `on` (an event) or `webhook` (a name)";

/// Checks every trigger; `read` is what the plugin may read (an event
/// trigger's kinds must be among it).
pub(super) fn validate(triggers: &[TriggerSpec], read: &[String]) -> Result<(), String> {
    for (i, t) in triggers.iter().enumerate() {
        let n = i + 1;
        if t.tz.is_some() && t.cron.is_none() {
            return Err(format!("triggers #{n}: `tz` only goes with `cron`"));
        }
        if let Some(hook) = &t.webhook {
            validate_webhook(n, t, hook, &triggers[..i])?;
            continue;
        }
        if t.max_bytes.is_some() {
            return Err(format!(
                "triggers #{n}: `max_bytes` only goes with `webhook`"
            ));
        }
        match t.trigger() {
            Some(Trigger::Cron { expr, tz }) => {
                parse_cron(expr, tz).map_err(|e| format!("triggers #{n}: {e}"))?;
            }
            Some(Trigger::Every(every)) => {
                if parse_interval(every).is_none_or(|d| d < MIN_INTERVAL) {
                    return Err(format!(
                        "triggers #{n}: every = \"{every}\" is not an interval of at least 1s; write e.g. \"30s\", \"15m\", \"2h\" or \"1d\""
                    ));
                }
                if !t.kinds.is_empty() {
                    return Err(format!("triggers #{n}: `kinds` only goes with `on`"));
                }
            }
            Some(Trigger::On { event, kinds }) => validate_event(n, event, kinds, read)?,
            Some(Trigger::Webhook { .. }) | None => {
                return Err(format!("triggers #{n}: {ONE_OF}"));
            }
        }
    }
    Ok(())
}

/// Trigger `n`, a webhook named `hook`, after the `earlier` triggers.
fn validate_webhook(
    n: usize,
    t: &TriggerSpec,
    hook: &str,
    earlier: &[TriggerSpec],
) -> Result<(), String> {
    if t.every.is_some() || t.cron.is_some() || t.on.is_some() || !t.kinds.is_empty() {
        return Err(format!("triggers #{n}: {ONE_OF}"));
    }
    if !valid_id(hook) {
        return Err(format!(
            "triggers #{n}: webhook name `{hook}` must be a-z, 0-9 and `-`, starting with a letter"
        ));
    }
    if earlier.iter().any(|o| o.webhook.as_deref() == Some(hook)) {
        return Err(format!("triggers #{n}: webhook `{hook}` is declared twice"));
    }
    if t.max_bytes.is_some_and(|b| b == 0 || b > MAX_WEBHOOK_BYTES) {
        return Err(format!(
            "triggers #{n}: max_bytes must be between 1 and {MAX_WEBHOOK_BYTES}"
        ));
    }
    Ok(())
}

/// Trigger `n`, on event `on` for record `kinds`.
fn validate_event(n: usize, on: &str, kinds: &[String], read: &[String]) -> Result<(), String> {
    if !EVENTS.contains(&on) {
        return Err(format!(
            "triggers #{n}: unknown event `{on}`; known events are {}",
            EVENTS.join(", ")
        ));
    }
    if on.starts_with("record.") && kinds.is_empty() {
        return Err(format!(
            "triggers #{n}: `on = \"{on}\"` needs `kinds`, the record kinds to wake on"
        ));
    }
    for kind in kinds {
        if !valid_kind_pattern(kind) {
            return Err(format!(
                "triggers #{n}: record kind `{kind}` must look like `namespace/name` or `namespace/*`"
            ));
        }
        if !kind_matches(read, kind.trim_end_matches("/*")) && !read.contains(kind) {
            return Err(format!(
                "triggers #{n}: wakes on `{kind}` records, which capabilities.read does not include; add it there"
            ));
        }
    }
    Ok(())
}
