//! keel: a capability-secure WebAssembly host for a one-person company's
//! operations.
//!
//! # Layout
//! A capability is one module named after its WIT interface (a file, or a
//! file and a folder of the same name): its host impl (`host.rs`, over a
//! narrow view of the run), its logic, and the only SQL that writes its
//! tables. The modules, lowest first; each uses only those above it:
//!
//! - [`error`], [`limits`], [`terminal`]: call errors, size bounds, text
//!   from outside made safe to print.
//! - [`manifest`]: a plugin's `keel.toml` — capabilities (with the
//!   endpoints it asks for), limits, triggers, policy — parsed and
//!   validated.
//! - [`grant`]: what the operator granted (never more than asked); checked
//!   on every host call.
//! - [`store`]: the canonical record store (SQLite): the connection, the
//!   migrations, and [`store::Store::write`], the one write path (grant
//!   checked, then change and audit entry in one transaction);
//!   [`store::audit`] is the hash-chained audit log it appends to.
//! - [`home`] (the operator's data folder, and the in-memory caches of
//!   one home), [`secrets`], [`engine`] (wasmtime, the compiled cache),
//!   [`quota`] (write quotas per run and per day).
//! - [`net`]: the network under grants (`docs/network.md`) — the addresses
//!   a name may resolve to, the `wasi:http` sender that checks, bounds and
//!   audits every request, the TLS roots.
//! - [`run`]: one run's context ([`run::RunCtx`]), its cause, outcome and
//!   report; the `types`, `config` and `log` interfaces.
//! - [`records`]: records, versions, identities, links and events; the
//!   `records` interface.
//! - [`plugins`]: installed plugins, their versions and their runs.
//! - [`llm`]: models through the host — providers per tier from
//!   `HOME/models.toml`, retries, fallback, circuit breakers, cache,
//!   metering, budgets, the local models; the `llm` interface.
//! - [`memory`]: working memory and long-term memories with hybrid recall;
//!   the `memory` interface.
//! - [`sync_state`]: connectors' keyed sync state and checkpoints; the
//!   `sync-state` interface and `actions.checkpoint`.
//! - [`jobs`]: the durable queue (leases, retries with backoff, dead
//!   letters, rates) and [`jobs::webhooks`], authenticated POSTs turned
//!   into events and jobs.
//! - [`outbox`]: sends, and their delivery through the channel plugin that
//!   serves their channel, once per send.
//! - [`review`]: the review queue — sends waiting for approval, dead jobs,
//!   unsure writes, reached quotas.
//! - [`actions`]: the action registry — `create`, `update`, `link`,
//!   `schedule`, `send`, task claims ([`actions::tasks`]) and actions
//!   plugins provide ([`actions::invoke`]); the `actions` interface.
//! - [`triggers`]: time and event triggers from manifests, turned into jobs.
//! - [`runtime`]: runs — a fresh `Store` per invocation from a
//!   pre-instantiated component, WASI from the grant, limits, the linker
//!   that gives each interface its view of the run.
//! - [`install`]: install, update, rollback and remove (checks imports
//!   against the manifest), with the consent shown, the lockfile and
//!   signed packages.
//! - [`up`]: `keel up`, the workers that execute durable jobs.
//! - [`embedded`], [`demo`], [`bench`], [`scaffold`], [`cli`]: the `keel`
//!   command, one module per command group, and what only it uses (the
//!   plugins the binary carries, `keel new`'s templates and SDK); the core
//!   imports none of them.

pub mod actions;
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
pub mod net;
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
pub mod sync_state;
pub mod terminal;
#[cfg(test)]
mod testing;
pub mod triggers;
pub mod up;
