//! The network under grants (`docs/network.md`): the endpoints a plugin may
//! reach, as the operator bound them, and the addresses a name may resolve
//! to. This module is the policy every request and connection is checked
//! against; the HTTP sender and the socket check use it.

mod address;

pub use address::{allowed, is_public};
