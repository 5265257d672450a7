//! The keel `agent` world for Rust plugins.
//!
//! An agent acts on records when triggered. Implement [`Agent`] and export
//! it with [`export_agent!`]:
//!
//! ```ignore
//! use keel_agent::prelude::*;
//!
//! struct Hello;
//!
//! impl Agent for Hello {
//!     fn handle(trigger: Trigger) -> Result<Outcome, Error> {
//!         let n = records::query_all(core::TASK)?.len();
//!         Ok(Outcome::new(format!("{n} tasks")))
//!     }
//! }
//!
//! keel_agent::export_agent!(Hello);
//! ```
//!
//! The world lives in its own crate so a plugin links exactly one world.
#![deny(missing_docs)]

#[doc(hidden)]
#[allow(missing_docs)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "keel:host/agent",
        with: {
            "keel:host/types@0.1.0": keel_sdk::bindings::keel::host::types,
            "keel:host/records@0.1.0": keel_sdk::bindings::keel::host::records,
            "keel:host/actions@0.1.0": keel_sdk::bindings::keel::host::actions,
            "keel:host/log@0.1.0": keel_sdk::bindings::keel::host::log,
            "keel:host/config@0.1.0": keel_sdk::bindings::keel::host::config,
        },
        pub_export_macro: true,
        export_macro_name: "export_agent",
        default_bindings_module: "keel_agent::__bindings",
    });
}

/// What an agent implements: `handle` one trigger.
pub use __bindings::Guest as Agent;
pub use __bindings::export_agent;
pub use keel_sdk::*;

/// Everything an agent usually needs.
pub mod prelude {
    pub use super::Agent;
    pub use keel_sdk::prelude::*;
}
