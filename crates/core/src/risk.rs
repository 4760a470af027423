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

/// The active model's score of an order at an evaluation, recorded whether or not a rule read
/// it: the board's risk filter and badge read it from the projection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelScore {
    pub model_version: String,
    /// Probability of departing after the cut-off, 0–1.
    pub late_departure: f64,
}

/// The board's risk bands of a late-departure probability: `high` from 0.5, `medium` from
/// 0.2, `low` below (docs/console.md). Half-open ranges, so every probability has one band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RiskBand {
    High,
    Medium,
    Low,
}

impl RiskBand {
    pub const ALL: [RiskBand; 3] = [RiskBand::High, RiskBand::Medium, RiskBand::Low];

    pub fn code(self) -> &'static str {
        match self {
            RiskBand::High => "high",
            RiskBand::Medium => "medium",
            RiskBand::Low => "low",
        }
    }

    pub fn from_code(s: &str) -> Option<RiskBand> {
        RiskBand::ALL.into_iter().find(|b| b.code() == s)
    }

    /// The probabilities of the band: `[from, to)`.
    pub fn range(self) -> (f64, f64) {
        match self {
            RiskBand::High => (0.5, f64::INFINITY),
            RiskBand::Medium => (0.2, 0.5),
            RiskBand::Low => (f64::NEG_INFINITY, 0.2),
        }
    }

    pub fn of(p: f64) -> RiskBand {
        RiskBand::ALL.into_iter().find(|b| (b.range().0..b.range().1).contains(&p)).unwrap_or(RiskBand::Low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_probability_has_exactly_one_band() {
        assert_eq!(RiskBand::of(0.0), RiskBand::Low);
        assert_eq!(RiskBand::of(0.1999), RiskBand::Low);
        assert_eq!(RiskBand::of(0.2), RiskBand::Medium);
        assert_eq!(RiskBand::of(0.4999), RiskBand::Medium);
        assert_eq!(RiskBand::of(0.5), RiskBand::High);
        assert_eq!(RiskBand::of(1.0), RiskBand::High);
        for b in RiskBand::ALL {
            assert_eq!(RiskBand::from_code(b.code()), Some(b));
        }
        assert_eq!(RiskBand::from_code("extreme"), None);
    }
}
