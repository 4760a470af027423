//! Route density end to end: a policy whose priority reads `route.density`; the store counts
//! the members of each wave, decisions record the density they saw, and the incremental
//! priority sweep re-evaluates the orders of a wave when others join or leave it.

mod common;

use common::*;
use dispatch_core::Role;
use dispatch_policy::DEFAULT_POLICY;
use serde_json::{Value, json};

fn density_policy() -> String {
    let start = DEFAULT_POLICY.find("# [[priority.terms]]\n# id = \"route_density\"").unwrap();
    let end = start + DEFAULT_POLICY[start..].find("\n\n").unwrap();
    let on: String = DEFAULT_POLICY[start..end].lines().map(|l| format!("{}\n", l.trim_start_matches("# "))).collect();
    format!("{}{on}{}", &DEFAULT_POLICY[..start], &DEFAULT_POLICY[end..])
}

async fn put_policy(app: &TestApp, body: &str) {
    let r = app
        .client
        .put(format!("{}/api/v1/policy", app.url))
        .bearer_auth(app.token(Role::Admin))
        .header("content-type", "application/toml")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

fn at(external_id: &str, postcode: &str) -> Value {
    let mut o = order(external_id);
    o["ship_to"]["postcode"] = json!(postcode);
    o
}

/// The route input and term of the order's latest decision.
async fn latest(app: &TestApp, id: &str) -> (Value, i64, i64) {
    let t = app.get_json(&format!("/api/v1/orders/{id}/timeline")).await;
    let e = t["items"].as_array().unwrap().iter().rev().find(|e| e["type"] == "order.evaluated").unwrap().clone();
    let points =
        e["priority_terms"].as_array().unwrap().iter().find(|t| t["term"] == "route_density").unwrap()["points"]
            .as_i64()
            .unwrap();
    (e["inputs"]["route"].clone(), points, e["priority"].as_i64().unwrap())
}

#[tokio::test]
async fn density_is_counted_by_the_store_recorded_and_kept_fresh_by_the_sweep() {
    let app = TestApp::spawn().await;
    put_policy(&app, &density_policy()).await;
    let wave = "AMS@2026-11-26T16:00Z";

    let a = app.create(&at("RD/A", "1012 LG")).await;
    let a_id = a["id"].as_str().unwrap().to_string();
    let (route, points, a_first) = latest(&app, &a_id).await;
    assert_eq!(route, json!({"area": "NL-10", "wave": wave, "density": 1}));
    assert_eq!(points, 0);

    // The sweep counts A as a member; A's own density does not change by that.
    let pass = dispatch_server::policy::refresh_priorities(&app.state).await.unwrap();
    assert_eq!(pass.changed, 0, "{pass:?}");

    // B joins A's area and wave; C goes elsewhere.
    let b = app.create(&at("RD/B", "1017 AB")).await;
    let b_id = b["id"].as_str().unwrap().to_string();
    let (route, points, _) = latest(&app, &b_id).await;
    assert_eq!(route["density"], 2, "A and B");
    assert_eq!(points, 10);
    let c = app.create(&at("RD/C", "3011 AA")).await;
    let (route, _, _) = latest(&app, c["id"].as_str().unwrap()).await;
    assert_eq!(route, json!({"area": "NL-30", "wave": wave, "density": 1}));

    // The sweep sees B joined: A is re-evaluated (and only A's decision changes).
    let pass = dispatch_server::policy::refresh_priorities(&app.state).await.unwrap();
    assert_eq!(pass.changed, 1, "{pass:?}");
    let (route, points, a_now) = latest(&app, &a_id).await;
    assert_eq!(route["density"], 2);
    assert_eq!(points, 10);
    assert_eq!(a_now, a_first + 10);
    let again = dispatch_server::policy::refresh_priorities(&app.state).await.unwrap();
    assert_eq!(again.changed, 0, "nothing moved: nothing recorded");

    // B is cancelled: it leaves the wave, and A's density falls back.
    let r = app
        .client
        .post(format!("{}/api/v1/orders/{b_id}/cancel", app.url))
        .bearer_auth(app.admin())
        .json(&json!({"reason": "customer"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let pass = dispatch_server::policy::refresh_priorities(&app.state).await.unwrap();
    assert_eq!(pass.changed, 1, "{pass:?}");
    let (route, points, _) = latest(&app, &a_id).await;
    assert_eq!(route["density"], 1);
    assert_eq!(points, 0);
    let ordered = app.get_json("/api/v1/orders?state=released&sort=priority").await;
    assert_eq!(ordered["items"].as_array().unwrap().len(), 2);
}
