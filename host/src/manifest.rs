//! The plugin manifest, `keel.toml`: who the plugin is, what it asks for
//! (capabilities) and the limits it runs under.

use std::collections::BTreeMap;
use std::path::Path;

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

/// The core actions a manifest may ask for.
pub const CORE_ACTIONS: &[&str] = &[
    "create", "update", "link", "schedule", "send", "claim", "complete",
];

/// A parsed and validated `keel.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub plugin: PluginInfo,
    #[serde(default)]
    pub capabilities: Capabilities,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub policy: Policy,
    /// When `keel up` runs the plugin besides `keel run`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<TriggerSpec>,
    /// For a `channel` plugin: the channels it delivers for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelSpec>,
    /// For a `provider` plugin: the actions it offers to other plugins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provides: Vec<ProvidedAction>,
}

/// One `[[provides]]` entry: an action a provider offers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProvidedAction {
    /// Short name; others call it as `<plugin>/<name>`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The JSON Schema its input must match (a TOML table).
    pub input: serde_json::Value,
    /// What it does with the provider's grant, for the operator: core
    /// actions and record kinds from the provider's capabilities.
    #[serde(default)]
    pub needs: Vec<String>,
}

/// The `[channel]` table of a channel plugin.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// Channel names (what senders pass to `send`), e.g. `["email"]`.
    pub serves: Vec<String>,
}

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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginInfo {
    pub id: String,
    pub version: String,
    pub world: World,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Path of the component, relative to the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
}

/// Which WIT world the component implements.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    Connector,
    Agent,
    Channel,
    Provider,
}

impl World {
    pub fn as_str(self) -> &'static str {
        match self {
            World::Connector => "connector",
            World::Agent => "agent",
            World::Channel => "channel",
            World::Provider => "provider",
        }
    }
}

/// What a plugin asks for. Everything absent is denied.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Record kinds it may read (exact, or `prefix/*`).
    #[serde(default)]
    pub read: Vec<String>,
    /// Record kinds it may create and update.
    #[serde(default)]
    pub write: Vec<String>,
    /// Core actions it may call.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Channels it may send through.
    #[serde(default)]
    pub send: Vec<String>,
    /// Plugins it may schedule.
    #[serde(default)]
    pub schedule: Vec<String>,
    /// Config keys it may read.
    #[serde(default)]
    pub config: Vec<String>,
    /// Directories by logical name; the operator binds each at install.
    #[serde(default)]
    pub dirs: BTreeMap<String, DirAccess>,
    /// Actions of provider plugins it may call: `<plugin>/<action>`, or
    /// `<plugin>/*` for all of one provider's.
    #[serde(default)]
    pub invoke: Vec<String>,
    /// Models through the host: tiers, embeddings, a daily token budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmCapability>,
    /// Working and long-term memory (`memory = true`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub memory: bool,
    /// Also recall the memories other plugins remembered without naming a
    /// source record (otherwise only its own such memories are visible).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared_memory: bool,
    /// Identity sources it may claim besides its own (its id, and
    /// `<id>:<name>`), e.g. `["email"]` for a source two plugins share.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<String>,
}

/// `llm = { tiers = ["small"], embed = true, tokens_per_day = 50000 }`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LlmCapability {
    /// `small` and/or `large`.
    #[serde(default)]
    pub tiers: Vec<LlmTier>,
    /// May ask for embeddings.
    #[serde(default)]
    pub embed: bool,
    /// Tokens (in + out) per UTC day; none for no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LlmTier {
    Small,
    Large,
}

impl LlmTier {
    pub fn as_str(self) -> &'static str {
        match self {
            LlmTier::Small => "small",
            LlmTier::Large => "large",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DirAccess {
    Read,
    ReadWrite,
}

impl DirAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            DirAccess::Read => "read",
            DirAccess::ReadWrite => "read-write",
        }
    }
}

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

/// What the plugin proposes for how the host treats what it produces. The
/// operator owns the review gate (kept in the grant, see [`ReviewGate`]);
/// a manifest can only make it stricter.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Sends and writes with a confidence below this wait for review, on
    /// top of the operator's gate. 0.0 (the default) proposes nothing.
    #[serde(default)]
    pub review_below: f32,
}

impl Policy {
    /// The gate in force: the operator's, or the manifest's proposal where
    /// that is stricter (a plugin may ask to be watched more, never less).
    pub fn under(&self, operator: ReviewGate) -> ReviewGate {
        operator.stricter(ReviewGate::Below(self.review_below))
    }
}

/// The operator's review gate for one plugin: which of its sends wait for
/// the operator, and which of its writes are flagged as unsure.
///
/// `All` (the default for every new install, and for grants stored before
/// the gate existed) holds every send whatever its confidence, `1.0`
/// included, and flags every write whose confidence is below 1.0.
/// `Below(t)` holds a send whose confidence is below `t` or missing, and
/// flags a write whose confidence is below `t`; `Below(0.0)` lets every
/// send that states a confidence go out. A write without a confidence makes
/// no claim and is never flagged.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "GateRepr", into = "GateRepr")]
pub enum ReviewGate {
    #[default]
    All,
    Below(f32),
}

/// How a [`ReviewGate`] is written: `"all"` or a number in 0.0..=1.0.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum GateRepr {
    Word(String),
    Number(f64),
}

/// `t` as the f64 it reads as (0.8, not 0.800000011920929), for JSON
/// written through `serde_json::Value`, which widens an f32.
pub fn as_written(t: f32) -> f64 {
    t.to_string().parse().unwrap_or(f64::from(t))
}

impl From<ReviewGate> for GateRepr {
    fn from(g: ReviewGate) -> Self {
        match g {
            ReviewGate::All => GateRepr::Word("all".into()),
            ReviewGate::Below(t) => GateRepr::Number(as_written(t)),
        }
    }
}

impl TryFrom<GateRepr> for ReviewGate {
    type Error = String;
    fn try_from(r: GateRepr) -> Result<Self, String> {
        match r {
            GateRepr::Word(w) => w.parse(),
            // Thresholds are written from an f32 (or typed by hand in
            // 0.0..=1.0, checked after narrowing).
            GateRepr::Number(t) => ReviewGate::below(t as f32),
        }
    }
}

impl ReviewGate {
    /// `Below(t)`, refused outside 0.0..=1.0.
    pub fn below(t: f32) -> Result<ReviewGate, String> {
        if (0.0..=1.0).contains(&t) {
            Ok(ReviewGate::Below(t))
        } else {
            Err(format!(
                "review gate {t} is outside 0.0..=1.0; give a confidence between 0.0 and 1.0, or `all`"
            ))
        }
    }

    /// The stricter of two gates: `All`, else the higher threshold.
    pub fn stricter(self, other: ReviewGate) -> ReviewGate {
        match (self, other) {
            (ReviewGate::Below(a), ReviewGate::Below(b)) => ReviewGate::Below(a.max(b)),
            _ => ReviewGate::All,
        }
    }

    /// Whether a send with this confidence waits for the operator.
    pub fn holds_send(self, confidence: Option<f32>) -> bool {
        match (self, confidence) {
            (ReviewGate::All, _) | (_, None) => true,
            (ReviewGate::Below(t), Some(c)) => c < t,
        }
    }

    /// Whether a write with this confidence is flagged for review.
    pub fn flags_write(self, confidence: Option<f32>) -> bool {
        let threshold = match self {
            ReviewGate::All => 1.0,
            ReviewGate::Below(t) => t,
        };
        confidence.is_some_and(|c| c < threshold)
    }
}

impl std::str::FromStr for ReviewGate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(ReviewGate::All);
        }
        let t: f32 = s.parse().map_err(|_| {
            format!(
                "review gate `{s}` is not a number; give a confidence between 0.0 and 1.0, or `all`"
            )
        })?;
        ReviewGate::below(t)
    }
}

/// As `--review-below` takes it: `all` or the threshold.
impl std::fmt::Display for ReviewGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReviewGate::All => f.write_str("all"),
            ReviewGate::Below(t) => write!(f, "{t}"),
        }
    }
}

impl ReviewGate {
    /// The gate in words, for consent and `keel plugin policy`.
    pub fn describe(&self) -> String {
        match self {
            ReviewGate::All => "every send waits for review".into(),
            ReviewGate::Below(t) => {
                format!("sends below confidence {t} (or without one) wait for review")
            }
        }
    }
}

/// A manifest that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Manifest {
    /// Reads and validates `keel.toml` at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Manifest::parse(&text, &path.display().to_string())
    }

    /// Parses and validates manifest text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0).min(text.len());
            // toml's message repeats the snippet over several lines; the first
            // line plus our own location is what an operator needs.
            let message = e.message().lines().next().unwrap_or("invalid TOML");
            ManifestError::Syntax {
                path: origin.to_string(),
                line: text[..offset].matches('\n').count() + 1,
                message: message.to_string(),
            }
        })?;
        manifest
            .validate()
            .map_err(|message| ManifestError::Invalid {
                path: origin.to_string(),
                message,
            })?;
        Ok(manifest)
    }

    /// `id@version`, the name used in errors, provenance and audit.
    pub fn label(&self) -> String {
        format!("{}@{}", self.plugin.id, self.plugin.version)
    }

    fn validate(&self) -> Result<(), String> {
        let p = &self.plugin;
        if !valid_id(&p.id) {
            return Err(format!(
                "plugin.id `{}` must be 1-64 characters of a-z, 0-9 and `-`, starting with a letter",
                p.id
            ));
        }
        if !valid_version(&p.version) {
            return Err(format!(
                "plugin.version `{}` must be a semantic version like `0.1.0`",
                p.version
            ));
        }
        let caps = &self.capabilities;
        for kind in caps.read.iter().chain(&caps.write) {
            if !valid_kind_pattern(kind) {
                return Err(format!(
                    "capabilities: record kind `{kind}` must look like `namespace/name` or `namespace/*`"
                ));
            }
        }
        for action in &caps.actions {
            if !CORE_ACTIONS.contains(&action.as_str()) {
                return Err(format!(
                    "capabilities.actions: unknown action `{action}`; known actions are {}",
                    CORE_ACTIONS.join(", ")
                ));
            }
        }
        if !caps.send.is_empty() && !caps.actions.iter().any(|a| a == "send") {
            return Err("capabilities.send lists channels but `send` is not in capabilities.actions; add it".into());
        }
        if !caps.schedule.is_empty() && !caps.actions.iter().any(|a| a == "schedule") {
            return Err("capabilities.schedule lists plugins but `schedule` is not in capabilities.actions; add it".into());
        }
        for name in caps.dirs.keys() {
            if !valid_id(name) {
                return Err(format!(
                    "capabilities.dirs: directory name `{name}` must be a-z, 0-9 and `-`, starting with a letter"
                ));
            }
        }
        let l = &self.limits;
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
        for (i, t) in self.triggers.iter().enumerate() {
            let n = i + 1;
            if t.tz.is_some() && t.cron.is_none() {
                return Err(format!("triggers #{n}: `tz` only goes with `cron`"));
            }
            if let Some(hook) = &t.webhook {
                if t.every.is_some() || t.cron.is_some() || t.on.is_some() || !t.kinds.is_empty() {
                    return Err(format!(
                        "triggers #{n}: give exactly one of `every` (an interval), `cron` (a schedule), `on` (an event) or `webhook` (a name)"
                    ));
                }
                if !valid_id(hook) {
                    return Err(format!(
                        "triggers #{n}: webhook name `{hook}` must be a-z, 0-9 and `-`, starting with a letter"
                    ));
                }
                let same = self.triggers[..i]
                    .iter()
                    .any(|o| o.webhook.as_deref() == Some(hook));
                if same {
                    return Err(format!("triggers #{n}: webhook `{hook}` is declared twice"));
                }
                if t.max_bytes.is_some_and(|b| b == 0 || b > MAX_WEBHOOK_BYTES) {
                    return Err(format!(
                        "triggers #{n}: max_bytes must be between 1 and {MAX_WEBHOOK_BYTES}"
                    ));
                }
                continue;
            }
            if t.max_bytes.is_some() {
                return Err(format!(
                    "triggers #{n}: `max_bytes` only goes with `webhook`"
                ));
            }
            match (&t.every, &t.cron, &t.on) {
                (None, Some(cron), None) => {
                    parse_cron(cron, t.tz.as_deref()).map_err(|e| format!("triggers #{n}: {e}"))?;
                }
                (Some(every), None, None) => {
                    if parse_interval(every).is_none_or(|d| d < MIN_INTERVAL) {
                        return Err(format!(
                            "triggers #{n}: every = \"{every}\" is not an interval of at least 1s; write e.g. \"30s\", \"15m\", \"2h\" or \"1d\""
                        ));
                    }
                    if !t.kinds.is_empty() {
                        return Err(format!("triggers #{n}: `kinds` only goes with `on`"));
                    }
                }
                (None, None, Some(on)) => {
                    if !EVENTS.contains(&on.as_str()) {
                        return Err(format!(
                            "triggers #{n}: unknown event `{on}`; known events are {}",
                            EVENTS.join(", ")
                        ));
                    }
                    let record_event = on.starts_with("record.");
                    if record_event && t.kinds.is_empty() {
                        return Err(format!(
                            "triggers #{n}: `on = \"{on}\"` needs `kinds`, the record kinds to wake on"
                        ));
                    }
                    for kind in &t.kinds {
                        if !valid_kind_pattern(kind) {
                            return Err(format!(
                                "triggers #{n}: record kind `{kind}` must look like `namespace/name` or `namespace/*`"
                            ));
                        }
                        if !kind_matches(&self.capabilities.read, kind.trim_end_matches("/*"))
                            && !self.capabilities.read.contains(kind)
                        {
                            return Err(format!(
                                "triggers #{n}: wakes on `{kind}` records, which capabilities.read does not include; add it there"
                            ));
                        }
                    }
                }
                _ => {
                    return Err(format!(
                        "triggers #{n}: give exactly one of `every` (an interval), `cron` (a schedule), `on` (an event) or `webhook` (a name)"
                    ));
                }
            }
        }
        match (p.world, &self.channel) {
            (World::Channel, None) => {
                return Err("a channel plugin needs a [channel] table with `serves`, the channels it delivers for, e.g. serves = [\"email\"]".into());
            }
            (World::Channel, Some(c)) => {
                if c.serves.is_empty() {
                    return Err("channel.serves is empty; name the channels this plugin delivers for, e.g. serves = [\"email\"]".into());
                }
                for name in &c.serves {
                    if !valid_id(name) {
                        return Err(format!(
                            "channel.serves: channel name `{name}` must be a-z, 0-9 and `-`, starting with a letter"
                        ));
                    }
                }
            }
            (_, Some(_)) => {
                return Err(format!(
                    "[channel] only goes with plugin.world = \"channel\"; this plugin's world is {}",
                    p.world.as_str()
                ));
            }
            (_, None) => {}
        }
        match (p.world, self.provides.is_empty()) {
            (World::Provider, true) => {
                return Err("a provider plugin needs at least one [[provides]] action (name, description, input schema)".into());
            }
            (World::Provider, false) => {
                for (i, a) in self.provides.iter().enumerate() {
                    let n = i + 1;
                    if !valid_id(&a.name) {
                        return Err(format!(
                            "provides #{n}: action name `{}` must be a-z, 0-9 and `-`, starting with a letter",
                            a.name
                        ));
                    }
                    if self.provides[..i].iter().any(|o| o.name == a.name) {
                        return Err(format!(
                            "provides #{n}: action `{}` is declared twice",
                            a.name
                        ));
                    }
                    jsonschema::validator_for(&a.input).map_err(|e| {
                        format!(
                            "provides #{n}: `input` of `{}` is not a JSON Schema: {e}",
                            a.name
                        )
                    })?;
                    for need in &a.needs {
                        let granted = caps.actions.contains(need)
                            || kind_matches(&caps.read, need)
                            || kind_matches(&caps.write, need);
                        if !granted {
                            return Err(format!(
                                "provides #{n}: `{}` needs `{need}`, which capabilities do not include; add it there",
                                a.name
                            ));
                        }
                    }
                }
            }
            (_, false) => {
                return Err(format!(
                    "[[provides]] only goes with plugin.world = \"provider\"; this plugin's world is {}",
                    p.world.as_str()
                ));
            }
            (_, true) => {}
        }
        for target in &caps.invoke {
            let ok = target.split_once('/').is_some_and(|(plugin, action)| {
                valid_id(plugin) && (action == "*" || valid_id(action))
            });
            if !ok {
                return Err(format!(
                    "capabilities.invoke: `{target}` must name a provider's action as `plugin/action` or `plugin/*`"
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.policy.review_below) {
            return Err("policy.review_below must be between 0.0 and 1.0".into());
        }
        validate_memory_and_identities(caps)
    }
}

/// `shared_memory` and `identities`.
fn validate_memory_and_identities(caps: &Capabilities) -> Result<(), String> {
    if caps.shared_memory && !caps.memory {
        return Err(
            "capabilities.shared_memory needs `memory = true` under [capabilities]; add it".into(),
        );
    }
    for source in &caps.identities {
        let mut chars = source.chars();
        let ok = matches!(chars.next(), Some('a'..='z'))
            && source.len() <= 64
            && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.' | ':'));
        if !ok {
            return Err(format!(
                "capabilities.identities: source `{source}` must be 1-64 characters of a-z, 0-9, `-`, `_`, `.` and `:`, starting with a letter"
            ));
        }
    }
    Ok(())
}

/// Plugin ids, directory names: `[a-z][a-z0-9-]{0,63}`.
pub fn valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.len() <= 64
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
}

fn valid_version(s: &str) -> bool {
    let core = s.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.chars().all(|c| c.is_ascii_digit()))
}

/// A concrete kind: `namespace/name`, both parts `[a-z0-9-_.]`.
pub fn valid_kind(s: &str) -> bool {
    let Some((ns, name)) = s.split_once('/') else {
        return false;
    };
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 64
            && p.chars()
                .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.'))
    };
    part(ns) && part(name)
}

fn valid_kind_pattern(s: &str) -> bool {
    match s.strip_suffix("/*") {
        Some(ns) => valid_kind(&format!("{ns}/x")),
        None => valid_kind(s),
    }
}

/// Whether `kind` is matched by one of `patterns` (exact or `prefix/*`).
pub fn kind_matches(patterns: &[String], kind: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix("/*") {
        Some(ns) => kind
            .strip_prefix(ns)
            .is_some_and(|rest| rest.starts_with('/')),
        None => p == kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[plugin]
id = "todo"
version = "0.1.0"
world = "agent"

[capabilities]
read = ["core/document"]
write = ["core/task"]
actions = ["create", "link"]
"#;

    #[test]
    fn parses_a_good_manifest_with_defaults() {
        let m = Manifest::parse(GOOD, "keel.toml").unwrap();
        assert_eq!(m.label(), "todo@0.1.0");
        assert_eq!(m.plugin.world, World::Agent);
        assert_eq!(m.limits, Limits::default());
        assert!(m.capabilities.dirs.is_empty());
    }

    #[test]
    fn unknown_key_names_field_and_line() {
        let text = GOOD.replace("actions = [", "actons = [");
        let err = Manifest::parse(&text, "keel.toml").unwrap_err().to_string();
        assert!(err.starts_with("keel.toml:10:"), "{err}");
        assert!(err.contains("actons"), "{err}");
    }

    #[test]
    fn wrong_type_names_line() {
        let text = GOOD.replace("version = \"0.1.0\"", "version = 3");
        let err = Manifest::parse(&text, "keel.toml").unwrap_err().to_string();
        assert!(err.starts_with("keel.toml:4:"), "{err}");
    }

    #[test]
    fn rejects_unknown_action_and_bad_kind() {
        let err = Manifest::parse(&GOOD.replace("\"link\"", "\"teleport\""), "m")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown action `teleport`"), "{err}");
        let err = Manifest::parse(&GOOD.replace("core/task", "Task"), "m")
            .unwrap_err()
            .to_string();
        assert!(err.contains("record kind `Task`"), "{err}");
    }

    /// `tests/cases/<name>/keel.toml` parses to `ok` or to an error that
    /// contains `tests/cases/<name>/expected`.
    #[test]
    fn data_driven_cases() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cases");
        let mut cases: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        cases.sort();
        assert!(cases.len() >= 10, "cases missing in {}", root.display());
        for case in cases {
            let text = std::fs::read_to_string(case.join("keel.toml")).unwrap();
            let expected = std::fs::read_to_string(case.join("expected")).unwrap();
            let expected = expected.trim();
            let got = match Manifest::parse(&text, "keel.toml") {
                Ok(_) => "ok".to_string(),
                Err(e) => e.to_string(),
            };
            if expected == "ok" {
                assert_eq!(got, "ok", "{}", case.display());
            } else {
                assert!(got.contains(expected), "{}: got `{got}`", case.display());
            }
        }
    }

    #[test]
    fn kind_patterns() {
        let pats = vec!["core/*".to_string(), "todo/item".to_string()];
        assert!(kind_matches(&pats, "core/task"));
        assert!(kind_matches(&pats, "todo/item"));
        assert!(!kind_matches(&pats, "corex/task"));
        assert!(!kind_matches(&pats, "todo/other"));
    }
}
