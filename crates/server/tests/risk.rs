//! The risk model in decisions, over HTTP: a trained and promoted model changes a decision
//! through a policy rule and a priority term, the decision and the timeline say why (model
//! version, probability, factors); dispatchd's own departures feed the dispatch history; the
//! advice routes answer and refuse precisely.

mod common;
mod console_support;

use chrono::{Duration, TimeZone, Utc};
use common::{TestApp, order, problem};
use dispatch_core::{Command, Ctx, Role, decide};
use dispatch_intel::model::train;
use dispatch_intel::{DispatchRecord, FeatureList, HistorySpec, TrainOptions};
use dispatch_store::{HistoryRow, ModelRow, OrderWrite, Target, WriteMeta};
use serde_json::{Value, json};

async fn put_policy(app: &TestApp, body: &str) {
    let r = app
        .client
        .put(format!("{}/api/v1/policy", app.url))
        .bearer_auth(app.admin())
        .header("content-type", "application/toml")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// Two years of generated history ending the day before the test clock, trained and made
/// the active model in the store (as `dispatchd model train` does). Returns the version.
async fn promote_a_model(app: &TestApp) -> String {
    let spec =
        HistorySpec { seed: 3, end: common::start_time().date_naive() - Duration::days(1), days: 730, scale: 0.05 };
    let history = spec.generate();
    let rows: Vec<HistoryRow> = history.iter().map(|r| dispatch_server::intel::history_row(r).unwrap()).collect();
    app.store.insert_history(&rows).await.unwrap();
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
    assert!(app.store.activate_model(&model.version, now).await.unwrap());
    model.version
}

/// The default policy with a review hold and a priority boost above `threshold`.
fn risk_policy(threshold: f64) -> String {
    dispatch_policy::DEFAULT_POLICY.replace(
        "[[hold]]\nid = \"credit\"",
        &format!(
            r#"[[hold]]
id = "late_risk_review"
when = 'risk.late_departure > {threshold} && order.external_id.startsWith("REVIEW")'
reason = "policy_hold"
message = 'late-departure risk {{risk.late_departure * 100.0:.0}}% needs a planner to look: {{risk.factors[0].text}}'

[[priority.terms]]
id = "risk_boost"
expr = 'risk.late_departure > {threshold} ? 100.0 : 0.0'
why = 'late-departure risk {{risk.late_departure * 100.0:.0}}%'

[[hold]]
id = "credit""#
        ),
    )
}

fn last_evaluated(timeline: &Value) -> &Value {
    timeline["items"].as_array().unwrap().iter().rev().find(|e| e["type"] == "order.evaluated").unwrap()
}

#[tokio::test]
async fn a_promoted_model_changes_decisions_through_the_policy_and_the_timeline_says_why() {
    let app = TestApp::spawn().await;
    // The order the model will score: learn its probability first (the risk route).
    let probe = app.create(&order("PROBE-1")).await;
    let probe_id = probe["id"].as_str().unwrap().to_string();
    let version = promote_a_model(&app).await;
    let r = app.get_json(&format!("/api/v1/orders/{probe_id}/risk")).await;
    let p = r["risk"]["late_departure"].as_f64().unwrap();
    assert!(p > 0.0 && p < 1.0, "{r}");
    let threshold = (p * 0.5 * 1000.0).floor() / 1000.0;

    // The server knows the model now (the risk route refreshed it); the rules go in.
    put_policy(&app, &risk_policy(threshold)).await;

    // A new order above the threshold: held for review, with the model's reasons recorded.
    let held = app.create(&order("REVIEW-1")).await;
    assert_eq!(held["state"], "on_hold", "{held}");
    assert_eq!(held["hold_reasons"], json!(["policy_hold"]));
    let id = held["id"].as_str().unwrap();
    let view = app.get_json(&format!("/api/v1/orders/{id}")).await;
    let risk = &view["explanation"]["risk"];
    assert_eq!(risk["model_version"], version.as_str(), "{view}");
    assert!((risk["late_departure"].as_f64().unwrap() - p).abs() < 1e-9, "same facts, same score: {risk}");
    assert_eq!(risk["used_by"], json!(["late_risk_review", "risk_boost"]));
    let factors = risk["factors"].as_array().unwrap();
    assert_eq!(factors.len(), 3);
    assert!(factors.iter().all(|f| f["text"].as_str().is_some_and(|t| t.len() > 10)), "{factors:?}");
    let hit =
        view["explanation"]["rules"].as_array().unwrap().iter().find(|r| r["rule"] == "late_risk_review").unwrap();
    assert!(hit["message"].as_str().unwrap().starts_with("late-departure risk "), "{hit}");
    assert!((hit["seen"]["risk.late_departure"].as_f64().unwrap() - p).abs() < 1e-9);
    let boost = view["explanation"]["priority_terms"].as_array().unwrap().iter().find(|t| t["term"] == "risk_boost");
    assert_eq!(boost.unwrap()["points"], 100);

    let timeline = app.get_json(&format!("/api/v1/orders/{id}/timeline")).await;
    let ev = last_evaluated(&timeline);
    let summary = ev["summary"].as_str().unwrap();
    assert!(summary.contains(&format!("(model {version}, used by late_risk_review, risk_boost)")), "{summary}");
    assert!(summary.contains(factors[0]["text"].as_str().unwrap()), "{summary}");
    assert_eq!(ev["risk"]["model_version"], version.as_str());

    // The audit entry of that decision covers the event, risk included (its digest).
    let audit = app.get_json(&format!("/api/v1/audit?subject=order:{id}@{}", ev["version"])).await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
    app.stop().await;
}

#[tokio::test]
async fn without_a_model_the_risk_rules_are_skipped_and_the_sweep_picks_a_promoted_model_up() {
    let app = TestApp::spawn().await;
    put_policy(&app, &risk_policy(0.0)).await;
    // No model: the review rule cannot fire, the boost is left out — the built-in decision.
    let before = app.create(&order("BOOST-2")).await;
    assert_eq!(before["state"], "released", "{before}");
    let id = before["id"].as_str().unwrap().to_string();
    let view = app.get_json(&format!("/api/v1/orders/{id}")).await;
    assert!(view["explanation"].get("risk").is_none(), "{view}");
    let terms = view["explanation"]["priority_terms"].as_array().unwrap();
    assert!(terms.iter().all(|t| t["term"] != "risk_boost"), "{terms:?}");
    let priority = before["priority"].as_i64().unwrap();

    // Promoted in the store (e.g. by `dispatchd model promote` on another node): the periodic
    // sweep notices, re-scores the released queue and re-evaluates held orders.
    let version = promote_a_model(&app).await;
    let pass = dispatch_server::policy::refresh_priorities(&app.state).await.unwrap();
    assert!(pass.checked >= 1, "{pass:?}");
    let after = app.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(after["state"], "released", "a released order is not held by the sweep");
    assert_eq!(after["priority"].as_i64().unwrap(), priority + 100, "{after}");
    assert_eq!(after["explanation"]["risk"]["model_version"], version.as_str());
    assert_eq!(after["explanation"]["risk"]["used_by"], json!(["risk_boost"]));
    // A second sweep with nothing changed records nothing.
    let again = dispatch_server::policy::refresh_priorities(&app.state).await.unwrap();
    assert_eq!(again.changed, 0);
    app.stop().await;
}

async fn run(app: &TestApp, id: &str, cmd: Command, at: chrono::DateTime<Utc>) {
    let whs = app.state.warehouses.clone();
    app.store
        .execute(OrderWrite {
            target: Target::Id(id.to_string()),
            meta: WriteMeta { actor: "test".into(), roles: vec![], request_id: None, at },
            idempotency: None,
            decide: Box::new(move |cur| decide(cur, cmd.clone(), &Ctx::new(at, &whs))),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn departures_are_appended_to_the_dispatch_history() {
    let follow_ups = dispatch_core::effects::FollowUpConfig { dispatch_history: true, ..Default::default() };
    let app = TestApp::spawn_full(dispatch_integrations::Carriers::empty(), Default::default(), follow_ups).await;
    let t0 = common::start_time();
    let mut ids = Vec::new();
    // Latest departure: Thursday 26 Nov 17:00 Amsterdam (next_day, promised 27th).
    let latest = Utc.with_ymd_and_hms(2026, 11, 26, 16, 0, 0).unwrap();
    for (n, departs) in [(1, latest - Duration::hours(2)), (2, latest + Duration::minutes(150))] {
        let o = app.create(&order(&format!("WH/OUT/H{n}"))).await;
        assert_eq!(o["state"], "released");
        let id = o["id"].as_str().unwrap().to_string();
        let booking =
            Command::RecordBooking { carrier: "dhl".into(), tracking_number: format!("JD{n}"), service: None };
        run(&app, &id, booking, t0 + Duration::minutes(5)).await;
        assert_eq!(dispatch_server::intel::record_dispatches(&app.state, "w").await.unwrap(), 0, "not departed yet");
        run(&app, &id, Command::RecordDeparture { at: departs }, departs).await;
        // A second departure scan changes nothing and records nothing twice.
        run(&app, &id, Command::RecordDeparture { at: departs + Duration::hours(1) }, departs).await;
        ids.push((id, departs));
    }
    // Failed bookings of dhl (from any node) in the 6 h before the release count; those of
    // another carrier, earlier ones and later ones do not.
    for (carrier, at, outcome) in [
        ("dhl", t0 - Duration::hours(1), "unavailable"),
        ("dhl", t0 - Duration::hours(5), "timeout"),
        ("dhl", t0 - Duration::hours(2), "booked"),
        ("dhl", t0 - Duration::hours(7), "unavailable"),
        ("dhl", t0 + Duration::minutes(1), "unavailable"),
        ("ups", t0 - Duration::hours(1), "unavailable"),
    ] {
        let a = dispatch_store::CarrierAttempt {
            at,
            carrier: carrier.into(),
            warehouse: "AMS".into(),
            order_id: None,
            outcome: outcome.into(),
        };
        app.store.record_carrier_attempt(&a).await.unwrap();
    }
    // The jobs are due from the departure on.
    app.clock.set(latest + Duration::hours(3));
    assert_eq!(dispatch_server::intel::record_dispatches(&app.state, "w").await.unwrap(), 2);
    assert_eq!(dispatch_server::intel::record_dispatches(&app.state, "w").await.unwrap(), 0, "jobs done");
    let history: Vec<DispatchRecord> =
        app.store.history(None).await.unwrap().iter().map(|s| serde_json::from_str(s).unwrap()).collect();
    assert_eq!(history.len(), 2);
    let on_time = history.iter().find(|r| r.facts.order_id == ids[0].0).unwrap();
    assert!(!on_time.departed_late && !on_time.shipped_after_promise);
    assert_eq!(on_time.departed_at, Some(ids[0].1));
    assert_eq!(on_time.facts.released_at, t0);
    assert_eq!(on_time.facts.carrier, "dhl");
    assert_eq!(on_time.facts.warehouse, "AMS");
    assert_eq!(on_time.facts.hours_to_cutoff, Some(56.0));
    assert_eq!(on_time.facts.carrier_failures_6h, Some(2), "dhl's failures in the 6 h before the release");
    let late = history.iter().find(|r| r.facts.order_id == ids[1].0).unwrap();
    assert!(late.departed_late && late.shipped_after_promise);
    assert_eq!(late.hours_late, 2.5);
    app.stop().await;
}

#[tokio::test]
async fn partial_advice_weighs_the_policy_costs_and_refuses_precisely() {
    let app = TestApp::spawn().await;
    let mut short = order("SHORT-1");
    short["lines"] = json!([
        {"sku": "P-1", "product_family": "pumps", "qty": 4, "qty_allocated": 4, "unit_value": 500.0},
        {"sku": "V-7", "product_family": "valves", "qty": 2, "qty_allocated": 0, "unit_value": 50.0}
    ]);
    let held = app.create(&short).await;
    assert_eq!(held["state"], "on_hold");
    let id = held["id"].as_str().unwrap();
    // Stock arrives two days after the latest departure (26 Nov 16:00 UTC): waiting makes the
    // whole order late; shipping 2,000 of 2,100 now costs the extra shipment plus a share.
    let url = format!("/api/v1/orders/{id}/advice/partial?inbound_eta=2026-11-28T10:00:00Z");
    let a = app.get_json(&url).await;
    assert_eq!(a["recommendation"], "ship_partial", "{a}");
    assert_eq!(a["shippable_value"], 2000.0);
    assert_eq!(a["backordered_value"], 100.0);
    assert_eq!(a["days_late_if_wait"], 2);
    assert_eq!(a["approval_kind"], "partial_shipment");
    assert!(a["reason"].as_str().unwrap().contains("needs partial_shipment approval"), "{a}");
    // Stock in time: wait.
    let a = app.get_json(&format!("/api/v1/orders/{id}/advice/partial?inbound_eta=2026-11-25T08:00:00Z")).await;
    assert_eq!(a["recommendation"], "wait", "{a}");
    // A costly extra shipment: wait, even when late.
    let a = app.get_json(&format!("{url}&extra_shipment_cost=500")).await;
    assert_eq!(a["recommendation"], "wait", "{a}");

    let auditor = app.token(Role::Auditor).to_string();
    let r = app.get(&format!("/api/v1/orders/{id}/advice/partial"), &auditor).await;
    assert_eq!(r.status(), 200, "read_orders suffices");
    for (path, status, slug) in [
        ("/api/v1/orders/ord_nope/advice/partial".to_string(), 404, "not-found"),
        (format!("/api/v1/orders/{id}/advice/partial?inbound_eta=tomorrow"), 400, "bad-query"),
        (format!("/api/v1/orders/{id}/advice/partial?late_cost_per_day=-1"), 400, "bad-query"),
        (format!("/api/v1/orders/{id}/advice/partial?bogus=1"), 400, "bad-query"),
    ] {
        let (s, p) = problem(app.get(&path, app.admin()).await).await;
        assert_eq!(s, status, "{path}: {p}");
        assert!(p["type"].as_str().unwrap().ends_with(slug), "{path}: {p}");
    }
    let complete = app.create(&order("FULL-1")).await;
    let (s, p) = problem(
        app.get(&format!("/api/v1/orders/{}/advice/partial", complete["id"].as_str().unwrap()), app.admin()).await,
    )
    .await;
    assert_eq!(s, 409, "{p}");
    let r = app.client.get(format!("{}/api/v1/orders/{id}/advice/partial", app.url)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn sequence_advice_orders_the_released_queue_by_risk_and_cutoff() {
    let app = TestApp::spawn().await;
    let (s, p) = problem(app.get("/api/v1/warehouses/AMS/advice/sequence", app.admin()).await).await;
    assert_eq!(s, 409, "no model yet: {p}");
    let mut ids = Vec::new();
    for (n, service, promised, country) in
        [(1, "standard", "2026-11-30", "NL"), (2, "next_day", "2026-11-25", "NL"), (3, "next_day", "2026-11-26", "GB")]
    {
        let mut o = order(&format!("SEQ-{n}"));
        o["service_level"] = json!(service);
        o["promised_date"] = json!(promised);
        o["ship_to"]["country"] = json!(country);
        if country == "GB" {
            o["ship_to"]["postcode"] = json!("SW1A 1AA");
            o["ship_to"]["city"] = json!("London");
            o["documents"] = json!(["commercial_invoice", "customs_declaration"]);
        }
        let created = app.create(&o).await;
        ids.push((created["id"].as_str().unwrap().to_string(), created["state"].clone()));
    }
    let released: Vec<&String> = ids.iter().filter(|(_, s)| s == "released").map(|(i, _)| i).collect();
    assert!(released.len() >= 2, "{ids:?}");
    let version = promote_a_model(&app).await;
    let a = app.get_json("/api/v1/warehouses/AMS/advice/sequence").await;
    assert_eq!(a["model_version"], version.as_str());
    let seq: Vec<&str> = a["sequence"].as_array().unwrap().iter().map(|e| e["order_id"].as_str().unwrap()).collect();
    assert_eq!(seq.len(), released.len(), "{a}");
    for id in &released {
        assert!(seq.contains(&id.as_str()));
    }
    // Earliest latest departure first.
    let deps: Vec<&str> =
        a["sequence"].as_array().unwrap().iter().map(|e| e["latest_departure"].as_str().unwrap()).collect();
    assert!(deps.windows(2).all(|w| w[0] <= w[1]), "{deps:?}");
    assert!(a["expected_late_recommended"].as_f64().unwrap() <= a["expected_late_current"].as_f64().unwrap() + 1e-12);
    assert!(a["sentence"].as_str().is_some_and(|s| !s.is_empty()));
    for (path, status) in [
        ("/api/v1/warehouses/XXX/advice/sequence", 404),
        ("/api/v1/warehouses/AMS/advice/sequence?limit=0", 400),
        ("/api/v1/warehouses/AMS/advice/sequence?limit=abc", 400),
    ] {
        let (s, p) = problem(app.get(path, app.admin()).await).await;
        assert_eq!(s, status, "{path}: {p}");
    }
    // An empty queue is an empty sequence, not an error.
    let a = app.get_json("/api/v1/warehouses/MAN/advice/sequence").await;
    assert_eq!(a["sequence"], json!([]));
    app.stop().await;
}

/// With a model active every decision records the model's score, whether or not a rule reads
/// it (the default policy reads none); the projection keeps it and the board filters by its
/// band and shows it as a badge.
#[tokio::test]
async fn the_board_filters_by_the_risk_the_decision_recorded() {
    let app = TestApp::spawn().await;
    let before = app.create(&order("BEFORE-1")).await;
    assert!(before.get("late_departure_risk").is_none(), "no model, no score: {before}");
    promote_a_model(&app).await;
    // The risk route refreshes the server's model (as the sweep does) and says what it scores.
    let r = app.get_json(&format!("/api/v1/orders/{}/risk", before["id"].as_str().unwrap())).await;
    let p = r["risk"]["late_departure"].as_f64().unwrap();
    let scored = app.create(&order("SCORED-1")).await;
    let stored = scored["late_departure_risk"].as_f64().expect("scored on the write path");
    assert!((stored - p).abs() < 1e-9, "same facts, same score: {stored} vs {p}");
    let tl = app.get_json(&format!("/api/v1/orders/{}/timeline", scored["id"].as_str().unwrap())).await;
    let ev = last_evaluated(&tl);
    assert!(ev.get("risk").is_none(), "the model did not change the decision: {ev}");
    assert!((ev["scored"]["late_departure"].as_f64().unwrap() - p).abs() < 1e-9, "{ev}");

    let band = dispatch_core::risk::RiskBand::of(p).code();
    let other = if band == "high" { "low" } else { "high" };
    let disp = console_support::sign_in(&app, "disp", &[Role::Dispatcher]).await;
    let (status, html) = disp.get(&format!("/console?risk={band}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("SCORED-1") && !html.contains("BEFORE-1"), "only scored orders in a band: {html}");
    assert!(html.contains(&format!("data-risk=\"{band}\"")), "the badge: {html}");
    assert!(html.contains(&format!("<option value=\"{band}\" selected>")), "the filter keeps its value");
    let (_, html) = disp.get(&format!("/console/board?risk={other}")).await;
    assert!(!html.contains("SCORED-1"), "{html}");
    let (status, html) = disp.get("/console?risk=extreme").await;
    assert_eq!(status, 400);
    assert!(html.contains("unknown risk band `extreme`"), "{html}");
    app.stop().await;
}
