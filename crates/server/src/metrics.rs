//! Prometheus metrics: request counts and latency by route, and order counts by state,
//! warehouse and hold reason (read from the projection at scrape time, so every node of a
//! cluster reports the same truth).

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use dispatch_core::{HoldReason, OrderState};
use dispatch_store::{StoreError, WriteOutcome};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::AppState;

/// The process-wide recorder (the `metrics` facade has one global recorder).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
            let builder = PrometheusBuilder::new();
            let builder = builder.set_buckets(&buckets).unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may exist in tests; ours still renders what it records.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

pub async fn track_requests(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("dispatchd_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("dispatchd_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}

pub fn record_write(outcome: &WriteOutcome) {
    if outcome.appended > 0 {
        metrics::counter!("dispatchd_events_appended_total").increment(outcome.appended as u64);
    }
    if outcome.created {
        metrics::counter!("dispatchd_orders_received_total", "warehouse" => outcome.order.facts.warehouse.clone())
            .increment(1);
    }
}

/// One scrape: refresh the gauges from the store, then render. Scrapes take turns, because a
/// refresh zeroes each gauge before setting it: two at once (two Prometheus servers, or two
/// servers in one test process sharing the global recorder) could render the other's zeros.
pub async fn scrape(app: &AppState) -> String {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = TURN.lock().await;
    if let Err(e) = refresh_gauges(app).await {
        tracing::warn!(error = %e, "could not refresh order gauges");
    }
    app.metrics.render()
}

async fn refresh_gauges(app: &AppState) -> Result<(), StoreError> {
    let counts = app.store.counts().await?;
    // Zero first, so a queue that emptied reads 0 rather than its last value.
    for w in app.warehouses.iter() {
        for s in OrderState::ALL {
            metrics::gauge!("dispatchd_orders", "state" => s.code(), "warehouse" => w.code.clone()).set(0.0);
        }
    }
    for (state, warehouse, n) in counts.by_state_warehouse {
        metrics::gauge!("dispatchd_orders", "state" => state, "warehouse" => warehouse).set(n as f64);
    }
    for r in HoldReason::ALL {
        metrics::gauge!("dispatchd_holds", "reason" => r.code()).set(0.0);
    }
    for (reason, n) in counts.holds_by_reason {
        metrics::gauge!("dispatchd_holds", "reason" => reason).set(n as f64);
    }
    let mut dead = 0;
    for (kind, status, n) in app.store.job_counts().await? {
        if status == "dead" {
            dead += n;
        }
        metrics::gauge!("dispatchd_jobs", "kind" => kind, "status" => status).set(n as f64);
    }
    metrics::gauge!("dispatchd_dead_letters").set(dead as f64);
    crate::approvals::refresh_gauges(app).await?;
    Ok(())
}
