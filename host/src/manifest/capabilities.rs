//! `[capabilities]`: what a plugin asks for (everything absent is denied),
//! and what a channel serves and a provider offers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::endpoints::{Asked, ask};
use super::{World, kind_matches, valid_id, valid_kind_pattern};

/// The core actions a manifest may ask for.
pub const CORE_ACTIONS: &[&str] = &[
    "create", "update", "link", "schedule", "send", "claim", "complete",
];

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
    /// Places on the network by name: `"http"` or `"tcp"` for one the
    /// operator binds at install (`--endpoint NAME=...`), or a fixed
    /// `https://…` URL or `host:port`. Nothing else is reachable.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, String>,
    /// Secrets by the plugin's own name for them; the operator binds each
    /// to a stored secret at install (`--secret NAME=STORED`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
}

/// Secret names, the plugin's and the store's: letters, digits, `-` and
/// `_`, starting with a letter, at most 64.
pub fn valid_secret_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
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

impl Capabilities {
    /// Record kinds, core actions, channels, scheduled plugins and
    /// directory names.
    pub(super) fn validate(&self) -> Result<(), String> {
        let caps = self;
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
        Ok(())
    }

    /// What each endpoint name asks for (validated at parse, so none fails).
    pub fn asked_endpoints(&self) -> impl Iterator<Item = (&str, Asked)> {
        self.endpoints
            .iter()
            .filter_map(|(name, text)| Some((name.as_str(), ask(text).ok()?)))
    }

    /// `endpoints` and `secrets`.
    pub(super) fn validate_network(&self) -> Result<(), String> {
        for (name, text) in &self.endpoints {
            if !valid_id(name) {
                return Err(format!(
                    "capabilities.endpoints: name `{name}` must be a-z, 0-9 and `-`, starting with a letter"
                ));
            }
            ask(text).map_err(|e| format!("capabilities.endpoints.{name}: {e}"))?;
        }
        for (i, name) in self.secrets.iter().enumerate() {
            if !valid_secret_name(name) {
                return Err(format!(
                    "capabilities.secrets: `{name}` must be letters, digits, `-` and `_`, starting with a letter (at most 64)"
                ));
            }
            if self.secrets[..i].contains(name) {
                return Err(format!("capabilities.secrets: `{name}` is listed twice"));
            }
        }
        Ok(())
    }

    /// The providers' actions it may invoke.
    pub(super) fn validate_invoke(&self) -> Result<(), String> {
        for target in &self.invoke {
            let ok = target.split_once('/').is_some_and(|(plugin, action)| {
                valid_id(plugin) && (action == "*" || valid_id(action))
            });
            if !ok {
                return Err(format!(
                    "capabilities.invoke: `{target}` must name a provider's action as `plugin/action` or `plugin/*`"
                ));
            }
        }
        Ok(())
    }

    /// `shared_memory` and `identities`.
    pub(super) fn validate_memory_and_identities(&self) -> Result<(), String> {
        if self.shared_memory && !self.memory {
            return Err(
                "capabilities.shared_memory needs `memory = true` under [capabilities]; add it"
                    .into(),
            );
        }
        for source in &self.identities {
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
}

/// `[channel]`: only and always for a channel plugin.
pub(super) fn validate_channel(world: World, channel: Option<&ChannelSpec>) -> Result<(), String> {
    match (world, channel) {
        (World::Channel, None) => {
            Err("a channel plugin needs a [channel] table with `serves`, the channels it delivers for, e.g. serves = [\"email\"]".into())
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
            Ok(())
        }
        (_, Some(_)) => Err(format!(
            "[channel] only goes with plugin.world = \"channel\"; this plugin's world is {}",
            world.as_str()
        )),
        (_, None) => Ok(()),
    }
}

/// `[[provides]]`: only and always for a provider plugin; each action named
/// once, its input a JSON Schema, what it needs within `caps`.
pub(super) fn validate_provides(
    world: World,
    provides: &[ProvidedAction],
    caps: &Capabilities,
) -> Result<(), String> {
    match (world, provides.is_empty()) {
        (World::Provider, true) => {
            Err("a provider plugin needs at least one [[provides]] action (name, description, input schema)".into())
        }
        (World::Provider, false) => {
            for (i, a) in provides.iter().enumerate() {
                validate_provided(i + 1, a, &provides[..i], caps)?;
            }
            Ok(())
        }
        (_, false) => Err(format!(
            "[[provides]] only goes with plugin.world = \"provider\"; this plugin's world is {}",
            world.as_str()
        )),
        (_, true) => Ok(()),
    }
}

/// Provided action `n`, after the `earlier` ones.
fn validate_provided(
    n: usize,
    a: &ProvidedAction,
    earlier: &[ProvidedAction],
    caps: &Capabilities,
) -> Result<(), String> {
    if !valid_id(&a.name) {
        return Err(format!(
            "provides #{n}: action name `{}` must be a-z, 0-9 and `-`, starting with a letter",
            a.name
        ));
    }
    if earlier.iter().any(|o| o.name == a.name) {
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
    Ok(())
}
