//! `dispatchd history import|generate` and `dispatchd model train|list|promote|rollback`: the
//! shell around `dispatch_intel`. The active model changes only by `promote`, `rollback`, or a
//! `train` whose candidate is at least as good as the active model on the same held-out orders.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use dispatch_intel::model::{Verdict, compare, train};
use dispatch_intel::{DispatchRecord, FeatureList, HistorySpec, RiskModel, TrainOptions};
use dispatch_store::{HistoryRow, ModelRow, Store};

fn rows(records: &[DispatchRecord]) -> Result<Vec<HistoryRow>> {
    Ok(records.iter().map(dispatch_server::intel::history_row).collect::<Result<_, _>>()?)
}

/// Writes records to the history table; returns how many.
pub async fn store_history(store: &dyn Store, records: &[DispatchRecord]) -> Result<u64> {
    let bar = crate::app::progress(records.len() as u64, "writing dispatch history");
    let mut n = 0;
    for chunk in records.chunks(20_000) {
        n += store.insert_history(&rows(chunk)?).await?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(n)
}

pub async fn import_csv(store: &dyn Store, file: &Path) -> Result<()> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let records = dispatch_intel::history::read_csv(std::io::BufReader::new(f))
        .with_context(|| format!("{} was not imported", file.display()))?;
    let n = store_history(store, &records).await?;
    eprintln!("imported {n} dispatch records from {}", file.display());
    Ok(())
}

pub async fn generate(store: &dyn Store, spec: &HistorySpec) -> Result<usize> {
    let records = spec.generate();
    store_history(store, &records).await?;
    Ok(records.len())
}

async fn load_history(store: &dyn Store) -> Result<Vec<DispatchRecord>> {
    let raw = store.history(None).await?;
    raw.iter()
        .enumerate()
        .map(|(i, s)| serde_json::from_str(s).with_context(|| format!("history record {} is not readable", i + 1)))
        .collect()
}

fn summary(m: &RiskModel) -> serde_json::Value {
    serde_json::json!({
        "version": m.version,
        "features": m.features,
        "training_window": m.training_window,
        "holdout_window": m.holdout_window,
        "training_rows": m.training_rows,
        "holdout_rows": m.holdout_rows,
        "data_hash": m.data_hash,
        "metrics": {
            "roc_auc": m.evaluation.overall.roc_auc,
            "pr_auc": m.evaluation.overall.pr_auc,
            "brier": m.evaluation.overall.brier,
            "ece": m.evaluation.overall.ece,
            "late_rate": m.evaluation.overall.late_rate,
        },
    })
}

fn spinner(what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() || std::env::var_os("CI").is_some() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar.set_message(what.to_string());
    bar
}

/// The outcome of `model train`, for the caller to print or test.
#[derive(Debug)]
pub enum TrainOutcome {
    Activated { version: String, reason: String },
    KeptActive { candidate: String, active: String, reason: String },
}

pub async fn train_and_maybe_activate(
    store: &dyn Store,
    options: &TrainOptions,
    now: DateTime<Utc>,
) -> Result<(TrainOutcome, RiskModel)> {
    let bar = spinner("reading dispatch history");
    let history = load_history(store).await?;
    bar.set_message(format!("training on {} dispatch records", history.len()));
    let features = FeatureList::default();
    let opts = options.clone();
    let model = {
        let b = bar.clone();
        tokio::task::spawn_blocking(move || {
            train(&history, &features, &opts, now, &|stage| b.set_message(format!("training: {stage}")))
                .map(|m| (m, history))
        })
        .await
        .context("the training task failed")?
    };
    bar.finish_and_clear();
    let (model, history) = model.map_err(|e| anyhow!("{e}; the active model stays"))?;
    let bytes = model.to_bytes();
    let row = ModelRow {
        version: model.version.clone(),
        created_at: now,
        status: "candidate".into(),
        activated_at: None,
        summary: summary(&model).to_string(),
    };
    store.insert_model(&row, &bytes).await?;
    let outcome = match store.active_model().await? {
        None => {
            store.activate_model(&model.version, now).await?;
            TrainOutcome::Activated { version: model.version.clone(), reason: "no model was active".into() }
        }
        Some((active_row, active_bytes)) => {
            let active = RiskModel::from_bytes(&active_bytes)
                .with_context(|| format!("the active model {} cannot be read", active_row.version))?;
            let holdout: Vec<&DispatchRecord> =
                history.iter().filter(|r| r.facts.released_at >= model.holdout_window.from).collect();
            let active_eval = active.evaluate(&holdout);
            match compare(&model.evaluation.overall, &active_eval.overall) {
                Verdict::Better { reason } => {
                    store.activate_model(&model.version, now).await?;
                    TrainOutcome::Activated { version: model.version.clone(), reason }
                }
                Verdict::Worse { reason } => {
                    TrainOutcome::KeptActive { candidate: model.version.clone(), active: active_row.version, reason }
                }
            }
        }
    };
    Ok((outcome, model))
}

pub async fn train_cmd(store: &dyn Store, options: &TrainOptions, now: DateTime<Utc>) -> Result<()> {
    let (outcome, m) = train_and_maybe_activate(store, options, now).await?;
    let o = &m.evaluation.overall;
    println!(
        "{}: trained on {} dispatches ({} to {}), evaluated on the {} after: ROC AUC {:.3}, PR AUC {:.3}, Brier {:.4}, ECE {:.4}",
        m.version,
        m.training_rows,
        m.training_window.from.date_naive(),
        m.training_window.to.date_naive(),
        m.holdout_rows,
        o.roc_auc.unwrap_or(0.0),
        o.pr_auc.unwrap_or(0.0),
        o.brier,
        o.ece
    );
    for (w, x) in &m.evaluation.by_warehouse {
        println!(
            "  warehouse {w:<12} n={:<7} late {:>5.1}%  ROC AUC {:.3}  Brier {:.4}",
            x.count,
            100.0 * x.late_rate,
            x.roc_auc.unwrap_or(0.0),
            x.brier
        );
    }
    for (c, x) in &m.evaluation.by_carrier {
        println!(
            "  carrier   {c:<12} n={:<7} late {:>5.1}%  ROC AUC {:.3}  Brier {:.4}",
            x.count,
            100.0 * x.late_rate,
            x.roc_auc.unwrap_or(0.0),
            x.brier
        );
    }
    match outcome {
        TrainOutcome::Activated { version, reason } => {
            println!("{version} is now the active model ({reason})");
            Ok(())
        }
        TrainOutcome::KeptActive { candidate, active, reason } => bail!(
            "candidate {candidate} is worse than the active model {active}: {reason}; {active} stays active (promote the candidate by hand with `dispatchd model promote {candidate}`)"
        ),
    }
}

pub async fn list_cmd(store: &dyn Store) -> Result<()> {
    let models = store.models().await?;
    if models.is_empty() {
        eprintln!("no models yet; train one with `dispatchd model train`");
    }
    for m in models {
        let s: serde_json::Value = serde_json::from_str(&m.summary).unwrap_or_default();
        let metric = |k: &str| s["metrics"][k].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:<32} {:<9} created {}  ROC AUC {:.3}  Brier {:.4}  ECE {:.4}  rows {}  data {}",
            m.version,
            m.status,
            m.created_at.format("%Y-%m-%d %H:%M"),
            metric("roc_auc"),
            metric("brier"),
            metric("ece"),
            s["training_rows"],
            s["data_hash"].as_str().map(|h| &h[..h.len().min(12)]).unwrap_or("?")
        );
    }
    Ok(())
}

pub async fn promote_cmd(store: &dyn Store, version: &str, now: DateTime<Utc>) -> Result<()> {
    let bytes = store
        .model_artifact(version)
        .await?
        .ok_or_else(|| anyhow!("no model {version}; see `dispatchd model list`"))?;
    RiskModel::from_bytes(&bytes).with_context(|| format!("model {version} cannot be used"))?;
    store.activate_model(version, now).await?;
    println!("{version} is now the active model");
    Ok(())
}

pub async fn rollback_cmd(store: &dyn Store, now: DateTime<Utc>) -> Result<()> {
    let models = store.models().await?;
    let active = models.iter().find(|m| m.status == "active").ok_or_else(|| anyhow!("no model is active"))?;
    let previous = models
        .iter()
        .filter(|m| m.status == "retired" && m.activated_at.is_some())
        .max_by_key(|m| m.activated_at)
        .ok_or_else(|| anyhow!("{} is the only model that was ever active; nothing to roll back to", active.version))?;
    store.activate_model(&previous.version, now).await?;
    println!("rolled back from {} to {}", active.version, previous.version);
    Ok(())
}
