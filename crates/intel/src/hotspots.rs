//! Recurring-delay hotspots: combinations (product family × region × carrier, route,
//! warehouse × shift) whose late-departure rate is reliably above the baseline. "Reliably"
//! means the Wilson score lower bound of the combination's rate — what the rate is at least,
//! with 95% confidence — divided by the baseline rate is at least `min_lift`, with at least
//! `min_support` dispatches. Small combinations with a few unlucky days do not qualify.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::history::DispatchRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// Product family × destination region × carrier.
    FamilyRegionCarrier,
    /// Warehouse × destination region.
    Route,
    /// Warehouse × release shift.
    WarehouseShift,
}

impl Dimension {
    pub const ALL: [Dimension; 3] = [Dimension::FamilyRegionCarrier, Dimension::Route, Dimension::WarehouseShift];

    pub fn parse(s: &str) -> Option<Dimension> {
        match s {
            "family_region_carrier" => Some(Dimension::FamilyRegionCarrier),
            "route" => Some(Dimension::Route),
            "warehouse_shift" => Some(Dimension::WarehouseShift),
            _ => None,
        }
    }

    fn parts(self) -> &'static [&'static str] {
        match self {
            Dimension::FamilyRegionCarrier => &["product_family", "region", "carrier"],
            Dimension::Route => &["warehouse", "region"],
            Dimension::WarehouseShift => &["warehouse", "shift"],
        }
    }

    fn key(self, r: &DispatchRecord) -> Vec<String> {
        let f = &r.facts;
        match self {
            Dimension::FamilyRegionCarrier => vec![f.product_family.clone(), f.region.clone(), f.carrier.clone()],
            Dimension::Route => vec![f.warehouse.clone(), f.region.clone()],
            Dimension::WarehouseShift => vec![f.warehouse.clone(), f.shift().to_string()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HotspotOptions {
    pub min_support: u32,
    pub min_lift: f64,
    /// Chance that any reported hotspot is a fluke (family-wise error rate). Many
    /// combinations are tested at once, so the bound's confidence is raised by Bonferroni:
    /// each combination is tested at `alpha / tested`.
    pub alpha: f64,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl Default for HotspotOptions {
    fn default() -> Self {
        HotspotOptions { min_support: 30, min_lift: 1.5, alpha: 0.05, from: None, to: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hotspot {
    pub dimension: Dimension,
    /// The combination, e.g. `[["product_family","pumps"],["region","GB"],["carrier","dhl_freight"]]`.
    pub key: Vec<(String, String)>,
    pub dispatches: u32,
    pub late: u32,
    pub late_rate: f64,
    /// Wilson score lower bound of the late rate (at the family-wise confidence).
    pub late_rate_lower: f64,
    /// Combinations with enough support tested in this dimension.
    pub tested: u32,
    pub baseline_rate: f64,
    /// `late_rate_lower / baseline_rate`: how many times the baseline the rate is at least.
    pub lift_lower: f64,
    pub sentence: String,
}

impl Hotspot {
    pub fn value(&self, part: &str) -> Option<&str> {
        self.key.iter().find(|(k, _)| k == part).map(|(_, v)| v.as_str())
    }
}

/// The standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let low = 0.02425;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

/// Wilson score interval lower bound for `late` of `n`.
pub fn wilson_lower(late: u32, n: u32, z: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    let p = f64::from(late) / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let margin = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - margin) / (1.0 + z2 / n)).max(0.0)
}

/// The hotspots in `records` for each dimension, strongest (highest `lift_lower`) first.
pub fn hotspots(records: &[DispatchRecord], dims: &[Dimension], opts: &HotspotOptions) -> Vec<Hotspot> {
    let in_window = |r: &&DispatchRecord| {
        opts.from.is_none_or(|f| r.facts.released_at >= f) && opts.to.is_none_or(|t| r.facts.released_at < t)
    };
    let window: Vec<&DispatchRecord> = records.iter().filter(in_window).collect();
    if window.is_empty() {
        return Vec::new();
    }
    let baseline = window.iter().filter(|r| r.departed_late).count() as f64 / window.len() as f64;
    if baseline <= 0.0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for dim in dims {
        let mut counts: HashMap<Vec<String>, (u32, u32)> = HashMap::new();
        for r in &window {
            let e = counts.entry(dim.key(r)).or_default();
            e.0 += 1;
            e.1 += u32::from(r.departed_late);
        }
        let tested = counts.values().filter(|(n, _)| *n >= opts.min_support).count() as u32;
        let z = normal_quantile(1.0 - opts.alpha.clamp(1e-12, 0.5) / f64::from(tested.max(1)));
        for (key, (n, late)) in counts {
            if n < opts.min_support {
                continue;
            }
            let lower = wilson_lower(late, n, z);
            let lift_lower = lower / baseline;
            if lift_lower < opts.min_lift {
                continue;
            }
            let rate = f64::from(late) / f64::from(n);
            let key: Vec<(String, String)> = dim.parts().iter().map(|p| p.to_string()).zip(key).collect();
            let what = key.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
            let sentence = format!(
                "{what}: {late} of {n} dispatches departed late ({:.0}%, at least {:.0}% with {:.0}% confidence over {tested} combinations) against {:.0}% overall — at least {:.1}× the baseline",
                rate * 100.0,
                lower * 100.0,
                (1.0 - opts.alpha) * 100.0,
                baseline * 100.0,
                lift_lower
            );
            out.push(Hotspot {
                dimension: *dim,
                key,
                dispatches: n,
                late,
                late_rate: rate,
                late_rate_lower: lower,
                tested,
                baseline_rate: baseline,
                lift_lower,
                sentence,
            });
        }
    }
    out.sort_by(|a, b| b.lift_lower.total_cmp(&a.lift_lower).then_with(|| a.key.cmp(&b.key)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_bound_is_below_the_rate_and_tightens_with_support() {
        let small = wilson_lower(5, 10, 1.96);
        let large = wilson_lower(500, 1000, 1.96);
        assert!(small < 0.5 && large < 0.5 && large > small);
        assert!((large - 0.469).abs() < 0.001, "{large}");
        assert_eq!(wilson_lower(0, 0, 1.96), 0.0);
        assert_eq!(wilson_lower(0, 50, 1.96), 0.0);
    }

    #[test]
    fn normal_quantiles() {
        assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-5);
        assert!((normal_quantile(0.5)).abs() < 1e-9);
        assert!((normal_quantile(0.001) + 3.090232).abs() < 1e-5);
    }
}
