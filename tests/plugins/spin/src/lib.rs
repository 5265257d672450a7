//! Loops forever without calling the host; only a limit can stop it.

use keel_agent::prelude::*;

struct Spin;

impl Agent for Spin {
    fn handle(_trigger: Trigger) -> Result<Outcome, Error> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

keel_agent::export_agent!(Spin);
