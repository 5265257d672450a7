//! The keel `connector` world for Rust plugins.
//!
//! A connector brings an outside source into canonical records. Implement
//! [`Connector`] and export it with [`export_connector!`]:
//!
//! ```ignore
//! use keel_connector::prelude::*;
//!
//! struct Feed;
//!
//! impl Connector for Feed {
//!     fn sync(cursor: Option<String>) -> Result<SyncResult, Error> {
//!         Ok(SyncResult { cursor, created: 0, updated: 0, unchanged: 0 })
//!     }
//! }
//!
//! keel_connector::export_connector!(Feed);
//! ```
//!
//! A source too large for one run checkpoints as it goes
//! ([`actions::checkpoint`]) and keeps a value per item (a hash, a remote
//! version) in [`sync_state`] rather than in its cursor, so the cursor
//! stays a small position however large the source grows.
//!
//! The world lives in its own crate so a plugin links exactly one world.
#![deny(missing_docs)]

#[doc(hidden)]
#[allow(missing_docs)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "keel:host/connector",
        with: {
            "keel:host/types@0.1.0": keel_sdk::bindings::keel::host::types,
            "keel:host/records@0.1.0": keel_sdk::bindings::keel::host::records,
            "keel:host/actions@0.1.0": keel_sdk::bindings::keel::host::actions,
            "keel:host/log@0.1.0": keel_sdk::bindings::keel::host::log,
            "keel:host/config@0.1.0": keel_sdk::bindings::keel::host::config,
        },
        pub_export_macro: true,
        export_macro_name: "export_connector",
        default_bindings_module: "keel_connector::__bindings",
    });
}

/// What a connector implements: `sync` from a cursor.
pub use __bindings::Guest as Connector;
pub use __bindings::export_connector;
pub use keel_sdk::*;

pub mod sync_state;

/// Everything a connector usually needs.
pub mod prelude {
    pub use super::Connector;
    pub use super::sync_state;
    pub use keel_sdk::prelude::*;
}
