//! The plugin manifest, `keel.toml`: who the plugin is, what it asks for
//! ([`capabilities`]), the limits it runs under ([`limits`]), when it runs
//! ([`triggers`]) and what it proposes for review ([`policy`]).

mod capabilities;
mod endpoints;
mod limits;
mod policy;
mod triggers;

pub use capabilities::*;
pub use endpoints::{Asked, Endpoint, Host, Scheme, bind as bind_endpoint};
pub use limits::*;
pub use policy::*;
pub use triggers::*;

use std::path::Path;

use serde::{Deserialize, Serialize};

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
        caps.validate()?;
        self.limits.validate()?;
        triggers::validate(&self.triggers, &caps.read)?;
        validate_channel(p.world, self.channel.as_ref())?;
        validate_provides(p.world, &self.provides, caps)?;
        caps.validate_invoke()?;
        caps.validate_network()?;
        if !(0.0..=1.0).contains(&self.policy.review_below) {
            return Err("policy.review_below must be between 0.0 and 1.0".into());
        }
        caps.validate_memory_and_identities()
    }
}

/// Plugin ids, directory names: `[a-z][a-z0-9-]{0,63}`.
pub fn valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.len() <= 64
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
}

pub(crate) fn valid_version(s: &str) -> bool {
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

pub(crate) fn valid_kind_pattern(s: &str) -> bool {
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
