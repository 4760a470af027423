//! The features a risk model may read, each declared with where its value comes from. Only
//! facts known when the order is released may be features; a field that is only known after
//! departure (the outcome) is refused with [`FeatureError::Leakage`], because a model trained
//! on it would look excellent and be useless when an order is scored before it leaves.

use serde::{Deserialize, Serialize};

use crate::history::{DispatchRecord, ReleaseFacts};

/// Where a field's value comes from, relative to the moment the order is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// Known when the order is released (or earlier): may be a feature.
    KnownAtRelease,
    /// Known only after departure: never a feature.
    AfterDeparture,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Numeric,
    Categorical,
}

/// One field of the dispatch history, as the model catalog knows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldDef {
    pub name: &'static str,
    pub provenance: Provenance,
    pub kind: Kind,
    /// How the field reads in a sentence ("the carrier", "the backlog at release").
    pub label: &'static str,
}

const fn known(name: &'static str, kind: Kind, label: &'static str) -> FieldDef {
    FieldDef { name, provenance: Provenance::KnownAtRelease, kind, label }
}

const fn after(name: &'static str, kind: Kind, label: &'static str) -> FieldDef {
    FieldDef { name, provenance: Provenance::AfterDeparture, kind, label }
}

/// Every field of the history the feature list may name.
pub const CATALOG: &[FieldDef] = &[
    known("warehouse", Kind::Categorical, "warehouse"),
    known("carrier", Kind::Categorical, "carrier"),
    known("product_family", Kind::Categorical, "product family"),
    known("region", Kind::Categorical, "destination region"),
    known("service_level", Kind::Categorical, "service level"),
    known("transport_mode", Kind::Categorical, "transport mode"),
    known("shift", Kind::Categorical, "release shift"),
    known("weekday", Kind::Numeric, "weekday"),
    known("release_hour", Kind::Numeric, "release hour"),
    known("hours_to_cutoff", Kind::Numeric, "hours to cut-off at release"),
    known("backlog_at_release", Kind::Numeric, "backlog at release"),
    known("carrier_failures_6h", Kind::Numeric, "carrier booking failures in the 6 hours before release"),
    known("lines", Kind::Numeric, "number of lines"),
    known("weight_kg", Kind::Numeric, "weight (kg)"),
    known("hazmat", Kind::Numeric, "dangerous goods"),
    known("order_value", Kind::Numeric, "order value"),
    after("departed_at", Kind::Numeric, "departure time"),
    after("departed_late", Kind::Numeric, "late departure"),
    after("shipped_after_promise", Kind::Numeric, "shipped after promise"),
    after("hours_late", Kind::Numeric, "hours late"),
    after("true_late_probability", Kind::Numeric, "generator's true probability"),
];

/// The default feature list: every field known at release.
pub fn default_feature_names() -> Vec<String> {
    CATALOG.iter().filter(|f| f.provenance == Provenance::KnownAtRelease).map(|f| f.name.to_string()).collect()
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeatureError {
    #[error("feature `{name}` is only known after departure; a model must not read it (leakage)")]
    Leakage { name: String },
    #[error("unknown feature `{name}`")]
    Unknown { name: String },
    #[error("feature `{name}` is listed twice")]
    Duplicate { name: String },
    #[error("the feature list is empty")]
    Empty,
}

/// A checked feature list: known fields, each known at release, no duplicates.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureList {
    defs: Vec<FieldDef>,
}

impl FeatureList {
    pub fn new<S: AsRef<str>>(names: &[S]) -> Result<Self, FeatureError> {
        if names.is_empty() {
            return Err(FeatureError::Empty);
        }
        let mut defs: Vec<FieldDef> = Vec::with_capacity(names.len());
        for n in names {
            let name = n.as_ref();
            let def = CATALOG
                .iter()
                .find(|f| f.name == name)
                .ok_or_else(|| FeatureError::Unknown { name: name.to_string() })?;
            if def.provenance != Provenance::KnownAtRelease {
                return Err(FeatureError::Leakage { name: name.to_string() });
            }
            if defs.iter().any(|d| d.name == name) {
                return Err(FeatureError::Duplicate { name: name.to_string() });
            }
            defs.push(*def);
        }
        Ok(FeatureList { defs })
    }

    pub fn defs(&self) -> &[FieldDef] {
        &self.defs
    }

    pub fn names(&self) -> Vec<String> {
        self.defs.iter().map(|d| d.name.to_string()).collect()
    }

    pub fn len(&self) -> usize {
        self.defs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }
}

impl Default for FeatureList {
    fn default() -> Self {
        FeatureList::new(&default_feature_names()).expect("the catalog's known fields are valid")
    }
}

/// A field's raw value in a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw<'a> {
    Num(Option<f64>),
    Cat(&'a str),
}

/// The value of a known-at-release field. There is deliberately no way to read an outcome
/// field here: the type holds only [`ReleaseFacts`].
pub fn raw<'a>(def: &FieldDef, f: &'a ReleaseFacts) -> Raw<'a> {
    match def.name {
        "warehouse" => Raw::Cat(&f.warehouse),
        "carrier" => Raw::Cat(&f.carrier),
        "product_family" => Raw::Cat(&f.product_family),
        "region" => Raw::Cat(&f.region),
        "service_level" => Raw::Cat(&f.service_level),
        "transport_mode" => Raw::Cat(&f.transport_mode),
        "shift" => Raw::Cat(f.shift()),
        "weekday" => Raw::Num(Some(f64::from(f.weekday()))),
        "release_hour" => Raw::Num(Some(f.local_hour())),
        "hours_to_cutoff" => Raw::Num(f.hours_to_cutoff),
        "backlog_at_release" => Raw::Num(f.backlog_at_release.map(f64::from)),
        "carrier_failures_6h" => Raw::Num(f.carrier_failures_6h.map(f64::from)),
        "lines" => Raw::Num(Some(f64::from(f.lines))),
        "weight_kg" => Raw::Num(f.weight_kg),
        "hazmat" => Raw::Num(Some(if f.hazmat { 1.0 } else { 0.0 })),
        "order_value" => Raw::Num(f.order_value),
        _ => Raw::Num(None),
    }
}

/// Turns categories into numbers for the trees. Codes follow each category's late rate in the
/// training data (lowest first), so one split separates slow categories from fast ones, as
/// LightGBM does for categorical splits. Categories seen fewer than `min_count` times, and
/// categories never seen, become missing (NaN), which the trees route on their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encoder {
    pub features: Vec<String>,
    /// Per feature: the categories in code order (empty for numeric features).
    pub categories: Vec<Vec<String>>,
    /// Category → code, built on first use (scoring is on the hot path).
    #[serde(skip)]
    codes: std::sync::OnceLock<Vec<std::collections::HashMap<String, f64>>>,
}

impl Encoder {
    pub fn fit(list: &FeatureList, records: &[&DispatchRecord], min_count: usize) -> Encoder {
        let mut categories = Vec::with_capacity(list.len());
        for def in list.defs() {
            if def.kind != Kind::Categorical {
                categories.push(Vec::new());
                continue;
            }
            let mut counts: std::collections::HashMap<&str, (usize, usize)> = std::collections::HashMap::new();
            for r in records {
                if let Raw::Cat(v) = raw(def, &r.facts) {
                    let e = counts.entry(v).or_default();
                    e.0 += 1;
                    e.1 += usize::from(r.departed_late);
                }
            }
            let mut cats: Vec<(&str, f64)> = counts
                .into_iter()
                .filter(|(_, (n, _))| *n >= min_count)
                .map(|(c, (n, late))| (c, late as f64 / n as f64))
                .collect();
            cats.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(b.0)));
            categories.push(cats.into_iter().map(|(c, _)| c.to_string()).collect());
        }
        Encoder { features: list.names(), categories, codes: std::sync::OnceLock::new() }
    }

    fn codes(&self) -> &[std::collections::HashMap<String, f64>] {
        self.codes.get_or_init(|| {
            self.categories
                .iter()
                .map(|cats| cats.iter().enumerate().map(|(i, c)| (c.clone(), i as f64)).collect())
                .collect()
        })
    }

    pub fn list(&self) -> Result<FeatureList, FeatureError> {
        FeatureList::new(&self.features)
    }

    /// One row of numbers (NaN for missing and unseen values).
    pub fn encode_into(&self, list: &FeatureList, f: &ReleaseFacts, row: &mut [f64]) {
        let codes = self.codes();
        for (i, def) in list.defs().iter().enumerate() {
            row[i] = match raw(def, f) {
                Raw::Num(v) => v.filter(|x| x.is_finite()).unwrap_or(f64::NAN),
                Raw::Cat(v) => codes.get(i).and_then(|m| m.get(v)).copied().unwrap_or(f64::NAN),
            };
        }
    }

    /// Column-major matrix of many rows, the layout the booster reads.
    pub fn encode_columns(&self, list: &FeatureList, facts: &[&ReleaseFacts]) -> Vec<f64> {
        let rows = facts.len();
        let cols = list.len();
        let mut data = vec![0.0; rows * cols];
        let mut row = vec![0.0; cols];
        for (r, f) in facts.iter().enumerate() {
            self.encode_into(list, f, &mut row);
            for (c, v) in row.iter().enumerate() {
                data[c * rows + r] = *v;
            }
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_departure_field_is_refused() {
        let mut names = default_feature_names();
        assert!(FeatureList::new(&names).is_ok());
        for leak in ["departed_at", "departed_late", "hours_late", "shipped_after_promise", "true_late_probability"] {
            names.push(leak.to_string());
            assert_eq!(FeatureList::new(&names), Err(FeatureError::Leakage { name: leak.into() }));
            names.pop();
        }
        assert_eq!(FeatureList::new(&["carrier", "nope"]), Err(FeatureError::Unknown { name: "nope".into() }));
        assert_eq!(FeatureList::new(&["carrier", "carrier"]), Err(FeatureError::Duplicate { name: "carrier".into() }));
        assert_eq!(FeatureList::new::<&str>(&[]), Err(FeatureError::Empty));
    }

    #[test]
    fn every_known_field_has_a_value_and_unseen_categories_are_missing() {
        let recs = crate::generate::HistorySpec { days: 5, scale: 0.05, ..Default::default() }.generate();
        let list = FeatureList::default();
        let refs: Vec<&DispatchRecord> = recs.iter().collect();
        let enc = Encoder::fit(&list, &refs, 1);
        let mut row = vec![0.0; list.len()];
        enc.encode_into(&list, &recs[0].facts, &mut row);
        let missing_allowed = ["weight_kg", "order_value", "backlog_at_release"];
        for (i, def) in list.defs().iter().enumerate() {
            assert!(row[i].is_finite() || missing_allowed.contains(&def.name), "{}", def.name);
        }
        let mut odd = recs[0].facts.clone();
        odd.carrier = "pigeon_post".into();
        odd.weight_kg = None;
        enc.encode_into(&list, &odd, &mut row);
        let carrier = list.names().iter().position(|n| n == "carrier").unwrap();
        assert!(row[carrier].is_nan());
    }
}
