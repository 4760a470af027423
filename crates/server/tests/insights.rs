//! The insights routes over HTTP: per-order risk from the active model, hotspots, anomalies,
//! and their error answers.

mod common;
mod console_support;

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

    // Scoring reads the carriers' failed bookings of the last 6 h (every node's, from the
    // store) as of the last refresh; `GET /risk` refreshes.
    for minutes in [30, 90, 300, 420] {
        let a = dispatch_store::CarrierAttempt {
            at: common::start_time() - Duration::minutes(minutes),
            carrier: "dhl".into(),
            warehouse: "AMS".into(),
            order_id: None,
            outcome: "unavailable".into(),
        };
        app.store.record_carrier_attempt(&a).await.unwrap();
    }
    let r = app.get(&format!("/api/v1/orders/{id}/risk"), app.token(dispatch_core::Role::Auditor)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.state.intel.carrier_failures("dhl"), 3, "the one 7 h ago is outside the window");
    assert_eq!(app.state.intel.carrier_failures("ups"), 0);
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
        "/api/v1/insights/anomalies?metric=moon",
        "/api/v1/insights/anomalies?metric=",
    ] {
        let (status, p) = problem(app.get(bad, app.admin()).await).await;
        assert_eq!(status, 400, "{bad}: {p}");
    }
    app.stop().await;
}

/// An order held by the built-in rules (credit hold) in `warehouse`, created at `at`.
async fn hold(app: &TestApp, n: &str, warehouse: &str, at: chrono::DateTime<Utc>) {
    app.clock.set(at);
    let mut o = order(n);
    o["warehouse"] = warehouse.into();
    o["customer"]["credit_status"] = "hold".into();
    let created = app.create(&o).await;
    assert_eq!(created["state"], "on_hold", "{created}");
}

fn find<'a>(items: &'a [serde_json::Value], metric: &str, series: &str, period: &str) -> Vec<&'a serde_json::Value> {
    items.iter().filter(|a| a["metric"] == metric && a["series"] == series && a["period"] == period).collect()
}

#[tokio::test]
async fn a_burst_of_holds_in_one_warehouse_is_an_anomaly_and_a_steady_warehouse_is_not() {
    let app = TestApp::spawn().await;
    // Five weeks of two holds a day in AMS and DUS (09:30 and 10:30 UTC), then on Monday
    // 23 November AMS holds 15 more orders between 11:00 and 11:30.
    let burst_day = common::start_time() - Duration::days(1);
    for d in (0..=35).rev() {
        let day = burst_day - Duration::days(d);
        for (wh, minutes) in [("AMS", 570), ("AMS", 630), ("DUS", 570), ("DUS", 630)] {
            hold(&app, &format!("{wh}/{d}/{minutes}"), wh, day + Duration::minutes(minutes - 8 * 60)).await;
        }
    }
    for k in 0..15 {
        hold(&app, &format!("AMS/burst/{k}"), "AMS", burst_day + Duration::minutes(3 * 60 + 2 * k)).await;
    }
    app.clock.set(common::start_time());

    let all = app.get_json("/api/v1/insights/anomalies").await;
    let items = all["items"].as_array().unwrap();
    let day = find(items, "exception_volume", "warehouse:AMS", "daily");
    assert_eq!(day.len(), 1, "{all}");
    assert_eq!(day[0]["date"], "2026-11-23");
    assert_eq!((day[0]["value"].as_f64(), day[0]["expected"].as_f64()), (Some(17.0), Some(2.0)), "{all}");
    assert!(day[0]["score"].as_f64().unwrap() >= 4.0);
    assert!(day[0]["late_departures"].is_null(), "history-only fields stay away from live metrics");
    let sentence = day[0]["sentence"].as_str().unwrap();
    assert!(sentence.contains("warehouse AMS on 2026-11-23: 17 orders put on hold or into exception"), "{sentence}");
    // The burst hour (11:00 UTC is 12:00 in Amsterdam).
    let hour = find(items, "exception_volume", "warehouse:AMS", "hourly");
    assert_eq!(hour.len(), 1, "{all}");
    assert_eq!((hour[0]["hour"].as_u64(), hour[0]["value"].as_f64()), (Some(12), Some(15.0)));
    assert_eq!(hour[0]["start"], "2026-11-23T11:00:00Z");
    // Nothing was resolved: four hours later the same holds are unresolved (queue aging).
    let aged = find(items, "queue_aging", "warehouse:AMS", "daily");
    assert_eq!(aged.len(), 1, "{all}");
    assert_eq!((aged[0]["date"].as_str(), aged[0]["value"].as_f64()), (Some("2026-11-23"), Some(17.0)));
    assert!(aged[0]["sentence"].as_str().unwrap().contains("holds still unresolved after 4 h"), "{aged:?}");
    // The steady warehouse has none.
    assert!(items.iter().all(|a| a["series"] != "warehouse:DUS"), "{all}");
    assert!(items.iter().all(|a| a["series"] == "warehouse:AMS"), "{all}");

    // The filter keeps one metric.
    let only = app.get_json("/api/v1/insights/anomalies?metric=queue_aging").await;
    let only = only["items"].as_array().unwrap();
    assert!(!only.is_empty() && only.iter().all(|a| a["metric"] == "queue_aging"), "{only:?}");
    let none = app.get_json("/api/v1/insights/anomalies?metric=booking_failures").await;
    assert_eq!(none["items"].as_array().unwrap().len(), 0, "{none}");

    // The console's insights page lists them.
    let ops = console_support::sign_in(&app, "ops", &[dispatch_core::Role::OpsManager]).await;
    let (status, html) = ops.get("/console/insights").await;
    assert_eq!(status, 200);
    assert!(html.contains("exception volume") && html.contains("queue aging"), "{html}");
    assert!(html.contains("17 orders put on hold or into exception"), "{html}");
    app.stop().await;
}

#[tokio::test]
async fn carrier_health_on_the_console_comes_from_the_store_on_a_node_that_does_not_book() {
    // This node has no carriers configured (and no booking worker): the other nodes' booking
    // calls of the last hour still show, the circuit is this node's (unknown) view.
    let app = TestApp::spawn().await;
    let now = common::start_time();
    for (minutes, outcome) in [(5, "booked"), (10, "booked"), (20, "unavailable"), (50, "booked"), (90, "timeout")] {
        let a = dispatch_store::CarrierAttempt {
            at: now - Duration::minutes(minutes),
            carrier: "mockpost".into(),
            warehouse: "AMS".into(),
            order_id: None,
            outcome: outcome.into(),
        };
        app.store.record_carrier_attempt(&a).await.unwrap();
    }
    let sup = console_support::sign_in(&app, "sup", &[dispatch_core::Role::Supervisor]).await;
    let (status, html) = sup.get("/console/integrations").await;
    assert_eq!(status, 200);
    assert!(!html.contains("No carriers configured"), "{html}");
    assert!(html.contains("Circuit (this node)"), "{html}");
    // 4 attempts in the last hour, 1 failed: 25%.
    let row = html.split("mockpost").nth(1).unwrap_or_default();
    assert!(row.contains(">4<") && row.contains(">1<") && row.contains("25.0%") && row.contains("unknown"), "{row}");
    app.stop().await;
}
