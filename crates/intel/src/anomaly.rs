//! Anomaly alerts on daily and hourly series (exception volume, late departures, booking
//! failures by warehouse and carrier). The baseline of a point is the median of the same
//! slot in earlier weeks — the same weekday for daily series, the same hour of the week for
//! hourly ones — so a Monday peak is compared with Mondays. The spread is the median absolute
//! deviation of those weeks, floored by the Poisson spread of a count, and a point is an
//! anomaly when it is `threshold` spreads above its baseline and at least `min_excess` above.

use std::collections::{BTreeMap, HashMap};

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::history::DispatchRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// One point per day; seasonality of a week (7 points).
    Daily,
    /// One point per hour; seasonality of a week (168 points).
    Hourly,
}

impl Period {
    fn season(self) -> usize {
        match self {
            Period::Daily => 7,
            Period::Hourly => 168,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyOptions {
    /// Earlier seasons (weeks) the baseline looks at.
    pub lookback: usize,
    /// Seasons needed before a point is judged at all.
    pub min_history: usize,
    /// Robust z-score a point must reach.
    pub threshold: f64,
    /// And the least excess over the baseline, in the series' unit.
    pub min_excess: f64,
}

impl Default for AnomalyOptions {
    fn default() -> Self {
        AnomalyOptions { lookback: 8, min_history: 4, threshold: 4.0, min_excess: 3.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub series: String,
    /// Index of the point in the series.
    pub index: usize,
    pub value: f64,
    pub baseline: f64,
    pub spread: f64,
    /// `(value - baseline) / spread`.
    pub score: f64,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Anomalies in one regular series (one value per day or hour, gaps filled with zero).
pub fn detect(series: &str, values: &[f64], period: Period, opts: &AnomalyOptions) -> Vec<Anomaly> {
    let season = period.season();
    let mut out = Vec::new();
    for (i, &x) in values.iter().enumerate() {
        let mut peers: Vec<f64> =
            (1..=opts.lookback).filter_map(|k| i.checked_sub(k * season)).map(|j| values[j]).collect();
        if peers.len() < opts.min_history {
            continue;
        }
        let baseline = median(&mut peers);
        let mut dev: Vec<f64> = peers.iter().map(|p| (p - baseline).abs()).collect();
        let mad = 1.4826 * median(&mut dev);
        // Counts vary by about their square root even when the weeks agree exactly.
        let spread = mad.max(baseline.max(1.0).sqrt());
        let score = (x - baseline) / spread;
        if score >= opts.threshold && x - baseline >= opts.min_excess {
            out.push(Anomaly { series: series.to_string(), index: i, value: x, baseline, spread, score });
        }
    }
    out
}

/// Anomalies in a count with an exposure (late departures out of dispatches): a point is
/// judged against what its own volume and the same slot's usual share predict, so a busy
/// season with proportionally more late departures is not an alert but a bad day is.
pub fn detect_share(
    series: &str,
    counts: &[f64],
    volumes: &[f64],
    period: Period,
    opts: &AnomalyOptions,
) -> Vec<Anomaly> {
    let season = period.season();
    let mut out = Vec::new();
    for (i, (&x, &vol)) in counts.iter().zip(volumes).enumerate() {
        let mut peers: Vec<f64> = (1..=opts.lookback)
            .filter_map(|k| i.checked_sub(k * season))
            .filter(|j| volumes[*j] > 0.0)
            .map(|j| counts[j] / volumes[j])
            .collect();
        if peers.len() < opts.min_history || vol <= 0.0 {
            continue;
        }
        let share = median(&mut peers);
        let mut dev: Vec<f64> = peers.iter().map(|p| (p - share).abs()).collect();
        let mad = 1.4826 * median(&mut dev) * vol;
        let baseline = share * vol;
        // Binomial spread of the count at the usual share, at least one.
        let spread = mad.max((vol * share.max(1.0 / vol) * (1.0 - share)).sqrt()).max(1.0);
        let score = (x - baseline) / spread;
        if score >= opts.threshold && x - baseline >= opts.min_excess {
            out.push(Anomaly { series: series.to_string(), index: i, value: x, baseline, spread, score });
        }
    }
    out
}

/// A daily series of late departures per key (e.g. carrier), every calendar day from the
/// first to the last day of `records` (warehouse-local dates), zero-filled.
pub fn daily_late_departures(
    records: &[DispatchRecord],
    key: impl Fn(&DispatchRecord) -> String,
) -> (Vec<NaiveDate>, BTreeMap<String, Vec<f64>>) {
    let (dates, by) = daily_counts(records, key);
    (dates, by.into_iter().map(|(k, (late, _))| (k, late)).collect())
}

/// Per key and calendar day: late departures and dispatches, zero-filled.
#[allow(clippy::type_complexity)]
pub fn daily_counts(
    records: &[DispatchRecord],
    key: impl Fn(&DispatchRecord) -> String,
) -> (Vec<NaiveDate>, BTreeMap<String, (Vec<f64>, Vec<f64>)>) {
    let Some(first) = records.iter().map(|r| r.facts.release_local.date()).min() else {
        return (Vec::new(), BTreeMap::new());
    };
    let last = records.iter().map(|r| r.facts.release_local.date()).max().unwrap_or(first);
    let days = (last - first).num_days() as usize + 1;
    let dates: Vec<NaiveDate> = (0..days).map(|d| first + Duration::days(d as i64)).collect();
    let mut by: HashMap<String, (Vec<f64>, Vec<f64>)> = HashMap::new();
    for r in records {
        let i = (r.facts.release_local.date() - first).num_days() as usize;
        let e = by.entry(key(r)).or_insert_with(|| (vec![0.0; days], vec![0.0; days]));
        e.0[i] += f64::from(u8::from(r.departed_late));
        e.1[i] += 1.0;
    }
    (dates, by.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_on_a_quiet_weekday_is_found_and_the_weekly_peak_is_not() {
        // Mondays are always busy (40), other days quiet (10); one Wednesday jumps to 30.
        let mut v: Vec<f64> = (0..70).map(|i| if i % 7 == 0 { 40.0 } else { 10.0 + (i % 3) as f64 }).collect();
        v[66] = 30.0;
        let found = detect("x", &v, Period::Daily, &AnomalyOptions::default());
        assert_eq!(found.iter().map(|a| a.index).collect::<Vec<_>>(), vec![66]);
        assert!(found[0].baseline < 13.0);
    }

    #[test]
    fn nothing_is_judged_without_enough_history() {
        let v = vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 100.0];
        assert!(detect("x", &v, Period::Daily, &AnomalyOptions::default()).is_empty());
    }
}
