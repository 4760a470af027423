//! The risk model against generated history with known true probabilities.

use std::sync::OnceLock;

use chrono::{TimeZone, Utc};
use dispatch_intel::features::{FeatureError, FeatureList, default_feature_names};
use dispatch_intel::generate::{PLANTED_ROUTE_HOTSPOTS, PLANTED_SHIFT_HOTSPOTS};
use dispatch_intel::hotspots::{Dimension, HotspotOptions, hotspots};
use dispatch_intel::metrics::{Metrics, roc_auc};
use dispatch_intel::model::{Verdict, compare, train};
use dispatch_intel::{DispatchRecord, HistorySpec, RiskModel, TrainOptions};

struct Fixture {
    history: Vec<DispatchRecord>,
    model: RiskModel,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let history = HistorySpec { seed: 42, scale: 0.3, ..Default::default() }.generate();
        let now = Utc.with_ymd_and_hms(2026, 11, 1, 6, 0, 0).unwrap();
        let model = train(&history, &FeatureList::default(), &TrainOptions::default(), now, &|_| {}).unwrap();
        Fixture { history, model }
    })
}

fn holdout(f: &Fixture) -> Vec<&DispatchRecord> {
    f.history.iter().filter(|r| r.facts.released_at >= f.model.holdout_window.from).collect()
}

#[test]
fn the_model_ranks_almost_as_well_as_the_true_probabilities() {
    let f = fixture();
    let held = holdout(f);
    assert_eq!(held.len(), f.model.holdout_rows);
    assert!(held.iter().all(|r| r.facts.released_at > f.model.training_window.to), "time-based split");
    let labels: Vec<bool> = held.iter().map(|r| r.departed_late).collect();
    let truth: Vec<f64> = held.iter().map(|r| r.true_late_probability.unwrap()).collect();
    let best = roc_auc(&truth, &labels).unwrap();
    let got = f.model.evaluation.overall.roc_auc.unwrap();
    eprintln!("model AUC {got:.4}, true-probability AUC {best:.4}, metrics {:?}", f.model.evaluation.overall);
    assert!(best - got <= 0.02, "model AUC {got:.4} vs best achievable {best:.4}");
    assert!(got > 0.7, "the planted effects are learnable: {got}");
}

#[test]
fn the_model_is_calibrated() {
    let f = fixture();
    let m = &f.model.evaluation.overall;
    assert!(m.ece <= 0.03, "ECE {} table {:?}", m.ece, m.reliability);
    assert!(!m.reliability.is_empty());
    assert_eq!(m.reliability.iter().map(|b| b.count).sum::<usize>(), m.count);
    for w in ["AMS", "DUS", "MAN"] {
        assert!(f.model.evaluation.by_warehouse[w].count > 1000, "{w}");
    }
    assert!(f.model.evaluation.by_carrier.contains_key("dhl_freight"));
}

#[test]
fn explanations_add_up_to_the_raw_score() {
    let f = fixture();
    for r in holdout(f).iter().step_by(997).take(40) {
        let (contribs, base) = f.model.contributions(&r.facts);
        let raw = f.model.raw_score(&r.facts);
        let booster = f.model.booster_raw_scores(&[&r.facts])[0];
        assert!((raw - booster).abs() < 1e-9, "compact forest {raw} vs booster {booster}");
        let sum = base + contribs.iter().sum::<f64>();
        assert!((sum - raw).abs() < 1e-6, "{sum} vs {raw}");
        let risk = f.model.score(&r.facts, 3);
        assert!((risk.raw_score - raw).abs() < 1e-6);
        assert!((risk.late_departure - 1.0 / (1.0 + (-raw).exp())).abs() < 1e-6);
        assert_eq!(risk.factors.len(), 3);
        // Every factor (the route groups three features) with the base value gives the score.
        let all = f.model.score(&r.facts, usize::MAX);
        let total = all.base_value + all.factors.iter().map(|x| x.contribution).sum::<f64>();
        assert!((total - raw).abs() < 1e-6, "{total} vs {raw}");
        assert!(risk.factors.windows(2).all(|w| w[0].contribution.abs() >= w[1].contribution.abs()));
    }
}

#[test]
fn a_planted_route_is_explained_with_its_observed_rate() {
    let f = fixture();
    let (fam, region, carrier) = PLANTED_ROUTE_HOTSPOTS[0];
    let r = holdout(f)
        .into_iter()
        .find(|r| {
            r.facts.product_family == fam
                && r.facts.region == region
                && r.facts.carrier == carrier
                && r.facts.carrier_failures_6h == Some(0)
        })
        .unwrap();
    let risk = f.model.score(&r.facts, 3);
    assert_eq!(risk.factors[0].feature, "route", "{risk:#?}");
    let sentence = &risk.factors[0].sentence;
    assert!(
        sentence.starts_with(&format!("carrier {carrier} to {region} has departed late on "))
            && sentence.contains(&format!("of {fam} orders in the last 90 days")),
        "{risk:#?}"
    );
    assert!(risk.late_departure > f.model.evaluation.overall.late_rate * 2.0, "{risk:#?}");
}

#[test]
fn unseen_categories_and_missing_values_score_without_panic() {
    let f = fixture();
    let mut facts = f.history[0].facts.clone();
    facts.carrier = "new_carrier".into();
    facts.region = "ZZ".into();
    facts.warehouse = "NEW".into();
    facts.weight_kg = None;
    facts.backlog_at_release = None;
    facts.hours_to_cutoff = None;
    let risk = f.model.score(&facts, 20);
    assert!(risk.late_departure.is_finite() && (0.0..=1.0).contains(&risk.late_departure));
    let route = risk.factors.iter().find(|x| x.feature == "route").unwrap();
    assert!(route.sentence.contains("too little recent history"), "{}", route.sentence);
    let wh = risk.factors.iter().find(|x| x.feature == "warehouse").unwrap();
    assert!(wh.sentence.contains("too little history"), "{}", wh.sentence);
}

#[test]
fn the_artifact_round_trips_is_small_and_refuses_leaky_features() {
    let f = fixture();
    let bytes = f.model.to_bytes();
    assert!(bytes.len() <= 10 * 1024 * 1024, "{} bytes", bytes.len());
    let back = RiskModel::from_bytes(&bytes).unwrap();
    assert_eq!(back.version, f.model.version);
    assert_eq!(back.data_hash, f.model.data_hash);
    let facts = &f.history[123].facts;
    assert_eq!(back.raw_score(facts), f.model.raw_score(facts));
    // An artifact edited to read an outcome field is refused like any leak.
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["features"][0] = "hours_late".into();
    v["encoder"]["features"][0] = "hours_late".into();
    let err = RiskModel::from_bytes(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(err.to_string().contains("leakage"), "{err}");
}

#[test]
fn training_refuses_a_leaky_feature_list_and_too_little_data() {
    let mut names = default_feature_names();
    names.push("departed_at".into());
    assert_eq!(FeatureList::new(&names), Err(FeatureError::Leakage { name: "departed_at".into() }));
    let small = HistorySpec { days: 10, scale: 0.05, ..Default::default() }.generate();
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 6, 0, 0).unwrap();
    let err = train(&small, &FeatureList::default(), &TrainOptions::default(), now, &|_| {}).unwrap_err();
    assert!(err.to_string().starts_with("too little history to train"), "{err}");
    assert!(train(&[], &FeatureList::default(), &TrainOptions::default(), now, &|_| {}).is_err());
}

#[test]
fn a_worse_candidate_is_refused() {
    let f = fixture();
    let held = holdout(f);
    let labels: Vec<bool> = held.iter().map(|r| r.departed_late).collect();
    let flat = Metrics::of(&vec![f.model.evaluation.overall.late_rate; held.len()], &labels, false);
    assert!(matches!(compare(&flat, &f.model.evaluation.overall), Verdict::Worse { .. }));
    assert!(matches!(compare(&f.model.evaluation.overall, &flat), Verdict::Better { .. }));
    let same = f.model.evaluate(&held);
    assert!(matches!(compare(&f.model.evaluation.overall, &same.overall), Verdict::Better { .. }));
}

#[test]
fn the_planted_hotspots_are_found() {
    let f = fixture();
    let found =
        hotspots(&f.history, &[Dimension::FamilyRegionCarrier, Dimension::WarehouseShift], &HotspotOptions::default());
    let is_planted = |h: &dispatch_intel::Hotspot| match h.dimension {
        Dimension::FamilyRegionCarrier => PLANTED_ROUTE_HOTSPOTS.iter().any(|(fa, r, c)| {
            h.value("product_family") == Some(fa) && h.value("region") == Some(r) && h.value("carrier") == Some(c)
        }),
        Dimension::WarehouseShift => {
            PLANTED_SHIFT_HOTSPOTS.iter().any(|(w, s)| h.value("warehouse") == Some(w) && h.value("shift") == Some(s))
        }
        Dimension::Route => false,
    };
    let true_pos = found.iter().filter(|h| is_planted(h)).count();
    let planted = PLANTED_ROUTE_HOTSPOTS.len() + PLANTED_SHIFT_HOTSPOTS.len();
    let precision = true_pos as f64 / found.len().max(1) as f64;
    let recall = true_pos as f64 / planted as f64;
    assert!(precision >= 0.9 && recall >= 0.9, "precision {precision} recall {recall}: {found:#?}");
}

#[test]
fn carrier_outage_days_stand_out_as_anomalies() {
    let f = fixture();
    let spec = HistorySpec { seed: 42, scale: 0.3, ..Default::default() };
    let (dates, series) = dispatch_intel::anomaly::daily_counts(&f.history, |r| r.facts.carrier.clone());
    let mut found = std::collections::HashSet::new();
    for (carrier, (late, volume)) in &series {
        let period = dispatch_intel::anomaly::Period::Daily;
        for a in dispatch_intel::anomaly::detect_share(carrier, late, volume, period, &Default::default()) {
            found.insert((dates[a.index], carrier.clone()));
        }
    }
    // Outages of carriers busy enough to show (judged after the first weeks of history).
    let judged_from = dates[0] + chrono::Duration::days(35);
    let planted: std::collections::HashSet<_> = spec
        .outage_days()
        .into_iter()
        .filter(|(d, c)| *d >= judged_from && series.contains_key(*c))
        .map(|(d, c)| (d, c.to_string()))
        .collect();
    let hit = planted.intersection(&found).count() as f64;
    let precision = hit / found.len().max(1) as f64;
    let recall = hit / planted.len().max(1) as f64;
    let mut fp: Vec<_> = found.difference(&planted).collect();
    fp.sort();
    assert!(
        precision >= 0.8 && recall >= 0.8,
        "precision {precision} recall {recall} of {} planted; false: {fp:?}",
        planted.len()
    );
}
