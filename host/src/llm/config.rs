//! `HOME/models.toml`: which provider serves each tier, in fallback order,
//! and how to reach each provider.
//!
//! ```toml
//! [tiers]
//! small = ["lab"]            # tried in order; the first that answers wins
//! large = ["lab", "backup"]
//! embed = ["lab"]
//!
//! [providers.lab]
//! kind = "openai"            # any OpenAI-compatible server
//! base_url = "http://127.0.0.1:8080/v1"
//! model = "smollm2"          # for every tier, unless `models` says otherwise
//! models = { large = "bigger-model" }
//! embed_model = "minilm"
//! api_key_env = "LAB_API_KEY" # the key is read from this variable, never stored,
//!                            # or: api_key_secret = "lab" (`keel secret set lab`)
//! timeout_ms = 60000         # per request (default 60 s; a `local` provider
//!                            # waits as long as the run may last)
//! retries = 2                # transient failures retried before falling back
//! price_in = 0.15            # dollars per million tokens
//! price_out = 0.60
//! schema_format = "json-schema" # how structured output is asked for:
//!                            # "json-schema" (OpenAI) or "json-object"
//!                            # (llama.cpp's Python server)
//! ```
//!
//! A provider named `local` is always there unless the file defines its
//! own: keel's embedded models on the CPU, the chat model
//! SmolLM2-135M-Instruct (`smollm2-135m-instruct`) and the sentence
//! embedder all-MiniLM-L6-v2 (`all-minilm-l6-v2`), reading their weights
//! from `HOME/models` (`dir = "..."` to move them). A tier the file does not
//! list is served by it, so a home without a models.toml works offline.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// The file's name in the home.
pub const FILE: &str = "models.toml";

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    #[serde(default)]
    pub tiers: Tiers,
    #[serde(default)]
    pub providers: BTreeMap<String, Provider>,
}

/// Provider names per tier, in the order they are tried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tiers {
    #[serde(default = "local_only")]
    pub small: Vec<String>,
    #[serde(default = "local_only")]
    pub large: Vec<String>,
    #[serde(default = "local_only")]
    pub embed: Vec<String>,
}

impl Default for Tiers {
    fn default() -> Self {
        Tiers {
            small: local_only(),
            large: local_only(),
            embed: local_only(),
        }
    }
}

fn local_only() -> Vec<String> {
    vec![LOCAL.to_string()]
}

/// The built-in provider's name.
pub const LOCAL: &str = "local";
/// The local sentence embedder.
pub const LOCAL_EMBEDDER: &str = "all-minilm-l6-v2";
/// The local chat model.
pub const LOCAL_CHAT: &str = "smollm2-135m-instruct";

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// An OpenAI-compatible server.
    Openai,
    /// Models inside keel.
    Local,
}

/// One provider. Its `Debug` leaves the API key out (see below).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub kind: ProviderKind,
    #[serde(default)]
    pub base_url: String,
    /// Where a `local` provider's weights are (default `HOME/models`).
    #[serde(default)]
    pub dir: Option<std::path::PathBuf>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub models: BTreeMap<String, String>,
    #[serde(default)]
    pub embed_model: Option<String>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The name of a secret (`keel secret set NAME`) holding the API key.
    #[serde(default)]
    pub api_key_secret: Option<String>,
    /// The key read from `api_key_secret` for this call, or why it could
    /// not be read.
    #[serde(skip)]
    pub api_key: Option<Result<String, String>>,
    /// How long one request may take; unset, 60 s for a server and the
    /// run's own deadline for the embedded models, which cannot hang but
    /// slow down when the machine is busy.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default)]
    pub price_in: f64,
    #[serde(default)]
    pub price_out: f64,
    #[serde(default)]
    pub schema_format: SchemaFormat,
}

/// Written by hand so that no log line, panic or `{:?}` of a provider can
/// print the API key read from its secret: it shows only whether one was
/// read.
impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let api_key = match &self.api_key {
            None => "none",
            Some(Ok(_)) => "<redacted>",
            Some(Err(_)) => "<unreadable>",
        };
        f.debug_struct("Provider")
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("dir", &self.dir)
            .field("model", &self.model)
            .field("models", &self.models)
            .field("embed_model", &self.embed_model)
            .field("api_key_env", &self.api_key_env)
            .field("api_key_secret", &self.api_key_secret)
            .field("api_key", &api_key)
            .field("timeout_ms", &self.timeout_ms)
            .field("retries", &self.retries)
            .field("price_in", &self.price_in)
            .field("price_out", &self.price_out)
            .field("schema_format", &self.schema_format)
            .finish()
    }
}

/// How a provider is asked for JSON matching a schema.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SchemaFormat {
    /// `response_format: {type: json_schema, json_schema: {schema}}`.
    #[default]
    JsonSchema,
    /// `response_format: {type: json_object, schema}`.
    JsonObject,
}

/// A server's answer is awaited this long unless `timeout_ms` says.
const SERVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn default_retries() -> u32 {
    2
}

impl Provider {
    /// The longest one request to this provider may take, the run's
    /// deadline apart.
    pub fn timeout(&self) -> Option<std::time::Duration> {
        match (self.timeout_ms, self.kind) {
            (Some(ms), _) => Some(std::time::Duration::from_millis(ms)),
            (None, ProviderKind::Local) => None,
            (None, _) => Some(SERVER_TIMEOUT),
        }
    }

    /// The model this provider uses for `tier` (`small`, `large`, `embed`).
    pub fn model_for(&self, tier: &str) -> Option<&str> {
        if tier == "embed" {
            return self.embed_model.as_deref();
        }
        self.models
            .get(tier)
            .or(self.model.as_ref())
            .map(String::as_str)
    }

    /// Where a local provider's weights are.
    pub fn weights_dir(&self) -> std::path::PathBuf {
        self.dir.clone().unwrap_or_else(|| "models".into())
    }

    /// Cost in millionths of a dollar.
    pub fn cost_micros(&self, tokens_in: u32, tokens_out: u32) -> i64 {
        (self.price_in * f64::from(tokens_in) + self.price_out * f64::from(tokens_out)).round()
            as i64
    }
}

impl ModelsConfig {
    /// Reads `HOME/models.toml`; a home without one gets embeddings from
    /// the local embedder and no chat models.
    pub fn load(home: &Path) -> anyhow::Result<ModelsConfig> {
        let path = home.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e.into()),
        };
        let mut config = ModelsConfig::parse(&text, &path.display().to_string())?;
        for p in config.providers.values_mut() {
            if p.kind == ProviderKind::Local && p.dir.is_none() {
                p.dir = Some(home.join("models"));
            }
        }
        Ok(config)
    }

    /// The built-in `local` provider.
    fn builtin_local() -> Provider {
        Provider {
            kind: ProviderKind::Local,
            base_url: String::new(),
            dir: None,
            model: Some(LOCAL_CHAT.into()),
            models: BTreeMap::new(),
            embed_model: Some(LOCAL_EMBEDDER.into()),
            api_key_env: None,
            api_key_secret: None,
            api_key: None,
            timeout_ms: None,
            retries: 0,
            price_in: 0.0,
            price_out: 0.0,
            schema_format: SchemaFormat::default(),
        }
    }

    /// Parses and checks the file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<ModelsConfig> {
        let mut config: ModelsConfig = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start].matches('\n').count() + 1)
                .unwrap_or(1);
            anyhow::anyhow!("{origin}, line {line}: {}", e.message())
        })?;
        config
            .providers
            .entry(LOCAL.to_string())
            .or_insert_with(ModelsConfig::builtin_local);
        for p in config.providers.values_mut() {
            if p.kind == ProviderKind::Local {
                p.model.get_or_insert_with(|| LOCAL_CHAT.into());
                p.embed_model.get_or_insert_with(|| LOCAL_EMBEDDER.into());
            }
        }
        for (tier, names) in config.tiers.all() {
            for name in names {
                let Some(p) = config.providers.get(name) else {
                    anyhow::bail!(
                        "{origin}: tier `{tier}` names provider `{name}`, which has no [providers.{name}] section"
                    );
                };
                let (key, local_model) = if tier == "embed" {
                    ("embed_model", LOCAL_EMBEDDER)
                } else {
                    ("model", LOCAL_CHAT)
                };
                if p.kind == ProviderKind::Local
                    && p.model_for(tier).is_some_and(|m| m != local_model)
                {
                    anyhow::bail!(
                        "{origin}: provider `{name}` is local and serves tier `{tier}`; its {key} must be `{local_model}`, the model keel runs itself"
                    );
                }
                if p.model_for(tier).is_none() {
                    let key = if tier == "embed" {
                        "embed_model"
                    } else {
                        "model"
                    };
                    anyhow::bail!(
                        "{origin}: provider `{name}` serves tier `{tier}` but sets no `{key}`"
                    );
                }
            }
        }
        for (name, p) in &config.providers {
            if p.kind == ProviderKind::Openai
                && !(p.base_url.starts_with("https://") || p.base_url.starts_with("http://"))
            {
                anyhow::bail!(
                    "{origin}: provider `{name}` has base_url `{}`; write http(s)://HOST[:PORT]/PATH",
                    p.base_url
                );
            }
            if p.api_key_env.is_some() && p.api_key_secret.is_some() {
                anyhow::bail!(
                    "{origin}: provider `{name}` sets both api_key_env and api_key_secret; keep one"
                );
            }
            if p.price_in < 0.0 || p.price_out < 0.0 {
                anyhow::bail!("{origin}: provider `{name}` has a negative price");
            }
        }
        Ok(config)
    }
}

impl Tiers {
    pub fn all(&self) -> [(&'static str, &Vec<String>); 3] {
        [
            ("small", &self.small),
            ("large", &self.large),
            ("embed", &self.embed),
        ]
    }

    pub fn chain(&self, tier: &str) -> &[String] {
        match tier {
            "small" => &self.small,
            "large" => &self.large,
            _ => &self.embed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The latent key leak: no `{:?}` of a provider prints its API key.
    #[test]
    fn latent_key_leak_provider_debug_redacts_api_key() {
        let mut config = ModelsConfig::parse(
            "[tiers]\nsmall = [\"a\"]\n[providers.a]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\napi_key_secret = \"lab\"\n",
            "models.toml",
        )
        .unwrap();
        config.providers.get_mut("a").unwrap().api_key = Some(Ok("sk-very-secret-0123".into()));
        let shown = format!("{:?} {config:?}", config.providers["a"]);
        assert!(!shown.contains("sk-very-secret-0123"), "{shown}");
        assert!(shown.contains("api_key: \"<redacted>\""), "{shown}");
        assert!(shown.contains("api_key_secret: Some(\"lab\")"), "{shown}");
    }

    #[test]
    fn tiers_must_name_configured_providers_with_models() {
        let ok = ModelsConfig::parse(
            "[tiers]\nsmall = [\"a\"]\nembed = [\"a\"]\n[providers.a]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\nembed_model = \"e\"\nprice_in = 1.5\n",
            "models.toml",
        )
        .unwrap();
        let a = &ok.providers["a"];
        assert_eq!(a.model_for("large"), Some("m"));
        assert_eq!(a.model_for("embed"), Some("e"));
        assert_eq!(a.cost_micros(1000, 0), 1500);
        let e = ModelsConfig::parse("[tiers]\nsmall = [\"b\"]\n", "models.toml").unwrap_err();
        assert!(e.to_string().contains("names provider `b`"), "{e}");
        let e = ModelsConfig::parse(
            "[tiers]\nembed = [\"a\"]\n[providers.a]\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nmodel = \"m\"\n",
            "models.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("sets no `embed_model`"), "{e}");
        let e = ModelsConfig::parse(
            "[providers.a]\nkind = \"openai\"\nbase_url = \"x\"\nfoo = 1\n",
            "models.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("line 4"), "{e}");
    }

    #[test]
    fn the_local_models_are_built_in_and_serve_every_tier() {
        let none = ModelsConfig::parse("", "models.toml").unwrap();
        for tier in ["small", "large", "embed"] {
            assert_eq!(none.tiers.chain(tier), ["local".to_string()]);
        }
        assert_eq!(none.providers["local"].kind, ProviderKind::Local);
        assert_eq!(
            none.providers["local"].model_for("embed"),
            Some(LOCAL_EMBEDDER)
        );
        assert_eq!(none.providers["local"].model_for("large"), Some(LOCAL_CHAT));
        // Naming one tier leaves the others on the local models.
        let some = ModelsConfig::parse(
            "[tiers]\nlarge = [\"a\"]\n[providers.a]\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nmodel = \"m\"\n",
            "models.toml",
        )
        .unwrap();
        assert_eq!(some.tiers.small, ["local".to_string()]);
        // A server is awaited 60 s unless the file says; the embedded
        // models as long as the run may last.
        assert_eq!(some.providers["a"].timeout(), Some(SERVER_TIMEOUT));
        assert_eq!(some.providers["local"].timeout(), None);
        let set = ModelsConfig::parse(
            "[providers.local]\nkind = \"local\"\ntimeout_ms = 1500\n",
            "models.toml",
        )
        .unwrap();
        assert_eq!(
            set.providers["local"].timeout(),
            Some(std::time::Duration::from_millis(1500))
        );
        let e = ModelsConfig::parse(
            "[providers.local]\nkind = \"local\"\nembed_model = \"other\"\n",
            "models.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("must be `all-minilm-l6-v2`"), "{e}");
        let e = ModelsConfig::parse(
            "[providers.local]\nkind = \"local\"\nmodel = \"llama-70b\"\n",
            "models.toml",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("must be `smollm2-135m-instruct`"),
            "{e}"
        );
        // An openai provider needs its URL; a local one does not.
        let e =
            ModelsConfig::parse("[providers.x]\nkind = \"openai\"\n", "models.toml").unwrap_err();
        assert!(e.to_string().contains("has base_url ``"), "{e}");
    }
}
