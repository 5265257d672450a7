//! `[policy]`: what the plugin proposes for how its output is treated, and
//! the operator's review gate it can only make stricter.

use serde::{Deserialize, Serialize};

/// What the plugin proposes for how the host treats what it produces. The
/// operator owns the review gate (kept in the grant, see [`ReviewGate`]);
/// a manifest can only make it stricter.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Sends and writes with a confidence below this wait for review, on
    /// top of the operator's gate. 0.0 (the default) proposes nothing.
    #[serde(default)]
    pub review_below: f32,
}

impl Policy {
    /// The gate in force: the operator's, or the manifest's proposal where
    /// that is stricter (a plugin may ask to be watched more, never less).
    pub fn under(&self, operator: ReviewGate) -> ReviewGate {
        operator.stricter(ReviewGate::Below(self.review_below))
    }
}

/// The operator's review gate for one plugin: which of its sends wait for
/// the operator, and which of its writes are flagged as unsure.
///
/// `All` (the default for every new install, and for grants stored before
/// the gate existed) holds every send whatever its confidence, `1.0`
/// included, and flags every write whose confidence is below 1.0.
/// `Below(t)` holds a send whose confidence is below `t` or missing, and
/// flags a write whose confidence is below `t`; `Below(0.0)` lets every
/// send that states a confidence go out. A write without a confidence makes
/// no claim and is never flagged.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "GateRepr", into = "GateRepr")]
pub enum ReviewGate {
    #[default]
    All,
    Below(f32),
}

/// How a [`ReviewGate`] is written: `"all"` or a number in 0.0..=1.0.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum GateRepr {
    Word(String),
    Number(f64),
}

/// `t` as the f64 it reads as (0.8, not 0.800000011920929), for JSON
/// written through `serde_json::Value`, which widens an f32.
pub fn as_written(t: f32) -> f64 {
    t.to_string().parse().unwrap_or(f64::from(t))
}

impl From<ReviewGate> for GateRepr {
    fn from(g: ReviewGate) -> Self {
        match g {
            ReviewGate::All => GateRepr::Word("all".into()),
            ReviewGate::Below(t) => GateRepr::Number(as_written(t)),
        }
    }
}

impl TryFrom<GateRepr> for ReviewGate {
    type Error = String;
    fn try_from(r: GateRepr) -> Result<Self, String> {
        match r {
            GateRepr::Word(w) => w.parse(),
            // Thresholds are written from an f32 (or typed by hand in
            // 0.0..=1.0, checked after narrowing).
            GateRepr::Number(t) => ReviewGate::below(t as f32),
        }
    }
}

impl ReviewGate {
    /// `Below(t)`, refused outside 0.0..=1.0.
    pub fn below(t: f32) -> Result<ReviewGate, String> {
        if (0.0..=1.0).contains(&t) {
            Ok(ReviewGate::Below(t))
        } else {
            Err(format!(
                "review gate {t} is outside 0.0..=1.0; give a confidence between 0.0 and 1.0, or `all`"
            ))
        }
    }

    /// The stricter of two gates: `All`, else the higher threshold.
    pub fn stricter(self, other: ReviewGate) -> ReviewGate {
        match (self, other) {
            (ReviewGate::Below(a), ReviewGate::Below(b)) => ReviewGate::Below(a.max(b)),
            _ => ReviewGate::All,
        }
    }

    /// Whether a send with this confidence waits for the operator.
    pub fn holds_send(self, confidence: Option<f32>) -> bool {
        match (self, confidence) {
            (ReviewGate::All, _) | (_, None) => true,
            (ReviewGate::Below(t), Some(c)) => c < t,
        }
    }

    /// Whether a write with this confidence is flagged for review.
    pub fn flags_write(self, confidence: Option<f32>) -> bool {
        let threshold = match self {
            ReviewGate::All => 1.0,
            ReviewGate::Below(t) => t,
        };
        confidence.is_some_and(|c| c < threshold)
    }
}

impl std::str::FromStr for ReviewGate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(ReviewGate::All);
        }
        let t: f32 = s.parse().map_err(|_| {
            format!(
                "review gate `{s}` is not a number; give a confidence between 0.0 and 1.0, or `all`"
            )
        })?;
        ReviewGate::below(t)
    }
}

/// As `--review-below` takes it: `all` or the threshold.
impl std::fmt::Display for ReviewGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReviewGate::All => f.write_str("all"),
            ReviewGate::Below(t) => write!(f, "{t}"),
        }
    }
}

impl ReviewGate {
    /// The gate in words, for consent and `keel plugin policy`.
    pub fn describe(&self) -> String {
        match self {
            ReviewGate::All => "every send waits for review".into(),
            ReviewGate::Below(t) => {
                format!("sends below confidence {t} (or without one) wait for review")
            }
        }
    }
}
