//! `/api/v1/insights/*` and `/api/v1/orders/{id}/risk`: decision support from the dispatch
//! history and the active risk model. Read-only.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use chrono::Duration;
use dispatch_intel::anomaly::{AnomalyOptions, Period, daily_counts, detect_share};
use dispatch_intel::hotspots::{Dimension, HotspotOptions, hotspots};
use dispatch_intel::ops::{HourlyCount, Metric, OpsWindow, ops_anomalies};
use dispatch_intel::{DispatchRecord, Risk};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use dispatch_store::{OpsCount, OpsCounter};

use crate::AppState;
use crate::problem::Problem;

async fn history_since(app: &AppState, days: u32) -> Result<Vec<DispatchRecord>, Problem> {
    let from = app.clock.now() - Duration::days(i64::from(days));
    let raw = app.store.history(Some(from)).await.map_err(|e| {
        tracing::error!(error = %e, "reading dispatch history failed");
        Problem::internal()
    })?;
    // A record that does not parse is skipped (and logged) rather than failing the report.
    Ok(raw
        .iter()
        .filter_map(|s| match serde_json::from_str(s) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable dispatch history record");
                None
            }
        })
        .collect())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HotspotParams {
    /// `family_region_carrier`, `route` or `warehouse_shift`; all when omitted.
    pub dimension: Option<String>,
    /// Days of history, 7–1000 (default 180).
    pub days: Option<u32>,
    /// Least dispatches in a combination (default 30).
    pub min_support: Option<u32>,
    /// Least lower-bound lift over the baseline (default 1.5).
    pub min_lift: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct HotspotList {
    pub days: u32,
    pub dispatches: usize,
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<dispatch_intel::Hotspot>,
}

fn bad(detail: String) -> Problem {
    Problem::bad_request("bad-query", detail)
}

/// Recurring-delay hotspots: combinations whose late-departure rate is, with 95% family-wise
/// confidence (Wilson lower bound, Bonferroni), at least `min_lift` times the baseline.
#[utoipa::path(get, path = "/api/v1/insights/hotspots", tag = "insights", params(HotspotParams),
    responses((status = 200, body = HotspotList), (status = 400, description = "bad query")),
    security(("bearer" = [])))]
pub async fn list_hotspots(
    State(app): State<Arc<AppState>>,
    params: Result<Query<HotspotParams>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<HotspotList>, Problem> {
    let Query(p) = params.map_err(|e| bad(e.body_text()))?;
    let dims: Vec<Dimension> = match p.dimension.as_deref() {
        None => Dimension::ALL.to_vec(),
        Some(d) => vec![Dimension::parse(d).ok_or_else(|| {
            bad(format!("unknown dimension `{d}`; one of family_region_carrier, route, warehouse_shift"))
        })?],
    };
    let days = p.days.unwrap_or(180);
    if !(7..=1000).contains(&days) {
        return Err(bad(format!("days must be 7–1000, not {days}")));
    }
    let mut opts = HotspotOptions::default();
    if let Some(s) = p.min_support {
        if s == 0 {
            return Err(bad("min_support must be at least 1".into()));
        }
        opts.min_support = s;
    }
    if let Some(l) = p.min_lift {
        if !(l.is_finite() && l > 0.0) {
            return Err(bad("min_lift must be a positive number".into()));
        }
        opts.min_lift = l;
    }
    let history = history_since(&app, days).await?;
    let items = hotspots(&history, &dims, &opts);
    Ok(axum::Json(HotspotList { days, dispatches: history.len(), items }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AnomalyParams {
    /// Days of history the baseline reads, 28–1000 (default 120).
    pub days: Option<u32>,
    /// Report anomalies of the last N days, 1–90 (default 14).
    pub recent: Option<u32>,
    /// Only this metric: `late_departures`, `exception_volume`, `queue_aging` or
    /// `booking_failures`; all when omitted.
    pub metric: Option<String>,
}

/// How a dispatch record is assigned to a series (its warehouse, its carrier).
type SeriesKey = fn(&DispatchRecord) -> String;

#[derive(Serialize, ToSchema)]
pub struct AnomalyView {
    /// `late_departures`, `exception_volume`, `queue_aging` or `booking_failures`.
    pub metric: String,
    /// `warehouse:AMS` or `carrier:dhl`.
    pub series: String,
    /// `daily` or `hourly`.
    pub period: String,
    /// The bucket's first instant (for daily `late_departures`: the date at 00:00 UTC).
    pub start: chrono::DateTime<chrono::Utc>,
    /// The bucket's date in the series' time zone (a warehouse's; UTC for carriers).
    #[schema(value_type = String, format = Date)]
    pub date: chrono::NaiveDate,
    /// The bucket's hour in that time zone (hourly buckets only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hour: Option<u32>,
    /// The count in the bucket.
    pub value: f64,
    /// What the same weekday (hour of the week) of earlier weeks predicts.
    pub expected: f64,
    /// Robust z-score: (value − expected) / spread.
    pub score: f64,
    pub sentence: String,
    /// `late_departures` only: the late departures (same as `value`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_departures: Option<f64>,
    /// `late_departures` only: the dispatches of that day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatches: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct AnomalyList {
    pub items: Vec<AnomalyView>,
}

/// Unusual days and hours: late departures from the dispatch history (judged against each
/// day's volume), and from live operations per warehouse and carrier — orders put on hold or
/// into exception, holds still unresolved at the on-hold aging threshold, failed carrier
/// bookings — each against the same weekday (hour of the week) of earlier weeks.
#[utoipa::path(get, path = "/api/v1/insights/anomalies", tag = "insights", params(AnomalyParams),
    responses((status = 200, body = AnomalyList), (status = 400, description = "bad query")),
    security(("bearer" = [])))]
pub async fn list_anomalies(
    State(app): State<Arc<AppState>>,
    params: Result<Query<AnomalyParams>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<AnomalyList>, Problem> {
    let Query(p) = params.map_err(|e| bad(e.body_text()))?;
    let days = p.days.unwrap_or(120);
    let recent = p.recent.unwrap_or(14);
    if !(28..=1000).contains(&days) {
        return Err(bad(format!("days must be 28–1000, not {days}")));
    }
    if !(1..=90).contains(&recent) {
        return Err(bad(format!("recent must be 1–90, not {recent}")));
    }
    let only = match p.metric.as_deref() {
        None => None,
        Some(m) => Some(Metric::parse(m).ok_or_else(|| {
            bad(format!(
                "unknown metric `{m}`; one of late_departures, exception_volume, queue_aging, booking_failures"
            ))
        })?),
    };
    let wanted = |m: Metric| only.is_none_or(|o| o == m);
    let mut items = Vec::new();
    if wanted(Metric::LateDepartures) {
        items.extend(late_departure_anomalies(&app, days, recent).await?);
    }
    if Metric::ALL.iter().any(|m| *m != Metric::LateDepartures && wanted(*m)) {
        items.extend(ops_anomaly_views(&app, days, recent).await?.into_iter().filter(|a| wanted(a.0)).map(|a| a.1));
    }
    items.sort_by(|a, b| b.start.cmp(&a.start).then_with(|| b.score.total_cmp(&a.score)));
    Ok(axum::Json(AnomalyList { items }))
}

async fn late_departure_anomalies(app: &AppState, days: u32, recent: u32) -> Result<Vec<AnomalyView>, Problem> {
    let history = history_since(app, days).await?;
    let since = app.clock.now().date_naive() - Duration::days(i64::from(recent));
    let mut items = Vec::new();
    let keys: [(&str, SeriesKey); 2] =
        [("warehouse", |r| r.facts.warehouse.clone()), ("carrier", |r| r.facts.carrier.clone())];
    for (kind, key) in keys {
        let (dates, series) = daily_counts(&history, key);
        for (name, (late, volume)) in series {
            let label = format!("{kind}:{name}");
            for a in detect_share(&label, &late, &volume, Period::Daily, &AnomalyOptions::default()) {
                let date = dates[a.index];
                if date < since {
                    continue;
                }
                items.push(AnomalyView {
                    metric: Metric::LateDepartures.code().into(),
                    sentence: format!(
                        "{kind} {name} on {date}: {} late departures of {} dispatches, {:.1} expected from the same weekday of earlier weeks",
                        a.value, volume[a.index], a.baseline
                    ),
                    series: label.clone(),
                    period: "daily".into(),
                    start: date.and_time(chrono::NaiveTime::MIN).and_utc(),
                    date,
                    hour: None,
                    value: a.value,
                    expected: a.baseline,
                    score: a.score,
                    late_departures: Some(a.value),
                    dispatches: Some(volume[a.index]),
                });
            }
        }
    }
    Ok(items)
}

/// The store's hourly counts as the series the anomaly detector reads: holds entered →
/// `exception_volume`, holds aged → `queue_aging` (per warehouse), failed bookings →
/// `booking_failures` per warehouse and per carrier.
pub fn ops_series(counts: &[OpsCount]) -> Vec<HourlyCount> {
    let mut out = Vec::with_capacity(counts.len() + counts.len() / 2);
    for c in counts {
        let one = |metric, series: String| HourlyCount { metric, series, hour: c.hour, count: c.count as f64 };
        match c.counter {
            OpsCounter::HoldsEntered => out.push(one(Metric::ExceptionVolume, format!("warehouse:{}", c.warehouse))),
            OpsCounter::HoldsAged => out.push(one(Metric::QueueAging, format!("warehouse:{}", c.warehouse))),
            OpsCounter::BookingFailures => {
                out.push(one(Metric::BookingFailures, format!("warehouse:{}", c.warehouse)));
                if let Some(carrier) = &c.carrier {
                    out.push(one(Metric::BookingFailures, format!("carrier:{carrier}")));
                }
            }
        }
    }
    out
}

/// The on-hold aging threshold of the active policy (`[monitors] queue_age_minutes.on_hold`).
pub fn hold_age(app: &AppState) -> Duration {
    let minutes = app.policy.policy().monitors.queue_age_minutes.get("on_hold").copied().unwrap_or(240);
    Duration::minutes(i64::from(minutes.max(1)))
}

async fn ops_anomaly_views(app: &AppState, days: u32, recent: u32) -> Result<Vec<(Metric, AnomalyView)>, Problem> {
    let now = app.clock.now();
    let from = now - Duration::days(i64::from(days));
    let age = hold_age(app);
    let counts = app.store.ops_counts(from, now, age).await.map_err(|e| {
        tracing::error!(error = %e, "reading live-operations counts failed");
        Problem::internal()
    })?;
    let zone = |series: &str| series.strip_prefix("warehouse:").and_then(|w| app.warehouses.get(w)).map(|w| w.timezone);
    let window =
        OpsWindow { from, to: now, report_since: now - Duration::days(i64::from(recent)), hold_age: age, zone: &zone };
    Ok(ops_anomalies(&ops_series(&counts), &window, &AnomalyOptions::default())
        .into_iter()
        .map(|a| {
            let view = AnomalyView {
                metric: a.metric.code().into(),
                series: a.series,
                period: match a.period {
                    Period::Daily => "daily".into(),
                    Period::Hourly => "hourly".into(),
                },
                start: a.start,
                date: a.date,
                hour: a.hour,
                value: a.value,
                expected: a.expected,
                score: a.score,
                sentence: a.sentence,
                late_departures: None,
                dispatches: None,
            };
            (a.metric, view)
        })
        .collect())
}

#[derive(Serialize, ToSchema)]
pub struct RiskView {
    pub order_id: String,
    #[schema(value_type = Object)]
    pub risk: Risk,
}

/// The active model's late-departure risk of one order, with its strongest factors.
#[utoipa::path(get, path = "/api/v1/orders/{id}/risk", tag = "insights",
    params(("id" = String, Path, description = "Order id")),
    responses((status = 200, body = RiskView), (status = 404, description = "no such order"),
        (status = 409, description = "no risk model is active")),
    security(("bearer" = [])))]
pub async fn order_risk(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<axum::Json<RiskView>, Problem> {
    let internal = |e: dispatch_store::StoreError| {
        tracing::error!(error = %e, "risk lookup failed");
        Problem::internal()
    };
    let order =
        app.store.order(&id).await.map_err(internal)?.ok_or_else(|| Problem::not_found(&format!("order {id}")))?;
    let model = app.intel.get(app.store.as_ref(), app.clock.now()).await.map_err(internal)?.ok_or_else(|| {
        Problem::new(
            axum::http::StatusCode::CONFLICT,
            "no-active-model",
            "No risk model is active",
            "train one with `dispatchd model train` (or promote one with `dispatchd model promote`)",
        )
    })?;
    let Some(wh) = app.warehouses.get(&order.facts.warehouse) else {
        return Err(Problem::not_found(&format!("warehouse {}", order.facts.warehouse)));
    };
    let facts = crate::intel::live_facts(&app, &order, wh);
    Ok(axum::Json(RiskView { order_id: order.id.clone(), risk: model.score(&facts, 5) }))
}
