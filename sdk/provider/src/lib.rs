//! The keel `provider` world for Rust plugins.
//!
//! A provider offers actions to other plugins. Its manifest lists them,
//! each with a JSON Schema for its input:
//!
//! ```toml
//! [[provides]]
//! name = "summarize"
//! description = "Summarizes a document into a note"
//! input = { type = "object", required = ["document"], properties = { document = { type = "string" } } }
//! needs = ["create", "core/note"]
//! ```
//!
//! An agent whose grant has `invoke = ["summarizer/summarize"]` calls it
//! with `actions::invoke("summarizer/summarize", &input, options)`; keel
//! checks the input against the schema, then runs the provider under the
//! provider's own grant. Implement [`Provider`] and export it with
//! [`export_provider!`]:
//!
//! ```ignore
//! use keel_provider::prelude::*;
//!
//! struct Summarizer;
//!
//! impl Provider for Summarizer {
//!     fn perform(action: String, input: String) -> Result<String, Error> {
//!         match action.as_str() {
//!             "summarize" => Ok(r#"{"summary":"..."}"#.into()),
//!             other => Err(Error::NotFound(format!("no action {other}"))),
//!         }
//!     }
//! }
//!
//! keel_provider::export_provider!(Summarizer);
//! ```
//!
//! The world lives in its own crate so a plugin links exactly one world.
#![deny(missing_docs)]

#[doc(hidden)]
#[allow(missing_docs)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "keel:host/provider",
        with: {
            "keel:host/types@0.1.0": keel_sdk::bindings::keel::host::types,
            "keel:host/records@0.1.0": keel_sdk::bindings::keel::host::records,
            "keel:host/actions@0.1.0": keel_sdk::bindings::keel::host::actions,
            "keel:host/log@0.1.0": keel_sdk::bindings::keel::host::log,
            "keel:host/config@0.1.0": keel_sdk::bindings::keel::host::config,
        },
        pub_export_macro: true,
        export_macro_name: "export_provider",
        default_bindings_module: "keel_provider::__bindings",
    });
}

/// What a provider implements: `perform` one of its actions on an input
/// keel has checked against the action's schema; return JSON.
pub use __bindings::Guest as Provider;
pub use __bindings::export_provider;
pub use keel_sdk::*;

/// Everything a provider usually needs.
pub mod prelude {
    pub use super::Provider;
    pub use keel_sdk::prelude::*;
}
