//! Insights: delay hotspots, anomalies (the API's own computations) and the active risk
//! model's report with its calibration chart.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::Response;
use maud::html;

use super::layout::{ConsoleUser, page, when};
use super::svg::calibration_chart;
use crate::AppState;
use crate::routes::insights::{AnomalyParams, HotspotParams, hold_age, list_anomalies, list_hotspots};

/// The insights page.
#[utoipa::path(get, path = "/console/insights", tag = "console",
    responses((status = 200, description = "Insights (HTML)", content_type = "text/html")))]
pub async fn page_handler(State(app): State<Arc<AppState>>, Extension(user): Extension<ConsoleUser>) -> Response {
    let hp = HotspotParams { dimension: None, days: None, min_support: None, min_lift: None };
    let hotspots = list_hotspots(State(app.clone()), Ok(Query(hp))).await.map(|j| j.0);
    let anomalies =
        list_anomalies(State(app.clone()), Ok(Query(AnomalyParams { days: None, recent: None, metric: None })))
            .await
            .map(|j| j.0);
    let model = app.intel.get(app.store.as_ref(), app.clock.now()).await.ok().flatten();
    let body = html! {
        section aria-labelledby="hot-h" {
            h2 id="hot-h" { "Delay hotspots" }
            @match &hotspots {
                Err(p) => p.error { (p.detail) },
                Ok(h) if h.items.is_empty() => p.muted { "No significant hotspots in " (h.dispatches) " dispatches of the last " (h.days) " days." },
                Ok(h) => {
                    p.muted { (h.dispatches) " dispatches, last " (h.days) " days; significant after a Bonferroni correction." }
                    table { thead { tr { th scope="col" { "Where" } th.num scope="col" { "Late" } th.num scope="col" { "Late rate" }
                        th.num scope="col" { "Baseline" } th scope="col" { "In words" } } }
                        tbody { @for x in &h.items { tr {
                            td { (x.key.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")) }
                            td.num { (x.late) " / " (x.dispatches) }
                            td.num { (format!("{:.0}%", x.late_rate * 100.0)) }
                            td.num { (format!("{:.0}%", x.baseline_rate * 100.0)) }
                            td { (x.sentence) }
                        } } } }
                }
            }
        }
        section aria-labelledby="anom-h" {
            h2 id="anom-h" { "Anomalies (last 14 days)" }
            p.muted { "Late departures (from the dispatch history), orders put on hold or into exception, holds unresolved after "
                (hold_age(&app).num_minutes() / 60) " h, and failed carrier bookings, each against the same weekday "
                "(or hour of the week) of earlier weeks." }
            @match &anomalies {
                Err(p) => p.error { (p.detail) },
                Ok(a) if a.items.is_empty() => p.muted { "None." },
                Ok(a) => table { thead { tr { th scope="col" { "When" } th scope="col" { "Metric" } th scope="col" { "Series" }
                    th.num scope="col" { "Count" } th.num scope="col" { "Expected" } th scope="col" { "In words" } } }
                    tbody { @for x in &a.items { tr {
                        td { (x.date) @if let Some(h) = x.hour { " " (format!("{h:02}:00")) } }
                        td { (x.metric.replace('_', " ")) }
                        td { (x.series) }
                        td.num { (x.value) @if let Some(d) = x.dispatches { " / " (d) } }
                        td.num { (format!("{:.1}", x.expected)) } td { (x.sentence) } } } } },
            }
        }
        section aria-labelledby="model-h" {
            h2 id="model-h" { "Late-departure risk model" }
            @match &model {
                None => p.muted { "No model is active. Train one with " code { "dispatchd model train" } "." },
                Some(m) => {
                    @let o = &m.evaluation.overall;
                    p { "Version " code { (m.version) } ", trained " (when(m.created_at)) " on " (m.training_rows) " dispatches, tested on "
                        (m.holdout_rows) " later ones." }
                    div.chart {
                        (calibration_chart("calibration on the holdout",
                            &o.reliability.iter().map(|b| (b.mean_predicted, b.observed_rate, b.count as u64)).collect::<Vec<_>>()))
                        table.numbers { tbody {
                            tr { th scope="row" { "ROC AUC" } td { (o.roc_auc.map_or("—".into(), |v| format!("{v:.3}"))) } }
                            tr { th scope="row" { "PR AUC" } td { (o.pr_auc.map_or("—".into(), |v| format!("{v:.3}"))) } }
                            tr { th scope="row" { "Brier" } td { (format!("{:.4}", o.brier)) } }
                            tr { th scope="row" { "Calibration error (ECE)" } td { (format!("{:.4}", o.ece)) } }
                            tr { th scope="row" { "Late rate" } td { (format!("{:.1}%", o.late_rate * 100.0)) } }
                            @for b in &o.reliability { tr { th scope="row" { (format!("{:.0}–{:.0}%", b.from * 100.0, b.to * 100.0)) }
                                td { (format!("predicted {:.0}%, observed {:.0}% of {}", b.mean_predicted * 100.0, b.observed_rate * 100.0, b.count)) } } }
                        } }
                    }
                    p.muted { "Features: " (m.features.join(", ")) }
                }
            }
        }
    };
    page(&user, "/console/insights", "Insights", body)
}
