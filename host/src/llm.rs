//! Models, mediated by the host: the operator's providers per tier
//! ([`config`]), retries with backoff for transient failures (timeouts, 429
//! with Retry-After, 5xx, malformed answers), fallback to the next provider
//! in the tier's chain, a circuit breaker per provider, a cache of
//! temperature-0 answers, and metering (tokens and cost per run, plugin and
//! day) with the plugins' daily budgets.

mod host;
pub use host::add_to_linker;

pub mod config;
mod local;
mod openai;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::CallError;
pub use config::ModelsConfig;
use config::{Provider, ProviderKind};

/// Failures in a row after which a provider is skipped for a while.
const BREAKER_FAILURES: u32 = 3;
/// How long an open breaker skips its provider.
const BREAKER_OPEN: Duration = Duration::from_secs(30);
/// Longest wait between retries, whatever Retry-After says.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A completion request, checked.
#[derive(Debug, Clone, Serialize)]
pub struct ChatRequest {
    /// `(role, content)`.
    pub messages: Vec<(String, String)>,
    /// `small` or `large`.
    pub tier: String,
    pub max_tokens: u32,
    pub temperature: f32,
    pub schema: Option<serde_json::Value>,
    /// The schema as the plugin wrote it (its property order is the order
    /// a steered answer is written in, so it is part of the cache key).
    pub schema_text: Option<String>,
}

/// What a provider answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub text: String,
    pub model: String,
    pub tokens_in: u32,
    pub tokens_out: u32,
    pub finish_reason: String,
}

/// Embeddings a provider answered.
#[derive(Debug, Clone)]
pub struct Vectors {
    pub vectors: Vec<Vec<f32>>,
    pub model: String,
    pub tokens_in: u32,
}

/// Why one attempt failed.
#[derive(Debug, Clone)]
pub enum Failure {
    /// Worth retrying (after the server's Retry-After, if it said).
    Transient(String, Option<Duration>),
    /// Retrying this provider would not help; the next one may.
    Permanent(String),
}

/// An answer and who gave it.
#[derive(Debug, Clone)]
pub struct Served<T> {
    pub value: T,
    /// The provider's name in `models.toml`.
    pub provider: String,
    /// `provider/model` as the provider named it.
    pub model: String,
    pub attempts: u32,
    pub cost_micros: i64,
    pub cached: bool,
}

#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

/// The circuit breaker of each provider of one home, by provider name
/// (kept in the home: [`crate::home::Home::cache`]).
#[derive(Debug, Default)]
pub struct Breakers(Mutex<HashMap<String, Breaker>>);

impl Breakers {
    fn open(&self, name: &str) -> bool {
        let breakers = self.0.lock().unwrap_or_else(|p| p.into_inner());
        breakers
            .get(name)
            .and_then(|b| b.open_until)
            .is_some_and(|until| Instant::now() < until)
    }

    fn record(&self, name: &str, ok: bool) {
        let mut breakers = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let b = breakers.entry(name.to_string()).or_default();
        if ok {
            *b = Breaker::default();
        } else {
            b.failures += 1;
            if b.failures >= BREAKER_FAILURES {
                b.open_until = Some(Instant::now() + BREAKER_OPEN);
            }
        }
    }
}

/// Time left before `deadline`, keeping a margin for the run to finish.
fn time_left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .saturating_sub(Duration::from_millis(100))
}

/// Tries the tier's providers in order, each with its retries, until one
/// answers in a way `accept` takes.
fn serve<T>(
    config: &ModelsConfig,
    breakers: &Breakers,
    tier: &str,
    deadline: Instant,
    call: impl Fn(&Provider, &str, Duration) -> Result<T, Failure>,
    accept: impl Fn(&T) -> Result<(), String>,
) -> Result<Served<T>, CallError> {
    let chain = config.tiers.chain(tier);
    if chain.is_empty() {
        return Err(CallError::Unavailable(format!(
            "no model serves tier `{tier}`; the operator names one under [tiers] in the home's models.toml"
        )));
    }
    let mut failures = Vec::new();
    let mut attempts = 0;
    for name in chain {
        let Some(provider) = config.providers.get(name) else {
            continue;
        };
        let Some(model) = provider.model_for(tier) else {
            continue;
        };
        if breakers.open(name) {
            failures.push(format!(
                "{name}: skipped, it failed {BREAKER_FAILURES} times in a row"
            ));
            continue;
        }
        let mut last = String::new();
        for attempt in 0..=provider.retries {
            let left = time_left(deadline);
            if left < Duration::from_millis(50) {
                failures.push(format!("{name}: the run's deadline left no time"));
                return Err(unavailable(tier, &failures));
            }
            let timeout = provider.timeout().map_or(left, |t| left.min(t));
            attempts += 1;
            let result = call(provider, model, timeout);
            let failure = match result {
                Ok(value) => match accept(&value) {
                    Ok(()) => {
                        breakers.record(name, true);
                        return Ok(Served {
                            value,
                            provider: name.clone(),
                            model: format!("{name}/{model}"),
                            attempts,
                            cost_micros: 0,
                            cached: false,
                        });
                    }
                    Err(why) => Failure::Transient(why, None),
                },
                Err(f) => f,
            };
            match failure {
                Failure::Permanent(why) => {
                    last = why;
                    break;
                }
                Failure::Transient(why, retry_after) => {
                    last = why;
                    if attempt < provider.retries {
                        let backoff = retry_after
                            .unwrap_or(Duration::from_millis(200 << attempt.min(6)))
                            .min(MAX_BACKOFF)
                            .min(time_left(deadline));
                        std::thread::sleep(backoff);
                    }
                }
            }
        }
        breakers.record(name, false);
        failures.push(format!("{name}: {last}"));
    }
    Err(unavailable(tier, &failures))
}

fn unavailable(tier: &str, failures: &[String]) -> CallError {
    CallError::Unavailable(format!(
        "no model answered tier `{tier}`: {}",
        failures.join("; ")
    ))
}

/// A completion for `req` from the first provider of its tier that gives a
/// valid one (matching `req.schema`, when there is one).
pub fn complete(
    config: &ModelsConfig,
    breakers: &Breakers,
    req: &ChatRequest,
    deadline: Instant,
) -> Result<Served<Answer>, CallError> {
    let validator = match &req.schema {
        Some(schema) => Some(
            jsonschema::validator_for(schema)
                .map_err(|e| CallError::Invalid(format!("the schema is not valid: {e}")))?,
        ),
        None => None,
    };
    let mut served = serve(
        config,
        breakers,
        &req.tier,
        deadline,
        |p, model, timeout| match p.kind {
            ProviderKind::Openai => openai::chat(p, model, req, timeout),
            ProviderKind::Local => local::chat::chat(&p.weights_dir(), model, req, timeout),
        },
        |answer: &Answer| {
            let Some(v) = &validator else { return Ok(()) };
            let json: serde_json::Value = serde_json::from_str(&answer.text)
                .map_err(|_| "the answer is not the JSON the schema asks for".to_string())?;
            if v.is_valid(&json) {
                Ok(())
            } else {
                Err("the answer does not match the schema".into())
            }
        },
    )?;
    if let Some(p) = config.providers.get(&served.provider) {
        served.cost_micros = p.cost_micros(served.value.tokens_in, served.value.tokens_out);
    }
    Ok(served)
}

/// Embeddings of `texts` from the embedding tier.
pub fn embed(
    config: &ModelsConfig,
    breakers: &Breakers,
    texts: &[String],
    deadline: Instant,
) -> Result<Served<Vectors>, CallError> {
    let mut served = serve(
        config,
        breakers,
        "embed",
        deadline,
        |p, model, timeout| match p.kind {
            ProviderKind::Openai => openai::embed(p, model, texts, timeout),
            ProviderKind::Local => local::embed::embed(&p.weights_dir(), model, texts),
        },
        |v: &Vectors| {
            let dim = v.vectors.first().map_or(0, Vec::len);
            if dim == 0 || v.vectors.iter().any(|x| x.len() != dim) {
                Err("the vectors are empty or of different lengths".into())
            } else {
                Ok(())
            }
        },
    )?;
    if let Some(p) = config.providers.get(&served.provider) {
        served.cost_micros = p.cost_micros(served.value.tokens_in, 0);
    }
    Ok(served)
}

/// Sentences per second the local embedder embeds from the weights in
/// `dir`, over `n` short sentences (after one warm-up batch); the reason
/// when it cannot run.
pub fn embed_rate(dir: &std::path::Path, n: usize) -> Result<f64, String> {
    let sentences: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "note {i}: call the supplier about invoice {} before friday",
                i * 7
            )
        })
        .collect();
    let why = |f: Failure| match f {
        Failure::Permanent(m) | Failure::Transient(m, _) => m,
    };
    local::embed::embed(dir, config::LOCAL_EMBEDDER, &sentences[..16.min(n)]).map_err(why)?;
    let started = Instant::now();
    local::embed::embed(dir, config::LOCAL_EMBEDDER, &sentences).map_err(why)?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// The local chat model's speed from the weights in `dir`: prompt tokens
/// read and answer tokens written per second (up to `tokens` written); the
/// reason when it cannot run.
pub fn chat_rate(dir: &std::path::Path, tokens: u32) -> Result<(f64, f64), String> {
    local::chat::rate(dir, tokens).map_err(|f| match f {
        Failure::Permanent(m) | Failure::Transient(m, _) => m,
    })
}

/// The cache key of a temperature-0 request: the plugin asking, the
/// request and the models that would serve it, so a change of model misses
/// and no plugin learns from a hit what another plugin asked.
pub fn cache_key(config: &ModelsConfig, req: &ChatRequest, plugin: &str) -> String {
    let models: Vec<String> = config
        .tiers
        .chain(&req.tier)
        .iter()
        .filter_map(|name| {
            let p = config.providers.get(name)?;
            Some(format!("{name}/{}@{}", p.model_for(&req.tier)?, p.base_url))
        })
        .collect();
    let key = serde_json::json!({ "plugin": plugin, "models": models, "request": req });
    hex::encode(Sha256::digest(key.to_string().as_bytes()))
}

/// A cached answer and the provider that gave it.
pub fn cached(conn: &Connection, key: &str) -> rusqlite::Result<Option<(String, Answer)>> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT provider, answer FROM llm_cache WHERE key = ?1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.and_then(|(p, a)| Some((p, serde_json::from_str(&a).ok()?))))
}

/// Tokens (in + out) `plugin` spent on models today (UTC).
/// Reserves `tokens` of `plugin`'s daily `budget` for a call that may run
/// until `until_ms` (Unix ms): `limit` when the tokens spent today, those
/// held by calls in flight and these would pass the budget. Run in a write
/// transaction, so two calls never both take the last tokens.
pub fn reserve(
    conn: &Connection,
    plugin: &str,
    budget: u64,
    tokens: u64,
    until_ms: i64,
) -> Result<i64, crate::error::CallError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    conn.prepare_cached("DELETE FROM token_reservations WHERE plugin = ?1 AND until_ms <= ?2")?
        .execute(params![plugin, now_ms])?;
    let held: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(tokens), 0) FROM token_reservations WHERE plugin = ?1 AND day = ?2",
        )?
        .query_row(params![plugin, day], |r| r.get(0))?;
    let spent = spent_today(conn, plugin)?;
    let held = u64::try_from(held).unwrap_or(0);
    if spent.saturating_add(held).saturating_add(tokens) > budget {
        return Err(crate::error::CallError::Limit(format!(
            "{plugin} has {} of its {budget} model tokens for today left ({spent} spent, {held} held by calls in flight) and this call may use {tokens}; ask for fewer max-tokens, or wait for the budget to renew at 00:00 UTC",
            budget.saturating_sub(spent.saturating_add(held))
        )));
    }
    conn.prepare_cached(
        "INSERT INTO token_reservations (plugin, day, tokens, until_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        plugin,
        day,
        i64::try_from(tokens).unwrap_or(i64::MAX),
        until_ms
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Gives back a reservation once its call is metered (or failed).
pub fn release(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM token_reservations WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// The most tokens a call can use: every prompt byte a token (a token is at
/// least one byte), a few more per message for the chat template, and all
/// the answer tokens it may write.
pub fn most_tokens<'a>(texts: impl Iterator<Item = &'a str>, max_out: u32) -> u64 {
    texts
        .map(|t| t.len() as u64 + 16)
        .sum::<u64>()
        .saturating_add(u64::from(max_out))
}

pub fn spent_today(conn: &Connection, plugin: &str) -> rusqlite::Result<u64> {
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    conn.prepare_cached(
        "SELECT COALESCE(SUM(tokens_in + tokens_out), 0) FROM llm_calls WHERE plugin = ?1 AND day = ?2",
    )?
    .query_row(params![plugin, day], |r| r.get::<_, i64>(0))
    .map(|n| u64::try_from(n).unwrap_or(0))
}

/// One metered call, as `llm_calls` keeps it.
#[derive(Debug, Clone)]
pub struct Metered<'a> {
    pub run_id: Option<&'a str>,
    pub plugin: &'a str,
    pub op: &'a str,
    pub tier: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    pub tokens_in: u32,
    pub tokens_out: u32,
    pub cost_micros: i64,
    pub cacheable: bool,
    pub cached: bool,
    pub attempts: u32,
    pub wall_ms: u64,
}

/// Records a metered call.
pub fn record(conn: &Connection, m: &Metered<'_>) -> rusqlite::Result<()> {
    let now = chrono::Utc::now();
    conn.prepare_cached(
        "INSERT INTO llm_calls (run_id, plugin, day, at, op, tier, provider, model, tokens_in, tokens_out, cost_micros, cacheable, cached, attempts, wall_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        m.run_id,
        m.plugin,
        now.format("%Y-%m-%d").to_string(),
        crate::store::now(),
        m.op,
        m.tier,
        m.provider,
        m.model,
        m.tokens_in,
        m.tokens_out,
        m.cost_micros,
        m.cacheable,
        m.cached,
        m.attempts,
        i64::try_from(m.wall_ms).unwrap_or(i64::MAX),
    ])?;
    Ok(())
}

/// Keeps a temperature-0 answer, or counts a hit on one.
pub fn remember(
    conn: &Connection,
    key: &str,
    provider: &str,
    answer: &Answer,
    hit: bool,
) -> rusqlite::Result<()> {
    if hit {
        conn.prepare_cached("UPDATE llm_cache SET hits = hits + 1 WHERE key = ?1")?
            .execute([key])?;
    } else {
        conn.prepare_cached(
            "INSERT OR REPLACE INTO llm_cache (key, provider, answer, created_at, hits) VALUES (?1, ?2, ?3, ?4, 0)",
        )?
        .execute(params![
            key,
            provider,
            serde_json::to_string(answer).unwrap_or_default(),
            crate::store::now()
        ])?;
    }
    Ok(())
}

/// Usage summed per day, plugin and model: `keel usage`.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub day: String,
    pub plugin: String,
    pub model: String,
    pub calls: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    /// Dollars.
    pub cost: f64,
    pub cache_hits: i64,
    pub cache_misses: i64,
}

/// Usage since `since` (a `YYYY-MM-DD` day), for one plugin or all.
pub fn usage(
    conn: &Connection,
    plugin: Option<&str>,
    since: Option<&str>,
) -> rusqlite::Result<Vec<Usage>> {
    let mut stmt = conn.prepare(
        "SELECT day, plugin, model, COUNT(*), SUM(tokens_in), SUM(tokens_out), SUM(cost_micros),
                SUM(cached), SUM(cacheable AND NOT cached)
         FROM llm_calls
         WHERE (?1 IS NULL OR plugin = ?1) AND (?2 IS NULL OR day >= ?2)
         GROUP BY day, plugin, model ORDER BY day, plugin, model",
    )?;
    let rows = stmt.query_map(params![plugin, since], |r| {
        Ok(Usage {
            day: r.get(0)?,
            plugin: r.get(1)?,
            model: r.get(2)?,
            calls: r.get(3)?,
            tokens_in: r.get(4)?,
            tokens_out: r.get(5)?,
            cost: r.get::<_, i64>(6)? as f64 / 1e6,
            cache_hits: r.get(7)?,
            cache_misses: r.get(8)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn m8_a_budget_is_reserved_before_a_call_so_concurrent_calls_cannot_overrun_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keel.db");
        let mut a = crate::store::Store::open(&path).unwrap();
        let mut b = crate::store::Store::open(&path).unwrap();
        let until = chrono::Utc::now().timestamp_millis() + 60_000;
        // Two runs at once each ask for 600 of a 1000-token budget: the
        // second is refused before it runs, whichever connection it uses.
        let first = a.in_call(|c| reserve(c, "p", 1000, 600, until)).unwrap();
        let second = b.in_call(|c| reserve(c, "p", 1000, 600, until));
        match second {
            Err(CallError::Limit(m)) => {
                assert!(
                    m.contains("400 of its 1000 model tokens for today left"),
                    "{m}"
                )
            }
            other => panic!("expected limit, got {other:?}"),
        }
        // Released, the tokens are there again; a lapsed reservation (its
        // run died) frees itself.
        a.in_call(|c| Ok(release(c, first)?)).unwrap();
        b.in_call(|c| reserve(c, "p", 1000, 600, 0)).unwrap();
        b.in_call(|c| reserve(c, "p", 1000, 1000, until)).unwrap();
    }

    #[test]
    fn low_the_model_cache_is_scoped_per_plugin() {
        let config = ModelsConfig::parse(
            "[tiers]\nsmall = [\"a\"]\n[providers.a]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\n",
            "models.toml",
        )
        .unwrap();
        let req = ChatRequest {
            messages: vec![("user".into(), "hello".into())],
            tier: "small".into(),
            max_tokens: 8,
            temperature: 0.0,
            schema: None,
            schema_text: None,
        };
        assert_eq!(cache_key(&config, &req, "a"), cache_key(&config, &req, "a"));
        assert_ne!(cache_key(&config, &req, "a"), cache_key(&config, &req, "b"));
    }

    #[test]
    fn the_most_tokens_of_a_call_bound_what_it_can_use() {
        assert_eq!(most_tokens(["abc", ""].into_iter(), 10), 3 + 16 + 16 + 10);
    }
}
