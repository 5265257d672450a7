//! Passes a 16 MiB body to `create`; the host must refuse it with `limit`.

use keel_agent::prelude::*;

struct Huge;

impl Agent for Huge {
    fn handle(_trigger: Trigger) -> Result<Outcome, Error> {
        let body = format!("{{\"text\":\"{}\"}}", "x".repeat(16 << 20));
        match actions::create_json("test/item", &body, None, WriteOptions::new()) {
            Ok(_) => Err(Error::Internal("huge body was accepted".into())),
            Err(e) => Ok(Outcome::new(format!("create returned: {e:?}"))),
        }
    }
}

keel_agent::export_agent!(Huge);
