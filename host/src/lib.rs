//! keel: a capability-secure WebAssembly host for a one-person company's
//! operations.
//!
//! # Layout
//! How the modules map to the design's words:
//!
//! - [`manifest`]: a plugin's `keel.toml` — capabilities it asks for, limits.
//! - [`grant`]: what the operator granted (never more than asked); checked on
//!   every host call.
//! - [`store`]: the canonical record store (SQLite). [`store::Store::write`]
//!   is the one write path: record, version, event and audit entry in one
//!   transaction. [`store::audit`] is the hash-chained audit log.
//! - [`actions`]: the action registry — `create`, `update`, `link`,
//!   `schedule`, `send` — each a grant check plus the write path.
//! - [`invoke`]: actions plugins provide (`provider` world) and
//!   `actions.invoke`, which runs the provider as a linked run.
//! - [`engine`]: the wasmtime engine (pooling, fuel, epochs) and the
//!   compiled-component cache.
//! - [`runtime`]: runs — a fresh `Store` per invocation, WASI from the grant,
//!   limits, the run record.
//! - [`host`]: one module per WIT interface (`records`, `actions`, `log`,
//!   `config`, `llm`, `memory`), implemented on the per-run
//!   [`host::HostCtx`].
//! - [`packages`]: `keel plugin pack|sign`, signing keys and the trusted
//!   keys an install checks a package's signature against.
//! - [`lockfile`]: `keel.lock` in the home, what is installed and granted.
//! - [`plugins`]: install (checks imports against the manifest), list,
//!   remove.
//! - [`review`]: the review queue — sends waiting for approval, dead jobs.
//! - [`tasks`]: claims on `core/task` records (the multi-agent handoff)
//!   and the supervisor that reopens expired claims.
//! - [`delivery`]: queued and approved sends handed to the channel plugin
//!   that serves their channel, once per send.
//! - [`models`]: models through the host (`llm`): providers per tier from
//!   `HOME/models.toml`, retries, fallback, circuit breaker, cache,
//!   metering and budgets; the local embedder.
//! - [`memory`]: working memory and long-term memories with hybrid recall.
//! - [`home`]: the operator's data folder.
//! - [`quota`]: write quotas per run and per day.
//! - [`triggers`]: time and event triggers from manifests, turned into jobs.
//! - [`webhooks`]: authenticated POSTs on `keel up --listen` turned into
//!   events and jobs.
//! - [`up`]: `keel up`, the worker that executes durable jobs
//!   ([`store::jobs`]: leases, retries with backoff, dead letters).
//! - [`scaffold`]: `keel new`, a plugin project per language, with the
//!   Rust SDK the binary carries.
//! - [`cli`]: the `keel` command, one module per command group; with
//!   [`demo`], [`bench`] and [`scaffold`] it sits on top of the core, which
//!   imports none of them. [`embedded`]: the first-party plugins the binary
//!   carries for the demo and the bench. [`terminal`] makes text from
//!   outside safe to print.

pub mod actions;
pub mod audit;
pub mod bench;
mod bindings;
pub mod cli;
pub mod demo;
pub mod embedded;
pub mod engine;
pub mod error;
pub mod grant;
pub mod home;
pub mod install;
pub mod jobs;
pub mod limits;
pub mod llm;
pub mod manifest;
pub mod memory;
pub mod outbox;
pub mod plugins;
pub mod quota;
pub mod records;
pub mod review;
pub mod run;
pub mod runtime;
pub mod scaffold;
pub mod secrets;
pub mod store;
pub mod terminal;
#[cfg(test)]
mod testing;
pub mod triggers;
pub mod up;

// Former paths, until the command modules name the new owners.
pub use actions::invoke;
pub use install::{consent, packages};
pub use jobs::webhooks;
pub use llm as models;
