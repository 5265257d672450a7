//! `keel-sdk`: write keel plugins in Rust.
//!
//! A plugin is a WebAssembly component for one of keel's worlds. Depend on
//! the world's crate — `keel-agent` or `keel-connector` — which re-exports
//! this one, implement its trait, and export it:
//!
//! ```ignore
//! use keel_agent::prelude::*;
//!
//! struct Todo;
//!
//! impl Agent for Todo {
//!     fn handle(_trigger: Trigger) -> Result<Outcome, Error> {
//!         let mut made = 0;
//!         for doc in records::query_all(core::DOCUMENT)? {
//!             let body: core::Document = doc.body_as()?;
//!             for line in body.text.lines().filter(|l| l.contains("TODO")) {
//!                 let task = core::Task::open(line.trim());
//!                 let id = Identity::new("todo", &format!("{}#{line}", doc.id));
//!                 let opts = WriteOptions::new().source(&doc.id);
//!                 let created = actions::create(core::TASK, &task, Some(id), opts)?;
//!                 actions::link(&created.record.id, &doc.id, "derived-from")?;
//!                 made += 1;
//!             }
//!         }
//!         Ok(Outcome::new(format!("{made} tasks")))
//!     }
//! }
//!
//! keel_agent::export_agent!(Todo);
//! ```
//!
//! Every call goes through the host: it checks the plugin's grant, writes
//! the change with its provenance and an audit entry, and returns an
//! [`Error`] the plugin can handle (`Denied`, `Conflict`, ...).
#![deny(missing_docs)]

/// Generated bindings for the imports every plugin has.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "keel:host/plugin",
        generate_all,
    });
}

pub mod core;
pub mod http;
pub mod net;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use bindings::keel::host::actions::{Created, SendReceipt, SendState, TaskEnd, WriteOptions};
pub use bindings::keel::host::records::Page;
pub use bindings::keel::host::types::{
    Error, Event, Identity, Link, Outcome, Outgoing, Receipt, Record, SyncResult, Trigger,
    TriggerKind, Version,
};

/// Everything a plugin usually needs, for `use keel_sdk::prelude::*`.
pub mod prelude {
    pub use crate::{
        Created, Error, Identity, Outcome, Record, SyncResult, TaskEnd, Trigger, TriggerKind,
        WriteOptions,
    };
    pub use crate::{actions, config, core, http, llm, log, memory, net, records, secrets};
}

impl Record {
    /// The body deserialized into `T` (an `Invalid` error if it does not fit).
    pub fn body_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_str(&self.body)
            .map_err(|e| Error::Invalid(format!("record {} body does not fit: {e}", self.id)))
    }
}

impl Identity {
    /// `(source, external id)`: where a record came from outside keel.
    pub fn new(source: &str, external_id: &str) -> Identity {
        Identity {
            source: source.to_string(),
            external_id: external_id.to_string(),
        }
    }
}

impl Outcome {
    /// An outcome with a one-line summary.
    pub fn new(summary: impl Into<String>) -> Outcome {
        Outcome {
            summary: summary.into(),
            confidence: None,
        }
    }
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            idempotency_key: None,
            sources: Vec::new(),
            confidence: None,
            note: None,
        }
    }
}

impl WriteOptions {
    /// No key, no sources, no confidence, no note.
    pub fn new() -> WriteOptions {
        WriteOptions::default()
    }

    /// Makes a retried call with the same key a no-op.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Adds a record this change was derived from.
    pub fn source(mut self, id: &str) -> Self {
        self.sources.push(id.to_string());
        self
    }

    /// Sets the confidence, 0.0 to 1.0.
    pub fn confidence(mut self, c: f32) -> Self {
        self.confidence = Some(c);
        self
    }

    /// Says why, in a few words.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

impl Error {
    /// The sentence the host gave.
    pub fn message(&self) -> &str {
        match self {
            Error::Denied(m)
            | Error::NotFound(m)
            | Error::Conflict(m)
            | Error::Invalid(m)
            | Error::Limit(m)
            | Error::Unavailable(m)
            | Error::Internal(m) => m,
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::Invalid(format!("cannot encode body: {e}")))
}

/// Reading records (needs the kind in the manifest's `read`).
pub mod records {
    use super::*;
    use crate::bindings::keel::host::records as wit;

    /// Largest page the host returns.
    pub const PAGE: u32 = 500;

    /// The record with this id.
    pub fn get(id: &str) -> Result<Record, Error> {
        wit::get(id)
    }

    /// The record for an identity, if one exists.
    pub fn find(identity: &Identity) -> Result<Option<Record>, Error> {
        wit::find(identity)
    }

    /// One page of records of `kind`, oldest first.
    pub fn query(kind: &str, limit: u32, cursor: Option<&str>) -> Result<Page, Error> {
        wit::query(kind, limit, cursor)
    }

    /// Every record of `kind`, paging through the host.
    pub fn query_all(kind: &str) -> Result<Vec<Record>, Error> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = wit::query(kind, PAGE, cursor.as_deref())?;
            all.extend(page.records);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Every version of a record, oldest first.
    pub fn history(id: &str) -> Result<Vec<Version>, Error> {
        wit::history(id)
    }

    /// Links from or to a record.
    pub fn links(id: &str, rel: Option<&str>) -> Result<Vec<Link>, Error> {
        wit::links(id, rel)
    }
}

/// Changing records and the world (needs the action, and the kind in
/// `write`, in the manifest).
pub mod actions {
    use super::*;
    use crate::bindings::keel::host::actions as wit;

    /// Creates a record with a typed body; a known identity returns the
    /// existing record with `existed = true`.
    pub fn create<T: Serialize>(
        kind: &str,
        body: &T,
        identity: Option<Identity>,
        options: WriteOptions,
    ) -> Result<Created, Error> {
        wit::create(kind, &to_json(body)?, identity.as_ref(), &options)
    }

    /// Replaces a record's body if it is still at `expected_version`.
    pub fn update<T: Serialize>(
        id: &str,
        expected_version: u64,
        body: &T,
        options: WriteOptions,
    ) -> Result<Record, Error> {
        wit::update(id, expected_version, &to_json(body)?, &options)
    }

    /// Adds a typed link (`derived-from`, `about`, ...).
    pub fn link(from: &str, to: &str, rel: &str) -> Result<(), Error> {
        wit::link(from, to, rel)
    }

    /// Schedules `plugin` to run with `input` at `at` (RFC 3339), or now.
    pub fn schedule<T: Serialize>(
        plugin: &str,
        input: &T,
        at: Option<&str>,
        options: WriteOptions,
    ) -> Result<String, Error> {
        wit::schedule(plugin, &to_json(input)?, at, &options)
    }

    /// Queues a message for a channel; low confidence waits for review.
    pub fn send<T: Serialize>(
        channel: &str,
        message: &T,
        options: WriteOptions,
    ) -> Result<SendReceipt, Error> {
        wit::send(channel, &to_json(message)?, &options)
    }

    /// Claims an open `core/task` for `ttl`: of agents claiming at once,
    /// one wins and the others get [`Error::Conflict`].
    pub fn claim(task: &str, ttl: std::time::Duration) -> Result<Record, Error> {
        let ms = u32::try_from(ttl.as_millis()).unwrap_or(u32::MAX);
        wit::claim(task, ms)
    }

    /// Ends a task this plugin holds the claim on, keeping `result`.
    pub fn complete<T: Serialize>(
        task: &str,
        end: TaskEnd,
        result: &T,
        options: WriteOptions,
    ) -> Result<Record, Error> {
        wit::complete(task, end, &to_json(result)?, &options)
    }

    /// Calls an action a provider plugin offers (`<plugin>/<action>`, see
    /// `keel actions list`) with a typed input; returns its output parsed
    /// as `R`. Needs the action in the manifest's `invoke` list.
    pub fn invoke<T: Serialize, R: DeserializeOwned>(
        action: &str,
        input: &T,
        options: WriteOptions,
    ) -> Result<R, Error> {
        let output = wit::invoke(action, &to_json(input)?, &options)?;
        serde_json::from_str(&output).map_err(|e| {
            Error::Invalid(format!(
                "the output of {action} is not what was expected: {e}"
            ))
        })
    }

    /// Gives back a claim this plugin holds; the task is open again.
    pub fn release(task: &str) -> Result<Record, Error> {
        wit::release(task)
    }

    /// Creates a record from raw JSON text, for bodies built by hand.
    pub fn create_json(
        kind: &str,
        body: &str,
        identity: Option<Identity>,
        options: WriteOptions,
    ) -> Result<Created, Error> {
        wit::create(kind, body, identity.as_ref(), &options)
    }

    /// A connector's progress inside a sync: stores `cursor` as where the
    /// next sync starts, committed with every write made before it. A sync
    /// stopped later (deadline, fuel, crash) is handed this cursor next
    /// time; writes after it may have been kept too, so write
    /// idempotently (with identities). Needs a connector's `sync`.
    pub fn checkpoint(cursor: &str) -> Result<(), Error> {
        wit::checkpoint(cursor)
    }

    /// [`checkpoint`] with a typed cursor, serialized as JSON.
    pub fn checkpoint_as<T: Serialize>(cursor: &T) -> Result<(), Error> {
        wit::checkpoint(&to_json(cursor)?)
    }

    /// Says the sync stops with more to do: once it returns, `keel up`
    /// queues the next one at once. A sync stopped by its deadline after
    /// a [`checkpoint`] counts as more to do without it.
    pub fn more_to_do() -> Result<(), Error> {
        wit::more_to_do()
    }
}

/// Diagnostics for the operator (never secrets).
pub mod log {
    use crate::bindings::keel::host::log::{Level, log};

    /// Logs at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// The operator's config values for keys the manifest declares.
pub mod config {
    use super::Error;

    pub use crate::bindings::keel::host::config::CallingRun;

    /// The value of `key`, if set.
    pub fn get(key: &str) -> Result<Option<String>, Error> {
        crate::bindings::keel::host::config::get(key)
    }

    /// The plugin and run that caused this run, when another plugin's run
    /// did: for a provider, who invoked the action (refuse callers you do
    /// not serve with [`Error::Denied`]); for a scheduled job, who
    /// scheduled it.
    pub fn caller() -> Option<CallingRun> {
        crate::bindings::keel::host::config::caller()
    }

    /// The address of endpoint `name` as the operator bound it (a URL for
    /// HTTP, `host:port` for TCP); none when the plugin has no such
    /// endpoint. See [`crate::http::endpoint`] to build a URL on it.
    pub fn endpoint(name: &str) -> Option<String> {
        crate::bindings::keel::host::config::endpoint(name)
    }
}

/// Secrets the operator bound to this plugin (`secrets = ["token"]` in
/// keel.toml), for a protocol that must send a credential itself. Over
/// HTTP, put `{{secret:token}}` in a header instead ([`http`]): the host
/// fills it in and the plugin never holds the value.
pub mod secrets {
    use super::Error;

    /// The value of secret `name` (`Denied` when the manifest does not
    /// name it, `NotFound` when the operator has not set it). Never log or
    /// store it.
    pub fn get(name: &str) -> Result<String, Error> {
        crate::bindings::keel::host::secrets::get(name)
    }
}

/// Models through the host: completions by tier and embeddings. Needs
/// `llm = { tiers = [...] }` (and `embed = true` for embeddings) under the
/// manifest's `[capabilities]`; the operator decides which model serves each
/// tier, and the host meters every call against the plugin's budget.
pub mod llm {
    use super::Error;
    pub use crate::bindings::keel::host::llm::{
        Completion, CompletionRequest, Embeddings, Message, Tier,
    };

    impl Message {
        /// A `system` message.
        pub fn system(content: impl Into<String>) -> Message {
            Message {
                role: "system".into(),
                content: content.into(),
            }
        }
        /// A `user` message.
        pub fn user(content: impl Into<String>) -> Message {
            Message {
                role: "user".into(),
                content: content.into(),
            }
        }
        /// An `assistant` message.
        pub fn assistant(content: impl Into<String>) -> Message {
            Message {
                role: "assistant".into(),
                content: content.into(),
            }
        }
    }

    impl CompletionRequest {
        /// A request for `tier` with these messages: 256 tokens at most,
        /// temperature 0 (the most likely answer, cached by the host).
        pub fn new(tier: Tier, messages: Vec<Message>) -> CompletionRequest {
            CompletionRequest {
                messages,
                tier,
                max_tokens: 256,
                temperature: 0.0,
                schema: None,
            }
        }
        /// At most `n` tokens.
        pub fn max_tokens(mut self, n: u32) -> Self {
            self.max_tokens = n;
            self
        }
        /// Sampling temperature, 0.0 to 2.0.
        pub fn temperature(mut self, t: f32) -> Self {
            self.temperature = t;
            self
        }
        /// The answer must be JSON matching `schema` (a JSON Schema object).
        pub fn schema(mut self, schema: &serde_json::Value) -> Self {
            self.schema = Some(schema.to_string());
            self
        }

        /// The JSON Schema as text, its properties in the order written: a
        /// model that keel steers (the local one) writes the answer's
        /// properties in this order, so put a reason before a verdict.
        pub fn schema_text(mut self, schema: &str) -> Self {
            self.schema = Some(schema.to_string());
            self
        }
    }

    /// A completion from the model serving the request's tier.
    pub fn complete(request: &CompletionRequest) -> Result<Completion, Error> {
        crate::bindings::keel::host::llm::complete(request)
    }

    /// A structured completion: the answer parsed into `T` (`invalid` if it
    /// does not fit).
    pub fn complete_json<T: serde::de::DeserializeOwned>(
        request: &CompletionRequest,
    ) -> Result<(T, Completion), Error> {
        let c = complete(request)?;
        let value = serde_json::from_str(&c.text)
            .map_err(|e| Error::Invalid(format!("the model's answer does not fit: {e}")))?;
        Ok((value, c))
    }

    /// Embeddings of `texts`, one vector each.
    pub fn embed(texts: &[String]) -> Result<Embeddings, Error> {
        crate::bindings::keel::host::llm::embed(texts)
    }
}

/// Memory through the host: working memory (`Scope::Run` for this run,
/// `Scope::Plugin` across runs, with an optional TTL) and long-term memories
/// recalled by meaning and by words. Needs `memory = true` under the
/// manifest's `[capabilities]`.
pub mod memory {
    use super::Error;
    pub use crate::bindings::keel::host::memory::{Memory, Recalled, Scope};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// Sets a working-memory value; `ttl_seconds` none keeps it.
    pub fn set<T: Serialize>(
        scope: Scope,
        key: &str,
        value: &T,
        ttl_seconds: Option<u32>,
    ) -> Result<(), Error> {
        let json = serde_json::to_string(value).map_err(|e| Error::Invalid(e.to_string()))?;
        crate::bindings::keel::host::memory::set(scope, key, &json, ttl_seconds)
    }

    /// A working-memory value, unless unset or expired.
    pub fn get<T: DeserializeOwned>(scope: Scope, key: &str) -> Result<Option<T>, Error> {
        match crate::bindings::keel::host::memory::get(scope, key)? {
            None => Ok(None),
            Some(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| Error::Invalid(format!("working memory `{key}`: {e}"))),
        }
    }

    /// Keeps `text` as a long-term memory learned from `sources`, with
    /// `metadata` (a JSON object); `supersedes` names a memory it corrects.
    pub fn remember(
        text: &str,
        metadata: &serde_json::Value,
        sources: &[String],
        supersedes: Option<&str>,
    ) -> Result<Memory, Error> {
        crate::bindings::keel::host::memory::remember(
            text,
            &metadata.to_string(),
            sources,
            supersedes,
        )
    }

    /// The `k` current memories most relevant to `query`.
    pub fn recall(query: &str, k: u32) -> Result<Vec<Recalled>, Error> {
        crate::bindings::keel::host::memory::recall(query, k)
    }

    /// What [`recall_where`] narrows the memories to before ranking them;
    /// every part that is set must match.
    #[derive(Debug, Default, Clone)]
    pub struct Filter {
        by_plugin: Option<String>,
        source: Option<String>,
        metadata: Option<serde_json::Value>,
        since: Option<String>,
    }

    impl Filter {
        /// A filter that lets every memory through.
        pub fn new() -> Self {
            Self::default()
        }

        /// Only memories remembered by this plugin id.
        pub fn by_plugin(mut self, plugin: &str) -> Self {
            self.by_plugin = Some(plugin.to_string());
            self
        }

        /// Only memories learned from this record.
        pub fn source(mut self, record: &str) -> Self {
            self.source = Some(record.to_string());
            self
        }

        /// Only memories whose metadata holds each top-level key of
        /// `object` with that value (at most 8 keys).
        pub fn metadata(mut self, object: serde_json::Value) -> Self {
            self.metadata = Some(object);
            self
        }

        /// Only memories remembered at or after this RFC 3339 time.
        pub fn since(mut self, time: &str) -> Self {
            self.since = Some(time.to_string());
            self
        }
    }

    /// The `k` current memories most relevant to `query` among those
    /// `filter` lets through.
    pub fn recall_where(query: &str, k: u32, filter: &Filter) -> Result<Vec<Recalled>, Error> {
        let filter = crate::bindings::keel::host::memory::RecallFilter {
            by_plugin: filter.by_plugin.clone(),
            source: filter.source.clone(),
            metadata: filter.metadata.as_ref().map(|m| m.to_string()),
            since: filter.since.clone(),
        };
        crate::bindings::keel::host::memory::recall_where(query, k, &filter)
    }

    /// A session summary: a `core/note` of type `summary` (provenance: the
    /// records it covers) linked `summarizes` to each of them, and kept as
    /// a memory learned from the note, so `recall` finds it and the
    /// operator can follow it back to what it summarizes. Needs
    /// `write = ["core/note"]`, `actions = ["create", "link"]` and
    /// `memory = true`.
    pub fn summarize(
        title: &str,
        text: &str,
        covers: &[String],
    ) -> Result<(super::Record, Memory), Error> {
        let note = crate::core::Note {
            title: title.to_string(),
            text: text.to_string(),
            note_type: "summary".to_string(),
        };
        let mut options = super::WriteOptions::new().note("session summary");
        for id in covers {
            options = options.source(id);
        }
        let created = super::actions::create(crate::core::NOTE, &note, None, options)?;
        for id in covers {
            super::actions::link(&created.record.id, id, "summarizes")?;
        }
        let memory = remember(
            text,
            &serde_json::json!({ "summary": created.record.id, "title": title }),
            std::slice::from_ref(&created.record.id),
            None,
        )?;
        Ok((created.record, memory))
    }
}
