//! Allocates 1 MiB chunks, touching each, up to 1 GiB: the memory cap must
//! stop it first.

use keel_agent::prelude::*;

struct Alloc;

impl Agent for Alloc {
    fn handle(_trigger: Trigger) -> Result<Outcome, Error> {
        let mut kept: Vec<Vec<u8>> = Vec::new();
        for i in 0..1024 {
            kept.push(vec![u8::try_from(i % 251).unwrap_or(1); 1 << 20]);
            std::hint::black_box(&kept);
        }
        Ok(Outcome::new(format!("allocated {} MiB", kept.len())))
    }
}

keel_agent::export_agent!(Alloc);
