//! The late-departure risk as the policy sees it: a [`RiskSource`] (the server's active model)
//! scores the order being evaluated, and `risk.late_departure`, `risk.factors` and
//! `risk.model_version` are bound in the CEL context.
//!
//! Without a source (no model is active) an expression that reads `risk` is not evaluated:
//! a rule reading it does not fire, a priority term reading it is left out (0 points, not listed), a message
//! placeholder reading it renders `n/a`. So `risk.late_departure > 0.7` never errors and a
//! policy behaves as if the risk rules were not there until a model is promoted.

use chrono::{DateTime, Utc};
use dispatch_core::risk::RiskFactor;
use dispatch_core::{OrderFacts, Warehouse};

/// What a risk source needs about the order being evaluated.
pub struct RiskQuery<'a> {
    pub facts: &'a OrderFacts,
    pub warehouse: &'a Warehouse,
    pub now: DateTime<Utc>,
    /// The carrier the policy's matrix chose (or the order's preference).
    pub carrier: Option<&'a str>,
    /// The cut-off on the ship-by date, as derived by the policy.
    pub latest_departure: DateTime<Utc>,
}

/// A model's score of one order.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskScore {
    pub late_departure: f64,
    pub model_version: String,
}

/// A late-departure model the policy can ask. Scoring must be cheap (it runs on the write
/// path); `factors` may be costly and is only asked for when a policy reads `risk.factors` or
/// the risk changed the decision.
pub trait RiskSource: Send + Sync {
    fn score(&self, q: &RiskQuery<'_>) -> Option<RiskScore>;
    /// The `top` strongest factors, strongest first.
    fn factors(&self, q: &RiskQuery<'_>, top: usize) -> Vec<RiskFactor>;
}

/// How many factors are bound in `risk.factors` and recorded on a decision.
pub const TOP_FACTORS: usize = 3;

/// The values bound as `risk` for one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskVals {
    pub late_departure: f64,
    pub model_version: String,
    pub factors: Vec<RiskFactor>,
}

/// Whether a context path is under `risk`.
pub fn is_risk_path(path: &str) -> bool {
    path == "risk" || path.starts_with("risk.")
}
