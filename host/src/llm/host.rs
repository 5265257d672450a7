//! `keel:host/llm`: completions and embeddings from the operator's models
//! ([`crate::llm`]), checked against the plugin's `llm` grant and daily
//! budget, metered in `llm_calls` and audited through the write path.

use std::time::Instant;

use crate::bindings::llm::{Completion, CompletionRequest, Embeddings, Host, Tier};
use crate::bindings::types;
use crate::error::CallError;
use crate::llm::{self, ChatRequest, Metered, ModelsConfig};
use crate::run::{RunCtx, RunData};
use crate::store::Touched;

/// Most messages, and most bytes across them, in one request.
const MAX_MESSAGES: usize = 256;
const MAX_PROMPT_BYTES: usize = 512 * 1024;
/// Most tokens one completion may ask for.
const MAX_TOKENS: u32 = 32_768;
/// Most texts, and most bytes across them, in one embedding request.
const MAX_TEXTS: usize = 512;
const MAX_EMBED_BYTES: usize = 1024 * 1024;

fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Small => "small",
        Tier::Large => "large",
    }
}

impl RunCtx {
    /// Refuses a call the grant or budget does not allow: `Err((reason,
    /// detail))` for a denial, `Ok(Err(limit))` for a spent budget.
    fn llm_permit(&self, tier: &str) -> Result<Result<(), CallError>, (String, Touched)> {
        let Some(llm) = &self.grant.capabilities.llm else {
            return Err((
                format!(
                    "{} has no model grant; add `llm = {{ tiers = [\"{tier}\"] }}` under [capabilities]",
                    self.label
                ),
                Touched::detail(tier),
            ));
        };
        let allowed = if tier == "embed" {
            llm.embed
        } else {
            llm.tiers.iter().any(|t| t.as_str() == tier)
        };
        if !allowed {
            let what = if tier == "embed" {
                "embeddings (`embed = true`)".to_string()
            } else {
                format!("tier `{tier}`")
            };
            return Err((
                format!("{} is not granted {what}", self.label),
                Touched::detail(tier),
            ));
        }
        Ok(Ok(()))
    }

    /// Reserves the most tokens a call may use from the plugin's daily
    /// budget before it runs (none without a budget); `limit` when they are
    /// not left. Committed at once, so calls in other runs see it.
    pub(crate) fn reserve_tokens(&mut self, tokens: u64) -> Result<Option<i64>, CallError> {
        let Some(budget) = self
            .grant
            .capabilities
            .llm
            .as_ref()
            .and_then(|l| l.tokens_per_day)
        else {
            return Ok(None);
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        let until = chrono::Utc::now().timestamp_millis()
            + i64::try_from(left.as_millis()).unwrap_or(i64::MAX / 2);
        let plugin = self.actor.plugin.clone();
        let id = self
            .db
            .in_call(|conn| llm::reserve(conn, &plugin, budget, tokens, until))
            .map_err(|e| match e {
                CallError::Limit(m) => CallError::Limit(m.replacen(&plugin, &self.label, 1)),
                other => other,
            })?;
        self.db.flush()?;
        Ok(Some(id))
    }

    /// Gives a reservation back (its call is metered in the same
    /// transaction, or failed).
    pub(crate) fn release_tokens(&mut self, reservation: Option<i64>) {
        if let Some(id) = reservation
            && let Err(e) = self.db.in_call(|conn| Ok(llm::release(conn, id)?))
        {
            tracing::warn!(plugin = %self.label, "could not release a token reservation: {e}");
        }
    }

    /// The operator's model configuration, with the API keys kept as
    /// secrets opened.
    pub(crate) fn models(&self) -> Result<ModelsConfig, CallError> {
        let root = self.home.root();
        let mut config =
            ModelsConfig::load(root).map_err(|e| CallError::Unavailable(format!("{e:#}")))?;
        for p in config.providers.values_mut() {
            if let Some(name) = &p.api_key_secret {
                p.api_key = Some(
                    crate::secrets::reveal(root, self.db.conn(), name)
                        .map_err(|e| format!("{e:#}")),
                );
            }
        }
        Ok(config)
    }
}

fn check_request(req: &CompletionRequest) -> Result<ChatRequest, CallError> {
    if req.messages.is_empty() || req.messages.len() > MAX_MESSAGES {
        return Err(CallError::Invalid(format!(
            "a completion needs 1 to {MAX_MESSAGES} messages, not {}",
            req.messages.len()
        )));
    }
    let bytes: usize = req.messages.iter().map(|m| m.content.len()).sum();
    if bytes > MAX_PROMPT_BYTES {
        return Err(CallError::Limit(format!(
            "the messages hold {bytes} bytes, over the {MAX_PROMPT_BYTES}-byte limit"
        )));
    }
    if let Some(m) = req
        .messages
        .iter()
        .find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
    {
        return Err(CallError::Invalid(format!(
            "message role `{}` is not system, user or assistant",
            m.role
        )));
    }
    if req.max_tokens == 0 || req.max_tokens > MAX_TOKENS {
        return Err(CallError::Invalid(format!(
            "max-tokens must be 1 to {MAX_TOKENS}, not {}",
            req.max_tokens
        )));
    }
    if !(0.0..=2.0).contains(&req.temperature) {
        return Err(CallError::Invalid(format!(
            "temperature must be 0.0 to 2.0, not {}",
            req.temperature
        )));
    }
    let schema = match &req.schema {
        None => None,
        Some(text) => {
            let v: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| CallError::Invalid(format!("the schema is not JSON: {e}")))?;
            if !v.is_object() {
                return Err(CallError::Invalid(
                    "the schema must be a JSON object".into(),
                ));
            }
            Some(v)
        }
    };
    Ok(ChatRequest {
        messages: req
            .messages
            .iter()
            .map(|m| (m.role.clone(), m.content.clone()))
            .collect(),
        tier: tier_name(req.tier).to_string(),
        max_tokens: req.max_tokens,
        temperature: req.temperature,
        schema,
        schema_text: req.schema.clone(),
    })
}

/// A completion as it was served, before it is metered.
struct Answered {
    key: Option<String>,
    provider: String,
    answer: llm::Answer,
    attempts: u32,
    cost_micros: i64,
    cached: bool,
}

impl RunCtx {
    /// A completion from the cache or the operator's models.
    fn answer(&mut self, request: &CompletionRequest) -> Result<Answered, CallError> {
        let req = check_request(request)?;
        let config = self.models()?;
        let key =
            (req.temperature == 0.0).then(|| llm::cache_key(&config, &req, &self.actor.plugin));
        if let Some(key) = &key
            && let Some((provider, answer)) = llm::cached(self.db.conn(), key)?
        {
            return Ok(Answered {
                key: Some(key.clone()),
                provider,
                answer,
                attempts: 0,
                cost_micros: 0,
                cached: true,
            });
        }
        // The run's grouped writes are committed first: a model call can
        // take seconds and must not hold the store's write lock.
        self.db.flush()?;
        let served = llm::complete(&config, &self.home.cache(), &req, self.deadline)?;
        Ok(Answered {
            key,
            provider: served.provider,
            answer: served.value,
            attempts: served.attempts,
            cost_micros: served.cost_micros,
            cached: false,
        })
    }
}

impl Host for RunCtx {
    fn complete(
        &mut self,
        request: CompletionRequest,
    ) -> wasmtime::Result<Result<Completion, types::Error>> {
        let tier = tier_name(request.tier);
        let started = Instant::now();
        match self.llm_permit(tier) {
            Err((reason, touched)) => {
                return Ok(Err(self.refuse("llm.complete", reason, touched)));
            }
            Ok(Err(limit)) => {
                return Ok(Err(self.fail(
                    "llm.complete",
                    limit,
                    format!("tier {tier}"),
                )));
            }
            Ok(Ok(())) => {}
        }
        let most = llm::most_tokens(
            request.messages.iter().map(|m| m.content.as_str()),
            request.max_tokens,
        );
        let answered = self
            .reserve_tokens(most)
            .map(|held| (held, self.answer(&request)));
        let (held, answered) = match answered {
            Ok((held, a)) => (held, a),
            Err(e) => return Ok(Err(self.fail("llm.complete", e, format!("tier {tier}")))),
        };
        self.release_tokens(held);
        let a = match answered {
            Ok(a) => a,
            Err(e) => return Ok(Err(self.fail("llm.complete", e, format!("tier {tier}")))),
        };
        let model = format!("{}/{}", a.provider, a.answer.model);
        let (tokens_in, tokens_out) = if a.cached {
            (0, 0)
        } else {
            (a.answer.tokens_in, a.answer.tokens_out)
        };
        let detail = format!(
            "tier {tier} -> {model}, {tokens_in}+{tokens_out} tokens{}{}",
            if a.cost_micros > 0 {
                format!(", ${:.6}", a.cost_micros as f64 / 1e6)
            } else {
                String::new()
            },
            if a.cached { ", from the cache" } else { "" }
        );
        let actor = self.actor.clone();
        let metered = Metered {
            run_id: actor.run_id.as_deref(),
            plugin: &actor.plugin,
            op: "complete",
            tier,
            provider: &a.provider,
            model: &model,
            tokens_in,
            tokens_out,
            cost_micros: a.cost_micros,
            cacheable: a.key.is_some(),
            cached: a.cached,
            attempts: a.attempts,
            wall_ms: started.elapsed().as_millis() as u64,
        };
        let r: Result<(), CallError> = self.db.write(&actor, "llm.complete", None, Ok(()), |tx| {
            let r = llm::record(tx, &metered)
                .and_then(|()| match &a.key {
                    Some(key) => llm::remember(tx, key, &a.provider, &a.answer, a.cached),
                    None => Ok(()),
                })
                .map_err(CallError::from);
            (r, Touched::detail(detail))
        });
        if let Err(e) = r {
            return Ok(Err(e.into()));
        }
        Ok(Ok(Completion {
            text: a.answer.text,
            model,
            tokens_in,
            tokens_out,
            finish_reason: a.answer.finish_reason,
            cached: a.cached,
        }))
    }

    fn embed(&mut self, texts: Vec<String>) -> wasmtime::Result<Result<Embeddings, types::Error>> {
        let started = Instant::now();
        let budget = match self.llm_permit("embed") {
            Err((reason, touched)) => return Ok(Err(self.refuse("llm.embed", reason, touched))),
            Ok(b) => b,
        };
        let bytes: usize = texts.iter().map(String::len).sum();
        let served = match budget {
            Err(limit) => Err(limit),
            Ok(()) if texts.is_empty() || texts.len() > MAX_TEXTS => Err(CallError::Invalid(
                format!("embed takes 1 to {MAX_TEXTS} texts, not {}", texts.len()),
            )),
            Ok(()) if bytes > MAX_EMBED_BYTES => Err(CallError::Limit(format!(
                "the texts hold {bytes} bytes, over the {MAX_EMBED_BYTES}-byte limit"
            ))),
            Ok(()) => {
                let most = llm::most_tokens(texts.iter().map(String::as_str), 0);
                self.reserve_tokens(most).and_then(|held| {
                    let served = self.models().and_then(|config| {
                        self.db.flush().map_err(CallError::from)?;
                        llm::embed(&config, &self.home.cache(), &texts, self.deadline)
                    });
                    self.release_tokens(held);
                    served
                })
            }
        };
        let served = match served {
            Ok(s) => s,
            Err(error) => {
                let detail = format!("{} texts", texts.len());
                return Ok(Err(self.fail("llm.embed", error, detail)));
            }
        };
        let model = format!("{}/{}", served.provider, served.value.model);
        let tokens_in = served.value.tokens_in;
        let dimension = served.value.vectors.first().map_or(0, Vec::len);
        let detail = format!(
            "{} texts -> {model}, {dimension} dimensions, {tokens_in} tokens",
            texts.len()
        );
        let actor = self.actor.clone();
        let run_id = actor.run_id.clone();
        let plugin = actor.plugin.clone();
        let wall_ms = started.elapsed().as_millis() as u64;
        let r: Result<(), CallError> = self.db.write(&actor, "llm.embed", None, Ok(()), |tx| {
            let r = llm::record(
                tx,
                &Metered {
                    run_id: run_id.as_deref(),
                    plugin: &plugin,
                    op: "embed",
                    tier: "embed",
                    provider: &served.provider,
                    model: &model,
                    tokens_in,
                    tokens_out: 0,
                    cost_micros: served.cost_micros,
                    cacheable: false,
                    cached: false,
                    attempts: served.attempts,
                    wall_ms,
                },
            )
            .map_err(CallError::from);
            (r, Touched::detail(detail))
        });
        if let Err(e) = r {
            return Ok(Err(e.into()));
        }
        Ok(Ok(Embeddings {
            vectors: served.value.vectors,
            model,
            dimension: u32::try_from(dimension).unwrap_or(u32::MAX),
        }))
    }
}

/// Adds `keel:host/llm` to `linker`, over each run's [`RunCtx`].
pub fn add_to_linker<T: 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> &mut RunCtx,
) -> wasmtime::Result<()> {
    crate::bindings::llm::add_to_linker::<T, RunData>(linker, get)
}
