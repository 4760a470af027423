//! Dispatch intelligence: decision support from the dispatch history — a late-departure risk
//! model with explanations, recurring-delay hotspots, anomaly alerts on daily and hourly
//! series, and partial-shipment and sequencing advice. Pure: no I/O, no clock of its own.

pub mod advice;
pub mod anomaly;
pub mod explain;
pub mod facts;
pub mod features;
pub mod forest;
pub mod generate;
pub mod history;
pub mod hotspots;
pub mod metrics;
pub mod model;
pub mod ops;

pub use explain::{Factor, RateBook};
pub use features::{FeatureError, FeatureList, Provenance};
pub use generate::HistorySpec;
pub use history::{DispatchRecord, ImportError, ReleaseFacts};
pub use hotspots::{Dimension, Hotspot, HotspotOptions};
pub use metrics::Metrics;
pub use model::{Risk, RiskModel, TrainError, TrainOptions, Verdict};
