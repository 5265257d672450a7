//! Tries to read inside and outside its granted directory (`/box`) and
//! reports which reads worked.

use keel_agent::prelude::*;

struct Escape;

impl Agent for Escape {
    fn handle(_trigger: Trigger) -> Result<Outcome, Error> {
        let report: Vec<String> = [
            "/box/inside.txt",
            "/box/../secret.txt",
            "/etc/passwd",
            "../secret.txt",
        ]
        .iter()
        .map(|p| {
            format!(
                "{p}={}",
                if std::fs::read(p).is_ok() {
                    "ok"
                } else {
                    "err"
                }
            )
        })
        .collect();
        Ok(Outcome::new(report.join(" ")))
    }
}

keel_agent::export_agent!(Escape);
