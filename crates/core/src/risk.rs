//! What a late-departure risk model contributed to a decision: the probability, the model
//! version and its strongest factors in plain language, recorded on `order.evaluated` when a
//! policy rule or priority term that reads `risk` changed the decision. The model itself lives
//! in `dispatch_intel`; this is only the record, so the event log stays self-explaining.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One factor of a prediction: the model's own contribution for a feature (log-odds;
/// positive raises the risk) and a sentence a planner can read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RiskFactor {
    /// Feature name, e.g. `route` (product family × region × carrier) or `backlog_at_release`.
    pub feature: String,
    pub contribution: f64,
    pub text: String,
}

/// The risk a decision read, when it influenced the decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RiskNote {
    /// The active model's version, e.g. `risk-20261124T060000-1a2b3c4d`.
    pub model_version: String,
    /// Probability of departing after the cut-off, 0–1.
    pub late_departure: f64,
    /// The rules that fired and the priority terms that gave points while reading `risk`.
    pub used_by: Vec<String>,
    /// The strongest factors, strongest first.
    pub factors: Vec<RiskFactor>,
}

impl RiskNote {
    /// One line for the timeline: `late-departure risk 82% (model …): <strongest factor>`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "late-departure risk {:.0}% (model {}, used by {})",
            self.late_departure * 100.0,
            self.model_version,
            self.used_by.join(", ")
        );
        if let Some(f) = self.factors.first() {
            s.push_str(": ");
            s.push_str(&f.text);
        }
        s
    }
}
