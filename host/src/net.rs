//! The network under grants (`docs/network.md`): the endpoints a plugin may
//! reach, as the operator bound them, and the addresses a name may resolve
//! to. This module is the policy every request and connection is checked
//! against; the HTTP sender and the socket check use it.

mod address;
mod connect;
mod http;
mod log;
mod sockets;
mod tls;

pub use address::{allowed, is_public};
pub use http::{Policy, Sender};
pub use log::{Kind, NetLog};
pub use sockets::Reach;
pub use tls::{CA_FILE, TlsCache};

/// Most bytes of one response body, unless the manifest asks for less.
pub const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
