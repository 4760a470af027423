//! The insights routes over HTTP: per-order risk from the active model, hotspots, anomalies,
//! and their error answers.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::{TestApp, order, problem};
use dispatch_intel::model::train;
use dispatch_intel::{FeatureList, HistorySpec, TrainOptions};
use dispatch_store::{HistoryRow, ModelRow};

async fn load_history(app: &TestApp) -> Vec<dispatch_intel::DispatchRecord> {
    // Two years ending the day before the test clock, for the demo warehouses.
    let spec =
        HistorySpec { seed: 3, end: common::start_time().date_naive() - Duration::days(1), days: 730, scale: 0.05 };
    let history = spec.generate();
    let rows: Vec<HistoryRow> = history.iter().map(|r| dispatch_server::intel::history_row(r).unwrap()).collect();
    app.store.insert_history(&rows).await.unwrap();
    history
}

#[tokio::test]
async fn risk_needs_an_active_model_then_explains_the_order() {
    let app = TestApp::spawn().await;
    let created = app.create(&order("WH/OUT/1")).await;
    let id = created["id"].as_str().unwrap().to_string();
    let (status, p) = problem(app.get(&format!("/api/v1/orders/{id}/risk"), app.admin()).await).await;
    assert_eq!((status, p["type"].as_str().unwrap().ends_with("no-active-model")), (409, true), "{p}");
    let (status, _) = problem(app.get("/api/v1/orders/ord_nope/risk", app.admin()).await).await;
    assert_eq!(status, 404);

    let history = load_history(&app).await;
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 6, 0, 0).unwrap();
    let model = train(&history, &FeatureList::default(), &TrainOptions::default(), now, &|_| {}).unwrap();
    let row = ModelRow {
        version: model.version.clone(),
        created_at: now,
        status: "candidate".into(),
        activated_at: None,
        summary: "{}".into(),
    };
    app.store.insert_model(&row, &model.to_bytes()).await.unwrap();
    app.store.activate_model(&model.version, now).await.unwrap();

    let r = app.get(&format!("/api/v1/orders/{id}/risk"), app.token(dispatch_core::Role::Auditor)).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let p = body["risk"]["late_departure"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p), "{body}");
    assert_eq!(body["risk"]["model_version"], model.version.as_str());
    let factors = body["risk"]["factors"].as_array().unwrap();
    assert_eq!(factors.len(), 5);
    assert!(factors.iter().all(|f| !f["sentence"].as_str().unwrap().is_empty()));
    app.stop().await;
}

#[tokio::test]
async fn hotspots_and_anomalies_read_the_history() {
    let app = TestApp::spawn().await;
    let r = app.get_json("/api/v1/insights/hotspots").await;
    assert_eq!(r["items"].as_array().unwrap().len(), 0);
    load_history(&app).await;
    let r = app.get_json("/api/v1/insights/hotspots?days=730&dimension=family_region_carrier&min_support=20").await;
    let items = r["items"].as_array().unwrap();
    assert!(!items.is_empty(), "{r}");
    assert!(
        items.iter().all(|h| h["dimension"] == "family_region_carrier" && h["lift_lower"].as_f64().unwrap() >= 1.5)
    );
    let r = app.get_json("/api/v1/insights/anomalies?days=365&recent=90").await;
    assert!(r["items"].is_array());
    for bad in [
        "/api/v1/insights/hotspots?dimension=moon",
        "/api/v1/insights/hotspots?days=2",
        "/api/v1/insights/hotspots?min_lift=-1",
        "/api/v1/insights/hotspots?bogus=1",
        "/api/v1/insights/anomalies?recent=0",
    ] {
        let (status, p) = problem(app.get(bad, app.admin()).await).await;
        assert_eq!(status, 400, "{bad}: {p}");
    }
    app.stop().await;
}
