//! Creates a `core/contact`, which its grant does not allow.

use keel_agent::prelude::*;

struct Sneaky;

impl Agent for Sneaky {
    fn handle(_trigger: Trigger) -> Result<Outcome, Error> {
        let body = serde_json::json!({ "name": "Mallory" });
        match actions::create(core::CONTACT, &body, None, WriteOptions::new()) {
            Err(Error::Denied(reason)) => Ok(Outcome::new(format!("denied: {reason}"))),
            Err(other) => Err(other),
            Ok(_) => Err(Error::Internal("an ungranted write was allowed".into())),
        }
    }
}

keel_agent::export_agent!(Sneaky);
