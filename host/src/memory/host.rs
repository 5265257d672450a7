//! `keel:host/memory`: working memory and long-term memories with hybrid
//! recall ([`crate::memory`]). `remember` and `recall` embed their text
//! with the operator's embed tier (metered to the plugin) and are audited;
//! working memory is the plugin's own scratch state and is not.

use std::time::Instant;

use crate::bindings::memory::{Host, Memory, RecallFilter, Recalled, Scope};
use crate::bindings::types;
use crate::error::CallError;
use crate::llm::{self, Metered};
use crate::memory;
use crate::run::RunCtx;
use crate::store::Touched;

/// What `keel:host/memory`'s host calls see: the run's context and its
/// working memory of scope `run`.
pub struct MemoryView<'a> {
    pub run: &'a mut RunCtx,
    pub working: &'a mut memory::RunMemory,
}

impl std::ops::Deref for MemoryView<'_> {
    type Target = RunCtx;
    fn deref(&self) -> &RunCtx {
        self.run
    }
}

impl std::ops::DerefMut for MemoryView<'_> {
    fn deref_mut(&mut self) -> &mut RunCtx {
        self.run
    }
}

struct MemoryData;

impl wasmtime::component::HasData for MemoryData {
    type Data<'a> = MemoryView<'a>;
}

/// Adds `keel:host/memory` to `linker`, over a [`MemoryView`] of each run.
pub fn add_to_linker<T: 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> MemoryView<'_>,
) -> wasmtime::Result<()> {
    crate::bindings::memory::add_to_linker::<T, MemoryData>(linker, get)
}

impl From<memory::Memory> for Memory {
    fn from(m: memory::Memory) -> Self {
        Memory {
            id: m.id,
            text: m.text,
            metadata: m.metadata,
            sources: m.sources,
            by: m.by,
            at: m.at,
            supersedes: m.supersedes,
        }
    }
}

/// An embedding made for memory, to meter with the call that used it.
struct Embedded {
    provider: String,
    model: String,
    vector: Vec<f32>,
    tokens_in: u32,
    cost_micros: i64,
    attempts: u32,
    wall_ms: u64,
}

fn metered<'a>(actor: &'a crate::store::Actor, e: &'a Embedded) -> Metered<'a> {
    Metered {
        run_id: actor.run_id.as_deref(),
        plugin: &actor.plugin,
        op: "embed",
        tier: "embed",
        provider: &e.provider,
        model: &e.model,
        tokens_in: e.tokens_in,
        tokens_out: 0,
        cost_micros: e.cost_micros,
        cacheable: false,
        cached: false,
        attempts: e.attempts,
        wall_ms: e.wall_ms,
    }
}

impl MemoryView<'_> {
    fn memory_permit(&self) -> Result<(), CallError> {
        if self.grant.capabilities.memory {
            Ok(())
        } else {
            Err(CallError::Denied(format!(
                "{} has no memory grant; add `memory = true` under [capabilities]",
                self.label
            )))
        }
    }

    /// Embeds `text` with the embed tier, within the plugin's token budget.
    fn embed_for_memory(&mut self, text: &str) -> Result<Embedded, CallError> {
        let held = self.reserve_tokens(llm::most_tokens(std::iter::once(text), 0))?;
        let started = Instant::now();
        let served = self.models().and_then(|config| {
            self.db.flush()?;
            llm::embed(
                &config,
                &self.home.cache(),
                &[text.to_string()],
                self.deadline,
            )
        });
        self.release_tokens(held);
        let served = served?;
        let model = format!("{}/{}", served.provider, served.value.model);
        Ok(Embedded {
            vector: served.value.vectors.into_iter().next().unwrap_or_default(),
            provider: served.provider,
            model,
            tokens_in: served.value.tokens_in,
            cost_micros: served.cost_micros,
            attempts: served.attempts,
            wall_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// One recall, narrowed by `filter` (or refused for it): checked,
    /// embedded, ranked and audited.
    fn recall_filtered(
        &mut self,
        query: String,
        k: u32,
        filter: Result<memory::Filter, CallError>,
    ) -> Result<Vec<Recalled>, types::Error> {
        let embedded = self
            .memory_permit()
            .and_then(|()| {
                if query.trim().is_empty() || query.len() > memory::MAX_TEXT_BYTES {
                    Err(CallError::Invalid(format!(
                        "a recall query is 1 to {} bytes",
                        memory::MAX_TEXT_BYTES
                    )))
                } else if k == 0 || k > memory::MAX_K {
                    Err(CallError::Invalid(format!(
                        "k must be 1 to {}, not {k}",
                        memory::MAX_K
                    )))
                } else {
                    Ok(())
                }
            })
            .and(filter)
            .and_then(|filter| Ok((filter, self.embed_for_memory(&query)?)));
        let (filter, e) = match embedded {
            Ok(e) => e,
            Err(error) => {
                return Err(self.memory_failed("memory.recall", error, format!("k {k}")));
            }
        };
        let actor = self.actor.clone();
        let grant = self.grant.clone();
        let metered = metered(&actor, &e);
        let vectors = self.home.cache::<memory::VectorCache>();
        let r = self.db.write(&actor, "memory.recall", None, Ok(()), |tx| {
            let viewer = memory::Viewer {
                grant: &grant,
                plugin: &actor.plugin,
            };
            let r = memory::recall(
                tx,
                &vectors,
                viewer,
                &query,
                e.vector.clone(),
                &e.model,
                k,
                &filter,
            )
            .and_then(|found| {
                llm::record(tx, &metered)?;
                Ok(found)
            });
            let detail = match &r {
                Ok(found) => format!(
                    "{} of k {k}{}: {}",
                    found.len(),
                    if filter.is_empty() { "" } else { ", filtered" },
                    found
                        .iter()
                        .map(|(m, _)| m.id.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                Err(_) => format!("k {k}"),
            };
            (r, Touched::detail(detail))
        });
        r.map(|found| {
            found
                .into_iter()
                .map(|(m, score)| Recalled {
                    memory: m.into(),
                    score,
                })
                .collect()
        })
        .map_err(types::Error::from)
    }

    /// Audits a refused or failed memory call; the guest's error.
    fn memory_failed(&mut self, action: &str, error: CallError, detail: String) -> types::Error {
        match error {
            CallError::Denied(reason) => self.refuse(action, reason, Touched::detail(detail)),
            error => self.fail(action, error, detail),
        }
    }
}

impl Host for MemoryView<'_> {
    fn set(
        &mut self,
        scope: Scope,
        key: String,
        value: String,
        ttl_seconds: Option<u32>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let r = self.memory_permit().and_then(|()| match scope {
            Scope::Run => self.working.set(key, value),
            Scope::Plugin => {
                let plugin = self.actor.plugin.clone();
                self.db
                    .in_call(|conn| memory::working_set(conn, &plugin, &key, &value, ttl_seconds))
            }
        });
        Ok(r.map_err(types::Error::from))
    }

    fn get(
        &mut self,
        scope: Scope,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, types::Error>> {
        let r = self.memory_permit().and_then(|()| match scope {
            Scope::Run => {
                memory::check_working(&key, None)?;
                Ok(self.working.get(&key).cloned())
            }
            Scope::Plugin => memory::working_get(self.db.conn(), &self.actor.plugin, &key),
        });
        Ok(r.map_err(types::Error::from))
    }

    fn remember(
        &mut self,
        text: String,
        metadata: String,
        sources: Vec<String>,
        supersedes: Option<String>,
    ) -> wasmtime::Result<Result<Memory, types::Error>> {
        let embedded = self
            .memory_permit()
            .and_then(|()| memory::check_memory(&text, &metadata))
            .and_then(|()| memory::check_sources(&sources))
            .and_then(|()| self.take_write())
            .and_then(|()| {
                self.embed_for_memory(&text)
                    .inspect_err(|_| self.quota.refund())
            });
        let e = match embedded {
            Ok(e) => e,
            Err(error) => {
                let detail = format!("{} bytes", text.len());
                return Ok(Err(self.memory_failed("memory.remember", error, detail)));
            }
        };
        let actor = self.actor.clone();
        let grant = self.grant.clone();
        let metered = metered(&actor, &e);
        let detail_model = e.model.clone();
        let r = self
            .db
            .write(&actor, "memory.remember", None, Ok(()), |tx| {
                let r = memory::insert(
                    tx,
                    &actor,
                    &grant,
                    &text,
                    &metadata,
                    &sources,
                    supersedes.as_deref(),
                    &e.model,
                    e.vector.clone(),
                )
                .and_then(|m| {
                    llm::record(tx, &metered)?;
                    Ok(m)
                });
                let detail = match &r {
                    Ok(m) => format!(
                        "memory {} from {} sources, embedded by {detail_model}{}",
                        m.id,
                        sources.len(),
                        supersedes
                            .as_ref()
                            .map(|s| format!(", supersedes {s}"))
                            .unwrap_or_default()
                    ),
                    Err(_) => format!("{} sources", sources.len()),
                };
                (r, Touched::detail(detail))
            });
        if r.is_err() {
            self.quota.refund();
        }
        Ok(r.map(Memory::from).map_err(types::Error::from))
    }

    fn recall(
        &mut self,
        query: String,
        k: u32,
    ) -> wasmtime::Result<Result<Vec<Recalled>, types::Error>> {
        Ok(self.recall_filtered(query, k, Ok(memory::Filter::default())))
    }

    fn recall_where(
        &mut self,
        query: String,
        k: u32,
        filter: RecallFilter,
    ) -> wasmtime::Result<Result<Vec<Recalled>, types::Error>> {
        let filter = memory::Filter::new(
            filter.by_plugin,
            filter.source,
            filter.metadata.as_deref(),
            filter.since.as_deref(),
        );
        Ok(self.recall_filtered(query, k, filter))
    }
}
