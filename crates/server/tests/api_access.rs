//! Walks every route of the route table × every role (and no token) and checks the answer
//! against the permission matrix. Generated from the table, so a new route cannot skip it.

mod common;

use axum::http::Method;
use common::*;
use dispatch_core::Role;
use dispatch_core::access::allows;
use dispatch_server::routes::{Access, specs};

fn concrete(path: &str) -> String {
    path.replace("{id}", "ord_does_not_exist").replace("{name}", "no-such-schedule").replace("{carrier}", "nocarrier")
}

#[tokio::test]
async fn every_route_for_every_role_follows_the_matrix() {
    let app = TestApp::spawn().await;
    let specs = specs();
    assert!(specs.len() >= 13);
    for spec in &specs {
        let url = format!("{}{}", app.url, concrete(spec.path));
        let send = |token: Option<&str>| {
            let mut req = app.client.request(spec.method.clone(), &url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if spec.method == Method::POST {
                req = req.header("content-type", "application/json").body("{}");
            }
            req.send()
        };
        let anonymous = send(None).await.unwrap().status().as_u16();
        match spec.access {
            Access::Public => assert!(anonymous < 400, "{} {} is public but got {anonymous}", spec.method, spec.path),
            Access::Signed => assert_eq!(anonymous, 401, "{} {} without a signature", spec.method, spec.path),
            Access::Form => assert_eq!(anonymous, 403, "{} {} without a CSRF token", spec.method, spec.path),
            // Console pages answer a browser without a session (and any bearer token: the
            // console is session-only) with the sign-in; per-role checks are in tests/console.rs.
            Access::Console(_) => {
                let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
                let r = c.get(&url).bearer_auth(app.admin()).send().await.unwrap();
                assert_eq!(r.status(), 303, "{} {} without a session", spec.method, spec.path);
                assert_eq!(r.headers()["location"], "/console/login");
            }
            Access::ConsoleForm(_) => assert_eq!(anonymous, 403, "{} {} without a CSRF token", spec.method, spec.path),
            Access::Requires(permission) => {
                assert_eq!(anonymous, 401, "{} {} without a token", spec.method, spec.path);
                for role in Role::ALL {
                    let status = send(Some(app.token(*role))).await.unwrap().status().as_u16();
                    if allows(&[*role], permission) {
                        assert!(status != 401 && status != 403, "{role} on {} {}: {status}", spec.method, spec.path);
                    } else {
                        assert_eq!(status, 403, "{role} on {} {}", spec.method, spec.path);
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn probes_metrics_and_the_api_document_are_public() {
    let app = TestApp::spawn().await;
    app.create(&order("M/1")).await;
    let health: serde_json::Value =
        app.client.get(format!("{}/healthz", app.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(app.client.get(format!("{}/readyz", app.url)).send().await.unwrap().status(), 200);
    let metrics = app.client.get(format!("{}/metrics", app.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("dispatchd_orders{state=\"released\",warehouse=\"AMS\"} 1"), "{metrics}");
    assert!(metrics.contains("dispatchd_holds{reason=\"credit_hold\"} 0"));
    assert!(metrics.contains("dispatchd_http_requests_total{method=\"POST\",route=\"/api/v1/orders\",status=\"201\"}"));
    assert!(metrics.contains("dispatchd_http_request_duration_seconds_bucket"));
    assert!(metrics.contains("dispatchd_jobs{kind=\"book_shipment\",status=\"pending\"} 1"));
    let doc: serde_json::Value =
        app.client.get(format!("{}/api/openapi.json", app.url)).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for spec in specs() {
        let path = &doc["paths"][spec.path];
        assert!(path.is_object(), "{} missing from the OpenAPI document", spec.path);
        assert!(path[spec.method.as_str().to_lowercase()].is_object(), "{} {} undocumented", spec.method, spec.path);
    }
    assert!(doc["components"]["schemas"]["OrderFacts"].is_object());
    // Schema names are global: two payloads once shared `OrderRef` and one silently replaced
    // the other. Each must keep its own shape.
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["OrderRef"]["properties"]["order_id"].is_object(), "outbound OrderRef: {}", schemas["OrderRef"]);
    assert!(schemas["ApprovalOrder"]["properties"]["value"].is_object(), "{}", schemas["ApprovalOrder"]);
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn warehouses_list_zones_and_cutoffs() {
    let app = TestApp::spawn().await;
    let w = app.get_json("/api/v1/warehouses").await;
    let items = w["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    let ams = items.iter().find(|w| w["code"] == "AMS").unwrap();
    assert_eq!(ams["timezone"], "Europe/Amsterdam");
    assert_eq!(ams["country"], "NL");
    assert_eq!(ams["cutoffs"]["same_day"], "12:00");
}
