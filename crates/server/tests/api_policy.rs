//! The policy over HTTP: read it, replace it (an invalid one is refused with file:line:col and
//! the live policy survives), held orders re-evaluated on a change, explanations on orders,
//! the priority queue with its keyset cursor, and a what-if replay that changes nothing.

mod common;

use common::*;
use dispatch_core::Role;
use dispatch_policy::DEFAULT_POLICY;
use serde_json::{Value, json};

async fn put_policy(app: &TestApp, body: &str, role: Role) -> reqwest::Response {
    app.client
        .put(format!("{}/api/v1/policy", app.url))
        .bearer_auth(app.token(role))
        .header("content-type", "application/toml")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_invalid_policy_is_refused_with_its_location_and_the_live_one_stays() {
    let app = TestApp::spawn().await;
    let before = app.get_json("/api/v1/policy").await;
    assert_eq!(before["name"], "default");
    assert_eq!(before["origin"], "embedded");
    let bad = DEFAULT_POLICY.replace("order.units_allocated > 0 &&", "order.units_alocated > 0 &&");
    let (status, p) = problem(put_policy(&app, &bad, Role::Admin).await).await;
    assert_eq!(status, 422);
    assert_eq!(p["type"], "urn:dispatchd:problem:policy-invalid");
    let field = p["errors"][0]["field"].as_str().unwrap();
    let line = bad[..bad.find("order.units_alocated").unwrap()].matches('\n').count() + 1;
    assert!(field.starts_with(&format!("policy.toml:{line}:")), "{p}");
    assert!(p["errors"][0]["message"].as_str().unwrap().contains("units_alocated"), "{p}");
    // Each class of mistake, over HTTP too.
    for broken in [
        DEFAULT_POLICY.replace("max = 1000", "max = ="),
        DEFAULT_POLICY.replace("reason = \"docs_missing\"", "reason = \"docs\""),
        DEFAULT_POLICY.replace("carriers = [\"ups\", \"dhl\"]", "carriers = [\"fedex\"]"),
        DEFAULT_POLICY.replace("expr = 'order.value / 50.0'", "expr = 'order.value / 50'"),
        DEFAULT_POLICY.replace("size(order.address_problems) > 0", "size(order.address_problems) >"),
    ] {
        let (status, p) = problem(put_policy(&app, &broken, Role::OpsManager).await).await;
        assert_eq!(status, 422, "{p}");
        assert!(p["errors"][0]["field"].as_str().unwrap().starts_with("policy.toml:"), "{p}");
    }
    // Not allowed for a dispatcher, whatever the body.
    let (status, _) = problem(put_policy(&app, DEFAULT_POLICY, Role::Dispatcher).await).await;
    assert_eq!(status, 403);
    let after = app.get_json("/api/v1/policy").await;
    assert_eq!(after["hash"], before["hash"], "the live policy survived");
    // And it still decides.
    let o = app.create(&order("P/1")).await;
    assert_eq!(o["state"], "released");
}

#[tokio::test]
async fn a_new_policy_reevaluates_held_orders_and_explains_itself() {
    let app = TestApp::spawn().await;
    // Held for credit under the default policy.
    let mut body = order("P/2");
    body["customer"]["credit_status"] = json!("over_limit");
    let held = app.create(&body).await;
    assert_eq!(held["state"], "on_hold");
    let id = held["id"].as_str().unwrap().to_string();
    let view = app.get_json(&format!("/api/v1/orders/{id}")).await;
    let ex = &view["explanation"];
    assert_eq!(ex["hold_reasons"][0]["code"], "credit_hold");
    assert_eq!(ex["hold_reasons"][0]["title"], "Credit hold");
    assert_eq!(ex["rules"][0]["rule"], "credit");
    assert_eq!(ex["rules"][0]["seen"]["customer.credit_status"], "over_limit");
    assert_eq!(ex["priority_terms"].as_array().unwrap().len(), 4);
    assert!(ex["carrier"]["carrier"].is_string(), "{ex}");
    assert_eq!(ex["current_policy"], true);

    // A policy that tolerates over_limit customers releases it.
    let relaxed = DEFAULT_POLICY.replace(r#"["hold", "blocked", "over_limit"]"#, r#"["hold", "blocked"]"#);
    let r = put_policy(&app, &relaxed, Role::OpsManager).await;
    assert_eq!(r.status(), 200);
    let change: Value = r.json().await.unwrap();
    assert_eq!(change["reevaluated"]["checked"], 1);
    assert_eq!(change["reevaluated"]["changed"], 1);
    assert_eq!(change["origin"], "api");
    let now = app.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(now["state"], "released");
    assert_eq!(now["explanation"]["policy"], change["hash"]);
    let tl = app.get_json(&format!("/api/v1/orders/{id}/timeline")).await;
    let last = tl["items"].as_array().unwrap().last().unwrap().clone();
    assert!(last["actor"].as_str().unwrap().ends_with(":policy-change"), "{last}");
    // The same policy again changes nothing.
    let again: Value = put_policy(&app, &relaxed, Role::Admin).await.json().await.unwrap();
    assert_eq!(again["reevaluated"]["changed"], 0);
}

#[tokio::test]
async fn the_priority_queue_is_the_dispatch_sequence_across_pages() {
    let app = TestApp::spawn().await;
    let tiers = ["standard", "silver", "gold", "platinum"];
    let levels = ["same_day", "next_day", "standard", "economy"];
    for i in 0..23 {
        let mut b = order(&format!("Q/{i}"));
        b["customer"]["tier"] = json!(tiers[i % 4]);
        b["service_level"] = json!(levels[(i / 4) % 4]);
        b["promised_date"] = json!(if levels[(i / 4) % 4] == "same_day" { "2026-11-24" } else { "2026-12-04" });
        b["lines"][0]["qty"] = json!(1 + i);
        b["lines"][0]["qty_allocated"] = json!(1 + i);
        app.create(&b).await;
    }
    let mut seen: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/v1/orders?state=released&sort=priority&limit=5".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = app.get_json(&path).await;
        seen.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 23);
    for w in seen.windows(2) {
        let key = |o: &Value| {
            (
                -o["priority"].as_i64().unwrap(),
                o["latest_departure"].as_str().unwrap().to_string(),
                o["id"].as_str().unwrap().to_string(),
            )
        };
        assert!(key(&w[0]) < key(&w[1]), "{} before {}", w[0]["id"], w[1]["id"]);
    }
    // A cursor of the other sort is refused.
    let by_id = app.get_json("/api/v1/orders?limit=1").await;
    let c = by_id["next_cursor"].as_str().unwrap();
    let (status, _) = problem(app.get(&format!("/api/v1/orders?sort=priority&cursor={c}"), app.admin()).await).await;
    assert_eq!(status, 400);
    let (status, _) = problem(app.get("/api/v1/orders?sort=fast", app.admin()).await).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn replay_reports_what_a_candidate_would_change_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for (i, credit) in ["ok", "watch", "watch", "ok", "hold"].iter().enumerate() {
        let mut b = order(&format!("R/{i}"));
        b["customer"]["credit_status"] = json!(credit);
        ids.push(app.create(&b).await["id"].as_str().unwrap().to_string());
    }
    let before: Vec<Value> = futures_all(&app, &ids).await;
    // Tighten one rule: customers on watch are held too.
    let tight =
        DEFAULT_POLICY.replace(r#"["hold", "blocked", "over_limit"]"#, r#"["hold", "blocked", "over_limit", "watch"]"#);
    let r = app
        .client
        .post(format!("{}/api/v1/policy/replay", app.url))
        .bearer_auth(app.token(Role::Auditor))
        .header("content-type", "application/toml")
        .body(tight)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["decisions"], 5);
    assert_eq!(report["changed"], 2, "{report}");
    assert_eq!(report["newly_held"], 2);
    assert_eq!(report["by_reason"]["credit_hold"]["added"], 2);
    assert_eq!(report["by_rule"]["credit"]["fired_in_changed"], 2);
    assert_eq!(report["by_warehouse"]["AMS"]["changed"], 2);
    let mut changed: Vec<&str> =
        report["examples"].as_array().unwrap().iter().map(|e| e["order_id"].as_str().unwrap()).collect();
    changed.sort();
    let mut want = vec![ids[1].as_str(), ids[2].as_str()];
    want.sort();
    assert_eq!(changed, want, "exactly the orders on watch");
    // Nothing live changed.
    assert_eq!(futures_all(&app, &ids).await, before);
    let (status, _) = problem(
        app.client
            .post(format!("{}/api/v1/policy/replay", app.url))
            .bearer_auth(app.token(Role::Dispatcher))
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
}

async fn futures_all(app: &TestApp, ids: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for id in ids {
        out.push(app.get_json(&format!("/api/v1/orders/{id}")).await);
    }
    out
}

#[tokio::test]
async fn the_priority_sweep_refreshes_only_orders_whose_score_can_change() {
    let app = TestApp::spawn().await;
    // Next day, promised tomorrow: leaves today 17:00 Amsterdam, 8 hours from the start.
    let mut near = order("S/1");
    near["promised_date"] = json!("2026-11-25");
    let near = app.create(&near).await;
    // Promised in ten days: far outside the refresh horizon.
    let mut far = order("S/2");
    far["promised_date"] = json!("2026-12-07");
    let far = app.create(&far).await;
    app.clock.advance(chrono::Duration::hours(2));
    let pass = dispatch_server::policy::refresh_priorities(&app.state).await.unwrap();
    assert_eq!((pass.checked, pass.changed), (1, 1), "only the order near its cut-off is looked at");
    let after = app.get_json(&format!("/api/v1/orders/{}", near["id"].as_str().unwrap())).await;
    assert_eq!(
        after["priority"].as_i64().unwrap(),
        near["priority"].as_i64().unwrap() + 8,
        "2 hours nearer = 8 points"
    );
    assert_eq!(after["version"], 3);
    let unchanged = app.get_json(&format!("/api/v1/orders/{}", far["id"].as_str().unwrap())).await;
    assert_eq!(unchanged["version"], 2);
    // Nothing moved since: a second sweep records nothing.
    let again = dispatch_server::policy::refresh_priorities(&app.state).await.unwrap();
    assert_eq!(again.changed, 0);
}

/// The streamed replay of the event log (read on its own thread, parsed and evaluated by
/// workers, tallies merged) reports exactly what replaying the collected decisions reports:
/// the same counts, the same (earliest) examples, the same queue ranks of each order's last
/// decision, whatever the page, batch and worker counts. Runs on PostgreSQL too.
#[tokio::test]
async fn a_streamed_replay_reports_exactly_what_the_collected_decisions_report() {
    use dispatch_policy::{Collector, Policy};
    use dispatch_server::clock::Clock as _;
    use dispatch_server::policy::{ReplayRun, replay_event_log};
    use std::sync::Arc;
    let app = TestApp::spawn().await;
    // 10 orders, each updated three times as time passes: 40 decisions, facts changing.
    for round in 0..4 {
        for i in 0..10 {
            let mut b = order(&format!("S/{i}"));
            b["customer"]["credit_status"] = json!(["ok", "watch"][(i + round) % 2]);
            b["lines"][0]["unit_value"] = json!(50.0 + 40.0 * ((i * 7 + round * 3) % 10) as f64);
            b["lines"][0]["qty_allocated"] = json!(if (i + round) % 5 == 0 { 3 } else { 4 });
            let r = app.post("/api/v1/orders", &b, app.admin()).await;
            assert!(r.status().is_success(), "{}", r.status());
        }
        app.clock.advance(chrono::Duration::minutes(37));
    }
    // Held for customers on watch, and cheaper orders first (the queue reverses).
    let candidate = Policy::compile(
        &DEFAULT_POLICY
            .replace(r#"["hold", "blocked", "over_limit"]"#, r#"["hold", "blocked", "over_limit", "watch"]"#)
            .replace("expr = 'order.value / 50.0'", "expr = '150.0 - order.value / 10.0'"),
        "candidate.toml",
        None,
    )
    .unwrap();
    // The reference: every decision collected first, then replayed.
    let mut collected = Collector::new(None);
    let mut after = 0;
    loop {
        let page = app.store.scan_decision_events(after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for ev in page {
            collected.push_raw(&ev.order_id, &ev.kind, &ev.data).unwrap();
        }
    }
    let decisions = collected.finish();
    assert_eq!(decisions.len(), 40);
    let want = dispatch_policy::replay(&candidate, &decisions, &app.state.warehouses, 1, 5, &|_| {});
    assert_eq!((want.decisions, want.orders), (40, 10));
    assert!(want.changed > 0 && want.priority.changed > 0 && want.priority.rank_moved > 0, "{want:?}");
    assert_eq!(want.examples.len(), 5);
    let candidate = Arc::new(candidate);
    for (page, batch, threads) in [(7, 3, 3), (20_000, 2_000, 2), (1, 1, 1)] {
        let run = ReplayRun { since: None, threads, max_examples: 5, page, batch };
        let replayed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let count = replayed.clone();
        let got = replay_event_log(
            app.store.clone(),
            candidate.clone(),
            app.state.warehouses.clone(),
            &run,
            Arc::new(move |n| {
                count.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }),
        )
        .await
        .unwrap();
        assert_eq!(got, want, "page {page}, batch {batch}, {threads} workers");
        assert_eq!(replayed.load(std::sync::atomic::Ordering::Relaxed), 40);
    }
    // Only the decisions of the last two rounds.
    let since = app.clock.now() - chrono::Duration::minutes(2 * 37);
    let recent: Vec<_> = decisions.iter().filter(|d| d.now >= since).cloned().collect();
    assert_eq!(recent.len(), 20);
    let want = dispatch_policy::replay(&candidate, &recent, &app.state.warehouses, 1, 5, &|_| {});
    let run = ReplayRun { since: Some(since), threads: 2, max_examples: 5, page: 6, batch: 4 };
    let got = replay_event_log(app.store.clone(), candidate, app.state.warehouses.clone(), &run, Arc::new(|_| {}))
        .await
        .unwrap();
    assert_eq!(got, want);
}
