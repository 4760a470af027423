//! The late-departure risk model: gradient-boosted trees (forust, XGBoost's algorithm) trained
//! on a time-based split of the dispatch history, evaluated on the later period, stored as a
//! versioned artifact with its metrics, features, training window and data hash, and scoring
//! orders with the model's own Shapley contributions as explanations.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use forust_ml::gradientbooster::ContributionsMethod;
use forust_ml::{GradientBooster, Matrix};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::explain::{Factor, RateBook};
use crate::features::{Encoder, FeatureError, FeatureList};
use crate::history::{DispatchRecord, ReleaseFacts};
use crate::metrics::Metrics;

/// The artifact format; bumped when a stored model can no longer be read as is.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Share of the history (the latest part, cut at a day boundary) held out for evaluation.
    pub holdout_fraction: f64,
    pub iterations: usize,
    pub learning_rate: f32,
    pub max_depth: usize,
    pub min_leaf_weight: f32,
    pub l2: f32,
    pub nbins: u16,
    /// Refuse to train with fewer training rows than this...
    pub min_train_rows: usize,
    /// ...fewer late departures in the training part, or fewer held-out rows.
    pub min_late: usize,
    pub min_holdout_rows: usize,
    pub seed: u64,
    /// Grow trees on all cores (true) or one.
    pub parallel: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            holdout_fraction: 0.2,
            iterations: 150,
            learning_rate: 0.15,
            max_depth: 5,
            min_leaf_weight: 5.0,
            l2: 1.0,
            nbins: 64,
            min_train_rows: 2_000,
            min_late: 50,
            min_holdout_rows: 500,
            seed: 0,
            parallel: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("too little history to train: {0}")]
    TooLittleData(String),
    #[error(transparent)]
    Features(#[from] FeatureError),
    #[error("the tree booster failed: {0}")]
    Booster(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the model artifact cannot be read: {0}")]
    Corrupt(String),
    #[error("the model artifact has format {found}; this build reads format {FORMAT}")]
    Format { found: u32 },
    #[error(transparent)]
    Features(#[from] FeatureError),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Metrics on the held-out (later) period, overall and per warehouse and carrier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub overall: Metrics,
    pub by_warehouse: BTreeMap<String, Metrics>,
    pub by_carrier: BTreeMap<String, Metrics>,
}

/// A trained model and everything needed to trust, compare and use it.
#[derive(Serialize, Deserialize)]
pub struct RiskModel {
    pub format: u32,
    pub version: String,
    pub created_at: DateTime<Utc>,
    pub features: Vec<String>,
    pub options: TrainOptions,
    pub training_window: Window,
    pub holdout_window: Window,
    pub training_rows: usize,
    pub holdout_rows: usize,
    /// SHA-256 over the records used (training and holdout), in time order.
    pub data_hash: String,
    pub evaluation: Evaluation,
    pub encoder: Encoder,
    /// Observed late rates of the last 90 days of training data, for explanations.
    pub rates: RateBook,
    booster: GradientBooster,
    #[serde(skip)]
    list: Option<FeatureList>,
    #[serde(skip)]
    forest: crate::forest::Forest,
}

impl std::fmt::Debug for RiskModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RiskModel")
            .field("version", &self.version)
            .field("features", &self.features)
            .field("training_window", &self.training_window)
            .finish_non_exhaustive()
    }
}

/// The risk of one order, with the model's reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Risk {
    /// Probability of departing after the cut-off of its planned ship date.
    pub late_departure: f64,
    /// The model's raw score (log-odds): `base_value` + the sum of every contribution.
    pub raw_score: f64,
    pub base_value: f64,
    pub model_version: String,
    /// The largest contributions, strongest first.
    pub factors: Vec<Factor>,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// SHA-256 of the records' identity, facts and outcome, in order.
pub fn data_hash(records: &[&DispatchRecord]) -> String {
    let mut h = Sha256::new();
    for r in records {
        let f = &r.facts;
        h.update(f.order_id.as_bytes());
        h.update([0]);
        h.update(f.released_at.timestamp_millis().to_le_bytes());
        h.update(format!(
            "{}|{}|{}|{}|{}|{}|{:?}|{:?}|{:?}|{}|{:?}|{}|{:?}",
            f.warehouse,
            f.carrier,
            f.product_family,
            f.region,
            f.service_level,
            f.transport_mode,
            f.hours_to_cutoff,
            f.backlog_at_release,
            f.carrier_failures_6h,
            f.lines,
            f.weight_kg,
            f.hazmat,
            f.order_value
        ));
        h.update([u8::from(r.departed_late)]);
    }
    hex::encode(h.finalize())
}

/// Splits time-ordered records at a day boundary so that about `holdout_fraction` of them
/// fall in the later part. Returns the index of the first held-out record.
fn split_point(sorted: &[&DispatchRecord], holdout_fraction: f64) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    let target = ((sorted.len() as f64) * (1.0 - holdout_fraction.clamp(0.01, 0.9))) as usize;
    let target = target.min(sorted.len() - 1);
    let day = sorted[target].facts.released_at.date_naive();
    sorted.partition_point(|r| r.facts.released_at.date_naive() < day)
}

fn evaluate_groups(records: &[&DispatchRecord], probs: &[f64]) -> Evaluation {
    let labels: Vec<bool> = records.iter().map(|r| r.departed_late).collect();
    let group = |key: &dyn Fn(&DispatchRecord) -> &str| {
        let mut by: BTreeMap<String, (Vec<f64>, Vec<bool>)> = BTreeMap::new();
        for (i, r) in records.iter().enumerate() {
            let e = by.entry(key(r).to_string()).or_default();
            e.0.push(probs[i]);
            e.1.push(labels[i]);
        }
        by.into_iter().map(|(k, (p, l))| (k, Metrics::of(&p, &l, false))).collect()
    };
    Evaluation {
        overall: Metrics::of(probs, &labels, true),
        by_warehouse: group(&|r| &r.facts.warehouse),
        by_carrier: group(&|r| &r.facts.carrier),
    }
}

/// Trains a candidate on `history` (any order). `progress` is told each stage's name.
pub fn train(
    history: &[DispatchRecord],
    features: &FeatureList,
    options: &TrainOptions,
    now: DateTime<Utc>,
    progress: &dyn Fn(&str),
) -> Result<RiskModel, TrainError> {
    let mut sorted: Vec<&DispatchRecord> = history.iter().collect();
    sorted.sort_by(|a, b| {
        a.facts.released_at.cmp(&b.facts.released_at).then_with(|| a.facts.order_id.cmp(&b.facts.order_id))
    });
    let cut = split_point(&sorted, options.holdout_fraction);
    let (train_part, holdout) = sorted.split_at(cut);
    let late = train_part.iter().filter(|r| r.departed_late).count();
    if train_part.len() < options.min_train_rows || holdout.len() < options.min_holdout_rows || late < options.min_late
    {
        return Err(TrainError::TooLittleData(format!(
            "{} training rows with {} late departures and {} held-out rows; at least {}, {} and {} are needed",
            train_part.len(),
            late,
            holdout.len(),
            options.min_train_rows,
            options.min_late,
            options.min_holdout_rows
        )));
    }
    if train_part.is_empty() || holdout.is_empty() {
        return Err(TrainError::TooLittleData("the history does not span two days".into()));
    }
    if late == train_part.len() {
        return Err(TrainError::TooLittleData("every training record departed late".into()));
    }
    progress("encoding");
    let encoder = Encoder::fit(features, train_part, 20);
    let facts: Vec<&ReleaseFacts> = train_part.iter().map(|r| &r.facts).collect();
    let data = encoder.encode_columns(features, &facts);
    let y: Vec<f64> = train_part.iter().map(|r| if r.departed_late { 1.0 } else { 0.0 }).collect();
    let matrix = Matrix::new(&data, facts.len(), features.len());
    progress("growing trees");
    let mut booster = GradientBooster::default()
        .set_iterations(options.iterations)
        .set_learning_rate(options.learning_rate)
        .set_max_depth(options.max_depth)
        .set_min_leaf_weight(options.min_leaf_weight)
        .set_l2(options.l2)
        .set_nbins(options.nbins)
        .set_seed(options.seed)
        .set_parallel(options.parallel);
    booster.fit_unweighted(&matrix, &y, None).map_err(|e| TrainError::Booster(e.to_string()))?;
    drop(data);
    progress("evaluating");
    let rates = RateBook::build(train_part, 90);
    let mut model = RiskModel {
        format: FORMAT,
        version: String::new(),
        created_at: now,
        features: features.names(),
        options: options.clone(),
        training_window: Window {
            from: train_part[0].facts.released_at,
            to: train_part[train_part.len() - 1].facts.released_at,
        },
        holdout_window: Window { from: holdout[0].facts.released_at, to: holdout[holdout.len() - 1].facts.released_at },
        training_rows: train_part.len(),
        holdout_rows: holdout.len(),
        data_hash: data_hash(&sorted),
        evaluation: evaluate_groups(&[], &[]),
        encoder,
        rates,
        forest: crate::forest::Forest::from_booster(&booster),
        booster,
        list: Some(features.clone()),
    };
    model.evaluation = model.evaluate(holdout);
    // Same data and time to the nanosecond with the same options is the same model.
    let mut h = Sha256::new();
    h.update(model.data_hash.as_bytes());
    h.update(serde_json::to_vec(options).unwrap_or_default());
    h.update(now.timestamp_nanos_opt().unwrap_or_default().to_le_bytes());
    model.version = format!("risk-{}-{}", now.format("%Y%m%dT%H%M%S"), &hex::encode(h.finalize())[..8]);
    Ok(model)
}

/// Whether a candidate may replace the active model, judged on the candidate's holdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Verdict {
    Better { reason: String },
    Worse { reason: String },
}

/// Tolerances: a candidate is worse when its ROC AUC is lower by more than 0.005 or its Brier
/// score higher by more than 0.002 on the same held-out orders.
pub fn compare(candidate: &Metrics, active_on_same_holdout: &Metrics) -> Verdict {
    let (ca, aa) = (candidate.roc_auc.unwrap_or(0.5), active_on_same_holdout.roc_auc.unwrap_or(0.5));
    if ca < aa - 0.005 {
        return Verdict::Worse {
            reason: format!("ROC AUC {ca:.4} is below the active model's {aa:.4} on the same held-out orders"),
        };
    }
    if candidate.brier > active_on_same_holdout.brier + 0.002 {
        return Verdict::Worse {
            reason: format!(
                "Brier score {:.4} is worse than the active model's {:.4} on the same held-out orders",
                candidate.brier, active_on_same_holdout.brier
            ),
        };
    }
    Verdict::Better {
        reason: format!(
            "ROC AUC {ca:.4} vs {aa:.4}, Brier {:.4} vs {:.4} on the same held-out orders",
            candidate.brier, active_on_same_holdout.brier
        ),
    }
}

impl RiskModel {
    fn list(&self) -> FeatureList {
        match &self.list {
            Some(l) => l.clone(),
            None => FeatureList::new(&self.features).unwrap_or_default(),
        }
    }

    /// The probability of a late departure, without explanations (the fast path).
    pub fn late_departure(&self, facts: &ReleaseFacts) -> f64 {
        sigmoid(self.raw_score(facts))
    }

    /// Reads an artifact written by [`RiskModel::to_bytes`], re-checking its feature list (a
    /// file edited to read an outcome field is refused like any other leak).
    pub fn from_bytes(bytes: &[u8]) -> Result<RiskModel, ModelError> {
        #[derive(Deserialize)]
        struct Head {
            format: u32,
        }
        let head: Head = serde_json::from_slice(bytes).map_err(|e| ModelError::Corrupt(e.to_string()))?;
        if head.format != FORMAT {
            return Err(ModelError::Format { found: head.format });
        }
        let mut m: RiskModel = serde_json::from_slice(bytes).map_err(|e| ModelError::Corrupt(e.to_string()))?;
        let list = FeatureList::new(&m.features)?;
        if m.encoder.features != m.features || m.encoder.categories.len() != m.features.len() {
            return Err(ModelError::Corrupt("the encoder does not match the feature list".into()));
        }
        m.list = Some(list);
        m.forest = crate::forest::Forest::from_booster(&m.booster);
        Ok(m)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Late-departure probabilities for many orders, on the calling thread.
    pub fn predict(&self, facts: &[&ReleaseFacts]) -> Vec<f64> {
        let list = self.list();
        let mut row = vec![0.0; list.len()];
        facts
            .iter()
            .map(|f| {
                self.encoder.encode_into(&list, f, &mut row);
                sigmoid(self.forest.raw(&row))
            })
            .collect()
    }

    /// The booster's own batch prediction (raw scores), to check the compact forest against.
    pub fn booster_raw_scores(&self, facts: &[&ReleaseFacts]) -> Vec<f64> {
        let list = self.list();
        let data = self.encoder.encode_columns(&list, facts);
        let m = Matrix::new(&data, facts.len(), list.len());
        self.booster.predict(&m, false)
    }

    /// Metrics of this model on `records` (e.g. another candidate's holdout).
    pub fn evaluate(&self, records: &[&DispatchRecord]) -> Evaluation {
        let facts: Vec<&ReleaseFacts> = records.iter().map(|r| &r.facts).collect();
        let probs = self.predict(&facts);
        evaluate_groups(records, &probs)
    }

    /// One order's risk with its `top` strongest factors explained.
    pub fn score(&self, facts: &ReleaseFacts, top: usize) -> Risk {
        let list = self.list();
        let mut row = vec![0.0; list.len()];
        self.encoder.encode_into(&list, facts, &mut row);
        let m = Matrix::new(&row, 1, list.len());
        let contribs = self.booster.predict_contributions(&m, ContributionsMethod::Shapley, false);
        let n = list.len();
        let base = contribs.get(n).copied().unwrap_or(0.0);
        let raw: f64 = contribs.iter().sum();
        let mut factors: Vec<Factor> = Vec::with_capacity(n);
        // Family, region and carrier read as one route: their contributions are summed (Shapley
        // values are additive), so an interaction split three ways is not lost in the ranking.
        let route: Vec<usize> = ["product_family", "region", "carrier"]
            .iter()
            .filter_map(|name| list.defs().iter().position(|d| d.name == *name))
            .collect();
        if route.len() == 3 {
            let c: f64 = route.iter().map(|i| contribs[*i]).sum();
            let unknown = route.iter().any(|i| row[*i].is_nan());
            factors.push(crate::explain::route_factor(facts, c, unknown, &self.rates));
        }
        for (i, def) in list.defs().iter().enumerate() {
            if route.len() == 3 && route.contains(&i) {
                continue;
            }
            factors.push(crate::explain::factor(
                def,
                facts,
                contribs[i],
                row[i].is_nan(),
                &self.encoder.categories[i],
                &self.rates,
            ));
        }
        factors.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
        factors.truncate(top);
        Risk {
            late_departure: sigmoid(raw),
            raw_score: raw,
            base_value: base,
            model_version: self.version.clone(),
            factors,
        }
    }

    /// Every feature's contribution (log-odds), in feature order, and the base value.
    pub fn contributions(&self, facts: &ReleaseFacts) -> (Vec<f64>, f64) {
        let list = self.list();
        let mut row = vec![0.0; list.len()];
        self.encoder.encode_into(&list, facts, &mut row);
        let m = Matrix::new(&row, 1, list.len());
        let mut c = self.booster.predict_contributions(&m, ContributionsMethod::Shapley, false);
        let base = c.pop().unwrap_or(0.0);
        (c, base)
    }

    /// The raw score (log-odds) the trees give, without explanations.
    pub fn raw_score(&self, facts: &ReleaseFacts) -> f64 {
        let Some(list) = &self.list else { return self.forest.raw(&[]) };
        let mut row = vec![0.0f64; list.len()];
        self.encoder.encode_into(list, facts, &mut row);
        self.forest.raw(&row)
    }
}
