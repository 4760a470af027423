//! How good a probability is: ranking (ROC AUC, PR AUC), accuracy of the probability itself
//! (Brier score) and calibration (reliability table, expected calibration error).

use serde::{Deserialize, Serialize};

/// Area under the ROC curve: the chance that a random late order gets a higher score than a
/// random on-time one (ties count half). `None` when one class is absent.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let pos = labels.iter().filter(|l| **l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    // Mann–Whitney U with mid-ranks for ties.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        for k in &idx[i..=j] {
            if labels[*k] {
                rank_sum += mid;
            }
        }
        i = j + 1;
    }
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// Area under the precision–recall curve as average precision (what a planner sees when
/// working down the list of flagged orders). `None` without late orders.
pub fn pr_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let pos = labels.iter().filter(|l| **l).count();
    if pos == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen, mut ap) = (0usize, 0usize, 0.0);
    let mut i = 0;
    while i < idx.len() {
        // A group of tied scores is one threshold.
        let mut j = i;
        let mut group_tp = 0;
        while j < idx.len() && scores[idx[j]] == scores[idx[i]] {
            group_tp += usize::from(labels[idx[j]]);
            j += 1;
        }
        tp += group_tp;
        seen += j - i;
        ap += (group_tp as f64 / pos as f64) * (tp as f64 / seen as f64);
        i = j;
    }
    Some(ap)
}

/// Mean squared error of the probability: 0 is perfect, 0.25 is a coin flip's score.
pub fn brier(probs: &[f64], labels: &[bool]) -> f64 {
    if probs.is_empty() {
        return 0.0;
    }
    probs.iter().zip(labels).map(|(p, l)| (p - if *l { 1.0 } else { 0.0 }).powi(2)).sum::<f64>() / probs.len() as f64
}

/// One bin of the reliability table: orders whose predicted probability fell in `[from, to)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    pub from: f64,
    pub to: f64,
    pub count: usize,
    pub mean_predicted: f64,
    pub observed_rate: f64,
}

/// Ten equal-width bins over [0, 1]; empty bins are left out.
pub fn reliability(probs: &[f64], labels: &[bool], bins: usize) -> Vec<ReliabilityBin> {
    let bins = bins.max(1);
    let mut acc = vec![(0usize, 0.0f64, 0usize); bins];
    for (p, l) in probs.iter().zip(labels) {
        let b = ((p * bins as f64) as usize).min(bins - 1);
        acc[b].0 += 1;
        acc[b].1 += p;
        acc[b].2 += usize::from(*l);
    }
    acc.iter()
        .enumerate()
        .filter(|(_, a)| a.0 > 0)
        .map(|(i, (n, sp, late))| ReliabilityBin {
            from: i as f64 / bins as f64,
            to: (i + 1) as f64 / bins as f64,
            count: *n,
            mean_predicted: sp / *n as f64,
            observed_rate: *late as f64 / *n as f64,
        })
        .collect()
}

/// Expected calibration error: the count-weighted mean gap between predicted and observed
/// rates over the reliability table.
pub fn ece(table: &[ReliabilityBin]) -> f64 {
    let total: usize = table.iter().map(|b| b.count).sum();
    if total == 0 {
        return 0.0;
    }
    table.iter().map(|b| b.count as f64 * (b.mean_predicted - b.observed_rate).abs()).sum::<f64>() / total as f64
}

/// Every metric for one set of predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub count: usize,
    pub late_rate: f64,
    pub roc_auc: Option<f64>,
    pub pr_auc: Option<f64>,
    pub brier: f64,
    pub ece: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reliability: Vec<ReliabilityBin>,
}

impl Metrics {
    pub fn of(probs: &[f64], labels: &[bool], with_table: bool) -> Metrics {
        let table = reliability(probs, labels, 10);
        Metrics {
            count: probs.len(),
            late_rate: if labels.is_empty() {
                0.0
            } else {
                labels.iter().filter(|l| **l).count() as f64 / labels.len() as f64
            },
            roc_auc: roc_auc(probs, labels),
            pr_auc: pr_auc(probs, labels),
            brier: brier(probs, labels),
            ece: ece(&table),
            reliability: if with_table { table } else { Vec::new() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_known_cases() {
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), Some(1.0));
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), Some(0.0));
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        // One of the four (pos, neg) pairs is ordered wrongly.
        assert_eq!(roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]), Some(0.75));
        assert_eq!(roc_auc(&[0.1], &[true]), None);
    }

    #[test]
    fn average_precision_of_known_cases() {
        assert_eq!(pr_auc(&[0.9, 0.8, 0.1], &[true, true, false]), Some(1.0));
        // Ranked: pos, neg, pos → (1/1 + 2/3) / 2.
        let ap = pr_auc(&[0.9, 0.8, 0.7], &[true, false, true]).unwrap();
        assert!((ap - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn calibration_of_a_perfect_and_a_biased_forecaster() {
        let probs = vec![0.25; 400];
        let labels: Vec<bool> = (0..400).map(|i| i % 4 == 0).collect();
        let t = reliability(&probs, &labels, 10);
        assert_eq!(t.len(), 1);
        assert!(ece(&t) < 1e-12);
        let biased = vec![0.45; 400];
        assert!((ece(&reliability(&biased, &labels, 10)) - 0.2).abs() < 1e-12);
        assert!((brier(&probs, &labels) - 0.1875).abs() < 1e-12);
    }
}
