//! Fixtures shared by the capability tests: a caller (actor, grant and
//! policy) built from a small manifest, as an installed plugin would have.

use crate::actions::Caller;
use crate::error::CallError;
use crate::grant::Grant;
use crate::manifest::{Manifest, Policy, ReviewGate};
use crate::store::Actor;

/// The actor, grant and policy of a test caller.
pub struct Fixture {
    pub actor: Actor,
    pub grant: Grant,
    pub policy: Policy,
}

impl Fixture {
    /// Plugin `id` that may read and write `kinds` and call `actions`;
    /// `extra` adds lines to its `[capabilities]` (e.g. `send = ["email"]`).
    pub fn plugin(id: &str, kinds: &[&str], actions: &[&str], extra: &str) -> Fixture {
        let text = format!(
            "[plugin]\nid = \"{id}\"\nversion = \"0.1.0\"\nworld = \"agent\"\n[capabilities]\nread = {kinds:?}\nwrite = {kinds:?}\nactions = {actions:?}\n{extra}\n"
        );
        let manifest = Manifest::parse(&text, "keel.toml").expect("a valid test manifest");
        Fixture {
            actor: Actor {
                plugin: id.into(),
                version: Some("0.1.0".into()),
                digest: Some("sha256:00".into()),
                run_id: None,
                trigger: None,
            },
            grant: Grant::new(&manifest, &Default::default())
                .expect("a grant for the test manifest"),
            policy: Policy::default(),
        }
    }

    /// Plugin `t` that may read and write `kinds` and call `actions`.
    pub fn new(kinds: &[&str], actions: &[&str]) -> Fixture {
        Fixture::plugin("t", kinds, actions, "")
    }

    /// The same caller after the operator set its review gate to
    /// `threshold` (`keel plugin policy ID --review-below THRESHOLD`).
    pub fn review_below(mut self, threshold: f32) -> Fixture {
        self.grant.review_below = ReviewGate::Below(threshold);
        self
    }

    /// The same caller with its manifest proposing `policy.review_below`
    /// at `threshold`.
    pub fn proposes(mut self, threshold: f32) -> Fixture {
        self.policy.review_below = threshold;
        self
    }

    pub fn caller(&self) -> Caller<'_> {
        Caller {
            actor: &self.actor,
            grant: &self.grant,
            policy: &self.policy,
        }
    }
}

/// Asserts that of racing calls exactly one succeeded and every other got
/// `conflict`.
pub fn assert_one_winner<T: std::fmt::Debug>(results: &[Result<T, CallError>]) {
    let wins = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(CallError::Conflict(_))))
        .count();
    assert_eq!((wins, conflicts), (1, results.len() - 1), "{results:?}");
}
