//! Panics, which ends the run with a trap.

use keel_agent::prelude::*;

struct Trap;

impl Agent for Trap {
    fn handle(_trigger: Trigger) -> Result<Outcome, Error> {
        panic!("deliberate trap")
    }
}

keel_agent::export_agent!(Trap);
