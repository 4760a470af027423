//! Explanations a planner can read: each factor is the model's own Shapley contribution for
//! one feature (in log-odds; positive raises the risk), put into a sentence with the late rate
//! actually observed for that value in the last days of the training data.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::features::{FieldDef, Kind, Raw, raw};
use crate::history::{DispatchRecord, ReleaseFacts};

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub n: u32,
    pub late: u32,
}

impl Rate {
    fn add(&mut self, late: bool) {
        self.n += 1;
        self.late += u32::from(late);
    }

    pub fn pct(&self) -> f64 {
        if self.n == 0 { 0.0 } else { 100.0 * f64::from(self.late) / f64::from(self.n) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub from: f64,
    /// Exclusive upper edge; `None` for the last bucket.
    pub to: Option<f64>,
    pub rate: Rate,
}

/// Observed late rates over the last `days` days of the data a model was trained on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateBook {
    pub days: u32,
    pub overall: Rate,
    /// Categorical feature → value → rate.
    pub categories: BTreeMap<String, BTreeMap<String, Rate>>,
    /// `family|region|carrier` → rate: the combination the brief's planners ask about.
    pub routes: BTreeMap<String, Rate>,
    /// Numeric feature → quintile buckets.
    pub buckets: BTreeMap<String, Vec<Bucket>>,
}

fn route_key(f: &ReleaseFacts) -> String {
    format!("{}|{}|{}", f.product_family, f.region, f.carrier)
}

impl RateBook {
    /// `sorted` must be in time order.
    pub fn build(sorted: &[&DispatchRecord], days: u32) -> RateBook {
        let Some(last) = sorted.last() else { return RateBook::default() };
        let since: DateTime<Utc> = last.facts.released_at - Duration::days(i64::from(days));
        let from = sorted.partition_point(|r| r.facts.released_at < since);
        let window = &sorted[from..];
        let mut book = RateBook { days, ..Default::default() };
        let all =
            crate::features::CATALOG.iter().filter(|d| d.provenance == crate::features::Provenance::KnownAtRelease);
        for def in all {
            match def.kind {
                Kind::Categorical => {
                    let mut m: BTreeMap<String, Rate> = BTreeMap::new();
                    for r in window {
                        if let Raw::Cat(v) = raw(def, &r.facts) {
                            m.entry(v.to_string()).or_default().add(r.departed_late);
                        }
                    }
                    book.categories.insert(def.name.to_string(), m);
                }
                Kind::Numeric => {
                    let mut vals: Vec<(f64, bool)> = window
                        .iter()
                        .filter_map(|r| match raw(def, &r.facts) {
                            Raw::Num(Some(v)) if v.is_finite() => Some((v, r.departed_late)),
                            _ => None,
                        })
                        .collect();
                    if vals.is_empty() {
                        continue;
                    }
                    vals.sort_by(|a, b| a.0.total_cmp(&b.0));
                    let mut edges: Vec<f64> = (1..5).map(|q| vals[vals.len() * q / 5].0).collect();
                    edges.dedup();
                    let mut buckets: Vec<Bucket> = Vec::with_capacity(edges.len() + 1);
                    let mut lo = vals[0].0;
                    for e in edges.iter().copied() {
                        if e > lo {
                            buckets.push(Bucket { from: lo, to: Some(e), rate: Rate::default() });
                            lo = e;
                        }
                    }
                    buckets.push(Bucket { from: lo, to: None, rate: Rate::default() });
                    for (v, late) in vals {
                        let b = buckets.iter().rposition(|b| v >= b.from).unwrap_or(0);
                        buckets[b].rate.add(late);
                    }
                    book.buckets.insert(def.name.to_string(), buckets);
                }
            }
        }
        for r in window {
            book.overall.add(r.departed_late);
            book.routes.entry(route_key(&r.facts)).or_default().add(r.departed_late);
        }
        book
    }
}

/// One feature's part in a prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    pub feature: String,
    /// The order's value of the feature, as text (`unknown` when missing).
    pub value: String,
    /// Shapley contribution in log-odds; positive raises the risk.
    pub contribution: f64,
    /// The factor in plain language with the observed historical rate.
    pub sentence: String,
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e9 { format!("{}", v as i64) } else { format!("{v:.1}") }
}

fn direction(c: f64) -> &'static str {
    if c >= 0.0 { "raises" } else { "lowers" }
}

/// The factor of the route (product family × destination region × carrier) of one order.
pub fn route_factor(facts: &ReleaseFacts, contribution: f64, unknown: bool, rates: &RateBook) -> Factor {
    let days = rates.days;
    let value = format!("{} to {} by {}", facts.product_family, facts.region, facts.carrier);
    let sentence = match rates.routes.get(&route_key(facts)).filter(|r| r.n >= 10) {
        Some(r) if !unknown => format!(
            "carrier {} to {} has departed late on {:.0}% of {} orders in the last {days} days ({} of {}), against {:.0}% of all orders; this {} the risk",
            facts.carrier,
            facts.region,
            r.pct(),
            facts.product_family,
            r.late,
            r.n,
            rates.overall.pct(),
            direction(contribution)
        ),
        _ => format!(
            "{} orders to {} by carrier {} have too little recent history to compare; this {} the risk",
            facts.product_family,
            facts.region,
            facts.carrier,
            direction(contribution)
        ),
    };
    Factor { feature: "route".into(), value, contribution, sentence }
}

/// Builds the factor for one feature of one order.
pub fn factor(
    def: &FieldDef,
    facts: &ReleaseFacts,
    contribution: f64,
    missing: bool,
    known_categories: &[String],
    rates: &RateBook,
) -> Factor {
    let days = rates.days;
    let overall = rates.overall.pct();
    let (value, sentence) = match raw(def, facts) {
        Raw::Cat(v) => {
            let sentence = if missing || !known_categories.iter().any(|c| c == v) {
                format!("{} `{v}` has too little history; the model treats it as unknown", def.label)
            } else if let Some(r) = rates.categories.get(def.name).and_then(|m| m.get(v)) {
                format!(
                    "{} {v}: {:.0}% of orders departed late in the last {days} days ({} of {}), against {overall:.0}% overall; this {} the risk",
                    def.label,
                    r.pct(),
                    r.late,
                    r.n,
                    direction(contribution)
                )
            } else {
                format!(
                    "{} {v}: no orders in the last {days} days; this {} the risk",
                    def.label,
                    direction(contribution)
                )
            };
            (v.to_string(), sentence)
        }
        Raw::Num(None) => ("unknown".into(), format!("{} is unknown", def.label)),
        Raw::Num(Some(x)) => {
            let bucket =
                rates.buckets.get(def.name).and_then(|bs| bs.iter().rev().find(|b| x >= b.from).or_else(|| bs.first()));
            let sentence = match bucket {
                Some(b) if b.rate.n > 0 => {
                    let range = match b.to {
                        None => format!("{} or more", fmt_num(b.from)),
                        Some(to) => format!("{} to {}", fmt_num(b.from), fmt_num(to)),
                    };
                    format!(
                        "{} {}: orders with {range} departed late on {:.0}% in the last {days} days ({} of {}), against {overall:.0}% overall; this {} the risk",
                        def.label,
                        fmt_num(x),
                        b.rate.pct(),
                        b.rate.late,
                        b.rate.n,
                        direction(contribution)
                    )
                }
                _ => format!("{} {}; this {} the risk", def.label, fmt_num(x), direction(contribution)),
            };
            (fmt_num(x), sentence)
        }
    };
    Factor { feature: def.name.to_string(), value, contribution, sentence }
}
