//! The keel `channel` world for Rust plugins.
//!
//! A channel takes approved messages out of keel. Its manifest names the
//! channels it serves (`[channel] serves = ["email"]`); `keel up` hands it
//! each queued or approved send for them. Implement [`Channel`] and export
//! it with [`export_channel!`]:
//!
//! ```ignore
//! use keel_channel::prelude::*;
//!
//! struct Printer;
//!
//! impl Channel for Printer {
//!     fn deliver(message: Outgoing) -> Result<Receipt, Error> {
//!         log::info(&format!("would send {}", message.message));
//!         Ok(Receipt { id: message.idempotency_key, duplicate: false })
//!     }
//! }
//!
//! keel_channel::export_channel!(Printer);
//! ```
//!
//! `idempotency_key` is the same on every attempt to deliver one message:
//! a channel that remembers the keys it delivered (or passes the key to a
//! server that does) never delivers a message twice, even when keel retries
//! after a crash. Return [`Error::Unavailable`] for failures worth retrying.
//!
//! The world lives in its own crate so a plugin links exactly one world.
#![deny(missing_docs)]

#[doc(hidden)]
#[allow(missing_docs)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "keel:host/channel",
        with: {
            "keel:host/types@0.1.0": keel_sdk::bindings::keel::host::types,
            "keel:host/records@0.1.0": keel_sdk::bindings::keel::host::records,
            "keel:host/actions@0.1.0": keel_sdk::bindings::keel::host::actions,
            "keel:host/log@0.1.0": keel_sdk::bindings::keel::host::log,
            "keel:host/config@0.1.0": keel_sdk::bindings::keel::host::config,
        },
        pub_export_macro: true,
        export_macro_name: "export_channel",
        default_bindings_module: "keel_channel::__bindings",
    });
}

/// What a channel implements: `deliver` one message.
pub use __bindings::Guest as Channel;
pub use __bindings::export_channel;
pub use keel_sdk::*;

/// Everything a channel usually needs.
pub mod prelude {
    pub use super::Channel;
    pub use keel_sdk::prelude::*;
    pub use keel_sdk::{Outgoing, Receipt};
}
