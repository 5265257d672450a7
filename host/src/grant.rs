//! Grants: what the operator allowed a plugin, never more than its manifest
//! asked for. Checked at install and again on every host call.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::manifest::{
    Asked, Capabilities, DirAccess, Endpoint, Manifest, Rate, ReviewGate, bind_endpoint,
    kind_matches, parse_rate, valid_secret_name,
};

/// What the operator binds at install: folders (`--dir`), config values
/// (`--config`), endpoints (`--endpoint`) and secrets (`--secret`).
#[derive(Debug, Clone, Default)]
pub struct Bindings {
    pub dirs: BTreeMap<String, PathBuf>,
    pub config: BTreeMap<String, String>,
    /// Endpoint name → URL or `host:port`.
    pub endpoints: BTreeMap<String, String>,
    /// The plugin's secret name → the stored secret's name.
    pub secrets: BTreeMap<String, String>,
}

/// One directory the operator bound to a logical name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DirBinding {
    /// Absolute host path.
    pub path: PathBuf,
    pub access: DirAccess,
}

/// The capabilities in force for one installed plugin. Its `Debug` shows
/// config keys but not their values (see below). The default grants
/// nothing.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Grant {
    pub capabilities: Capabilities,
    pub dirs: BTreeMap<String, DirBinding>,
    pub config: BTreeMap<String, String>,
    /// Runs at once under `keel up`: the manifest's, lowered by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Runs started per unit of time under `keel up`: the manifest's,
    /// slowed by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// The operator's review gate for this plugin's sends and unsure
    /// writes (`--review-below` at install, `keel plugin policy`). A grant
    /// stored before the gate existed reads as `all`: every send waits
    /// until the operator relaxes it.
    #[serde(default)]
    pub review_below: ReviewGate,
    /// What the operator took out at install (`--deny KIND:VALUE`), kept so
    /// that every update takes it out again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<String>,
    /// Every endpoint it may reach, by name: the manifest's fixed ones and
    /// the operator's bindings of its named ones.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, Endpoint>,
    /// The plugin's secret name → the stored secret's name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
}

/// Written by hand: config values are where plugins' credentials live
/// today, and a `{:?}` of a grant (or of an installed plugin's row) must not
/// print them.
impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let config: Vec<&String> = self.config.keys().collect();
        f.debug_struct("Grant")
            .field("capabilities", &self.capabilities)
            .field("dirs", &self.dirs)
            .field("config (values withheld)", &config)
            .field("concurrency", &self.concurrency)
            .field("rate", &self.rate)
            .field("review_below", &self.review_below)
            .field("denied", &self.denied)
            .field("endpoints", &self.endpoints)
            .field("secrets", &self.secrets)
            .finish()
    }
}

impl Grant {
    /// Builds the grant for `manifest` from the operator's bindings. Every
    /// directory and named endpoint the manifest needs must be bound, and
    /// nothing else may be.
    pub fn new(manifest: &Manifest, bindings: &Bindings) -> Result<Grant, String> {
        let label = manifest.label();
        let caps = &manifest.capabilities;
        let (dirs, config) = (&bindings.dirs, &bindings.config);
        let mut bound = BTreeMap::new();
        for (name, access) in &caps.dirs {
            let Some(path) = dirs.get(name) else {
                return Err(format!(
                    "{label} needs directory `{name}` ({}); bind it with `--dir {name}=PATH`",
                    access.as_str()
                ));
            };
            let path = path.canonicalize().map_err(|e| {
                format!(
                    "directory `{name}` = {} cannot be used ({e}); pass an existing folder",
                    path.display()
                )
            })?;
            if !path.is_dir() {
                return Err(format!(
                    "directory `{name}` = {} is not a folder; pass a folder",
                    path.display()
                ));
            }
            bound.insert(
                name.clone(),
                DirBinding {
                    path,
                    access: *access,
                },
            );
        }
        if let Some(extra) = dirs.keys().find(|n| !caps.dirs.contains_key(*n)) {
            return Err(format!(
                "{label} does not ask for a directory named `{extra}`; it asks for: {}",
                list_or_none(caps.dirs.keys())
            ));
        }
        if let Some(extra) = config.keys().find(|k| !caps.config.contains(k)) {
            return Err(format!(
                "{label} does not declare config key `{extra}`; it declares: {}",
                list_or_none(caps.config.iter())
            ));
        }
        let rate = match &manifest.limits.rate {
            Some(text) => Some(parse_rate(text)?),
            None => None,
        };
        Ok(Grant {
            capabilities: caps.clone(),
            dirs: bound,
            config: config.clone(),
            concurrency: manifest.limits.concurrency,
            rate,
            review_below: ReviewGate::All,
            denied: Vec::new(),
            endpoints: bind_endpoints(manifest, &bindings.endpoints)?,
            secrets: bind_secrets(manifest, &bindings.secrets)?,
        })
    }

    /// The endpoint `name` as granted.
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.get(name)
    }

    /// The stored secret bound to the plugin's secret `name`.
    pub fn secret(&self, name: &str) -> Option<&str> {
        self.secrets.get(name).map(String::as_str)
    }

    /// Applies the operator's caps: a plugin never runs more at once or
    /// more often than the smaller of what it asked and what the operator
    /// allows.
    pub fn cap(&mut self, concurrency: Option<u32>, rate: Option<Rate>) {
        if let Some(c) = concurrency {
            self.concurrency = Some(self.concurrency.map_or(c, |mine| mine.min(c)));
        }
        if let Some(r) = rate {
            self.rate = Some(self.rate.map_or(r, |mine| mine.min(r)));
        }
    }

    pub fn can_read(&self, kind: &str) -> bool {
        kind_matches(&self.capabilities.read, kind)
    }

    pub fn can_write(&self, kind: &str) -> bool {
        kind_matches(&self.capabilities.write, kind)
    }

    pub fn allows_action(&self, action: &str) -> bool {
        self.capabilities.actions.iter().any(|a| a == action)
    }

    /// `Err(reason)` unless the grant allows `action` on records of `kind`.
    pub fn check_write(&self, action: &str, kind: &str) -> Result<(), String> {
        if !self.allows_action(action) {
            return Err(format!("action `{action}` is not granted"));
        }
        if !self.can_write(kind) {
            return Err(format!("writing records of kind `{kind}` is not granted"));
        }
        Ok(())
    }

    /// `Err(reason)` unless the grant allows linking record `from` (whose
    /// kind it must write) to record `to` (whose kind it must read or
    /// write); each is `(id, kind)`. Unknown records pass here and are
    /// reported as not found by the action. A refusal names the kind of a
    /// record only when the caller may read it.
    pub fn check_link(
        &self,
        from: Option<(&str, &str)>,
        to: Option<(&str, &str)>,
    ) -> Result<(), String> {
        if !self.allows_action("link") {
            return Err("action `link` is not granted".into());
        }
        if let Some((id, kind)) = from.filter(|(_, k)| !self.can_write(k)) {
            return Err(if self.can_read(kind) {
                format!("writing records of kind `{kind}` is not granted")
            } else {
                format!("linking from record {id} is not granted")
            });
        }
        if let Some((id, _)) = to.filter(|(_, k)| !self.can_write(k) && !self.can_read(k)) {
            return Err(format!("linking to record {id} is not granted"));
        }
        Ok(())
    }

    /// `Err(reason)` unless the grant allows `action` on existing record
    /// `id` of `kind`; the reason names the kind only when the caller may
    /// read it.
    pub fn check_write_record(&self, action: &str, id: &str, kind: &str) -> Result<(), String> {
        match self.check_write(action, kind) {
            Err(_) if self.allows_action(action) && !self.can_read(kind) => {
                Err(format!("writing record {id} is not granted"))
            }
            other => other,
        }
    }

    /// `Err(reason)` unless the grant allows reading record `id` of
    /// `kind`. The reason does not name the kind: the caller may not know
    /// it.
    pub fn check_read_record(&self, id: &str, kind: &str) -> Result<(), String> {
        if self.can_read(kind) {
            Ok(())
        } else {
            Err(format!("reading record {id} is not granted"))
        }
    }

    /// `Err(reason)` unless `plugin` may claim identities under `source`:
    /// its own id, `<id>:<name>`, or a source its manifest lists in
    /// `capabilities.identities` (shown at consent). So no plugin can take
    /// an identity another plugin's source will need.
    pub fn check_identity_source(&self, plugin: &str, source: &str) -> Result<(), String> {
        let own = source
            .strip_prefix(plugin)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'));
        if own || self.capabilities.identities.iter().any(|s| s == source) {
            Ok(())
        } else {
            Err(format!(
                "identity source `{source}` is not {plugin}'s; a plugin claims identities under `{plugin}`, `{plugin}:NAME` or a source listed in capabilities.identities"
            ))
        }
    }

    /// `Err(reason)` unless the grant allows scheduling `plugin`.
    pub fn check_schedule(&self, plugin: &str) -> Result<(), String> {
        if !self.allows_action("schedule") {
            return Err("action `schedule` is not granted".into());
        }
        if !self.capabilities.schedule.iter().any(|p| p == plugin) {
            return Err(format!("scheduling plugin `{plugin}` is not granted"));
        }
        Ok(())
    }

    /// `Err(reason)` unless the grant allows sending through `channel`.
    pub fn check_send(&self, channel: &str) -> Result<(), String> {
        if !self.allows_action("send") {
            return Err("action `send` is not granted".into());
        }
        if !self.capabilities.send.iter().any(|c| c == channel) {
            return Err(format!(
                "sending through channel `{channel}` is not granted"
            ));
        }
        Ok(())
    }

    /// `Err(reason)` unless the grant allows invoking `action`
    /// (`<plugin>/<name>`).
    pub fn check_invoke(&self, action: &str) -> Result<(), String> {
        let provider = action.split_once('/').map(|(p, _)| p).unwrap_or("");
        let allowed = self
            .capabilities
            .invoke
            .iter()
            .any(|g| g == action || g.strip_suffix("/*") == Some(provider));
        if allowed {
            Ok(())
        } else {
            Err(format!("invoking `{action}` is not granted"))
        }
    }

    /// `Err(reason)` unless the grant allows reading records of `kind`.
    pub fn check_read(&self, kind: &str) -> Result<(), String> {
        if self.can_read(kind) {
            Ok(())
        } else {
            Err(format!("reading records of kind `{kind}` is not granted"))
        }
    }
}

/// The manifest's fixed endpoints and the operator's binding of each named
/// one; a named endpoint left unbound, or a binding for a name the manifest
/// does not ask for, is refused with the flag to fix it.
fn bind_endpoints(
    manifest: &Manifest,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Endpoint>, String> {
    let label = manifest.label();
    let caps = &manifest.capabilities;
    let mut out = BTreeMap::new();
    for (name, asked) in caps.asked_endpoints() {
        let endpoint = match (&asked, given.get(name)) {
            (Asked::Fixed(e), None) => e.clone(),
            (Asked::Fixed(e), Some(_)) => {
                return Err(format!(
                    "{label}'s endpoint `{name}` is fixed by its manifest ({e}); drop --endpoint {name}=..."
                ));
            }
            (_, None) => {
                let example = match asked {
                    Asked::Tcp => "HOST:PORT",
                    _ => "https://HOST/PATH",
                };
                return Err(format!(
                    "{label} needs endpoint `{name}` ({}); bind it with `--endpoint {name}={example}`",
                    caps.endpoints[name]
                ));
            }
            (_, Some(text)) => {
                bind_endpoint(&asked, text).map_err(|e| format!("--endpoint {name}: {e}"))?
            }
        };
        out.insert(name.to_string(), endpoint);
    }
    if let Some(extra) = given.keys().find(|n| !caps.endpoints.contains_key(*n)) {
        return Err(format!(
            "{label} does not ask for an endpoint named `{extra}`; it asks for: {}",
            list_or_none(caps.endpoints.keys())
        ));
    }
    Ok(out)
}

/// Each secret the manifest names, bound to the stored secret the operator
/// gave (`--secret NAME=STORED`), or to the stored secret of the same name.
fn bind_secrets(
    manifest: &Manifest,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let caps = &manifest.capabilities;
    if let Some(extra) = given.keys().find(|n| !caps.secrets.contains(n)) {
        return Err(format!(
            "{} does not ask for a secret named `{extra}`; it asks for: {}",
            manifest.label(),
            list_or_none(caps.secrets.iter())
        ));
    }
    let mut out = BTreeMap::new();
    for name in &caps.secrets {
        let stored = given.get(name).unwrap_or(name);
        if !valid_secret_name(stored) {
            return Err(format!(
                "--secret {name}={stored}: a stored secret's name is letters, digits, `-` and `_`, starting with a letter"
            ));
        }
        out.insert(name.clone(), stored.clone());
    }
    Ok(out)
}

fn list_or_none<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = items.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Capabilities;

    fn grant(read: &[&str], write: &[&str], actions: &[&str], identities: &[&str]) -> Grant {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        Grant {
            capabilities: Capabilities {
                read: v(read),
                write: v(write),
                actions: v(actions),
                identities: v(identities),
                ..Capabilities::default()
            },
            ..Grant::default()
        }
    }

    #[test]
    fn low_a_refusal_names_a_kind_only_to_a_plugin_that_may_read_it() {
        let g = grant(&["note/*"], &["note/a"], &["link", "update"], &[]);
        assert_eq!(
            g.check_read_record("r1", "mail/message").unwrap_err(),
            "reading record r1 is not granted"
        );
        assert_eq!(
            g.check_write_record("update", "r1", "mail/message")
                .unwrap_err(),
            "writing record r1 is not granted"
        );
        assert_eq!(
            g.check_write_record("update", "r2", "note/b").unwrap_err(),
            "writing records of kind `note/b` is not granted"
        );
        assert_eq!(
            g.check_link(Some(("r1", "mail/message")), None)
                .unwrap_err(),
            "linking from record r1 is not granted"
        );
        assert_eq!(
            g.check_link(Some(("n", "note/a")), Some(("r2", "mail/message")))
                .unwrap_err(),
            "linking to record r2 is not granted"
        );
        assert!(
            g.check_link(Some(("n", "note/a")), Some(("m", "note/b")))
                .is_ok()
        );
    }

    #[test]
    fn m6_identities_belong_to_their_source() {
        let g = grant(&[], &["x/y"], &["create"], &["email"]);
        assert!(g.check_identity_source("imap", "imap").is_ok());
        assert!(g.check_identity_source("imap", "imap:INBOX").is_ok());
        assert!(g.check_identity_source("imap", "email").is_ok());
        for other in ["files:notes", "imapx", "imap-other:x", "im"] {
            assert!(
                g.check_identity_source("imap", other).is_err(),
                "{other} was allowed"
            );
        }
    }

    /// The latent key leak, for plugin config: `{:?}` of a grant names its
    /// config keys, never their values.
    #[test]
    fn latent_key_leak_grant_debug_withholds_config_values() {
        let text = "[plugin]\nid = \"p\"\nversion = \"0.1.0\"\nworld = \"agent\"\n[capabilities]\nconfig = [\"token\"]\n";
        let m = Manifest::parse(text, "keel.toml").unwrap();
        let config = BTreeMap::from([("token".to_string(), "hunter2-secret".to_string())]);
        let bindings = Bindings {
            config,
            ..Bindings::default()
        };
        let g = Grant::new(&m, &bindings).unwrap();
        let shown = format!("{g:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(shown.contains("\"token\""), "{shown}");
    }

    /// A named endpoint must be bound (the error names the flag), a fixed
    /// one takes no binding, and no binding may name what was not asked.
    #[test]
    fn endpoints_are_bound_as_asked_and_nothing_else() {
        let text = "[plugin]\nid = \"p\"\nversion = \"0.1.0\"\nworld = \"connector\"\n[capabilities]\nsecrets = [\"token\"]\n[capabilities.endpoints]\nfeed = \"http\"\nimap = \"tcp\"\napi = \"https://api.example.com\"\n";
        let m = Manifest::parse(text, "keel.toml").unwrap();
        let with = |pairs: &[(&str, &str)]| Bindings {
            endpoints: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Bindings::default()
        };
        let e = Grant::new(&m, &with(&[("feed", "https://example.org/f")])).unwrap_err();
        assert!(
            e.contains("needs endpoint `imap` (tcp); bind it with `--endpoint imap=HOST:PORT`"),
            "{e}"
        );
        let both = [
            ("feed", "https://example.org/f"),
            ("imap", "127.0.0.1:1143"),
        ];
        let g = Grant::new(&m, &with(&both)).unwrap();
        assert_eq!(
            g.endpoint("api").unwrap().to_string(),
            "https://api.example.com:443/"
        );
        assert_eq!(g.endpoint("imap").unwrap().to_string(), "127.0.0.1:1143");
        assert_eq!(g.secret("token"), Some("token"));
        let e = Grant::new(&m, &with(&[both[0], both[1], ("api", "https://x.org")])).unwrap_err();
        assert!(e.contains("fixed by its manifest"), "{e}");
        let e = Grant::new(&m, &with(&[both[0], both[1], ("other", "https://x.org")])).unwrap_err();
        assert!(
            e.contains("does not ask for an endpoint named `other`"),
            "{e}"
        );
        let e = Grant::new(&m, &with(&[both[0], ("imap", "https://x.org")])).unwrap_err();
        assert!(e.contains("--endpoint imap:"), "{e}");
        let mut bindings = with(&both);
        bindings.secrets.insert("other".into(), "x".into());
        let e = Grant::new(&m, &bindings).unwrap_err();
        assert!(e.contains("does not ask for a secret named `other`"), "{e}");
        // Stored as text and read back the same.
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(serde_json::from_str::<Grant>(&json).unwrap(), g);
    }
}
