//! Bad input gets a precise problem+json answer with the right status, and changes nothing.

mod common;

use common::*;
use dispatch_core::Role;
use serde_json::{Value, json};

async fn assert_nothing_written(app: &TestApp) {
    assert_eq!(app.order_count().await, 0, "a refused request must not write");
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = TestApp::spawn().await;
    for body in ["{", "[1,", "{\"source\": }", "nope", "{} {}"] {
        let (status, p) = problem(app.post_raw("/api/v1/orders", body.to_string(), "application/json").await).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(p["type"], "urn:dispatchd:problem:malformed-json");
    }
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn wrong_types_missing_and_unknown_fields_are_422_with_the_field() {
    let app = TestApp::spawn().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut o = order("E/1");
                o["lines"][0]["qty"] = json!("four");
                o
            },
            "lines[0].qty",
        ),
        (
            {
                let mut o = order("E/1");
                o["lines"][0]["qty"] = json!(-1);
                o
            },
            "lines[0].qty",
        ),
        (
            {
                let mut o = order("E/1");
                o.as_object_mut().unwrap().remove("warehouse");
                o
            },
            "body",
        ),
        (
            {
                let mut o = order("E/1");
                o["customer"].as_object_mut().unwrap().remove("id");
                o
            },
            "customer",
        ),
        (
            {
                let mut o = order("E/1");
                o["service_level"] = json!("warp_speed");
                o
            },
            "service_level",
        ),
        (
            {
                let mut o = order("E/1");
                o["promised_date"] = json!("27/11/2026");
                o
            },
            "promised_date",
        ),
        (
            {
                let mut o = order("E/1");
                o["customer"]["credit_status"] = json!("fine");
                o
            },
            "customer.credit_status",
        ),
        (
            {
                let mut o = order("E/1");
                o["lines"][0]["qty_alocated"] = json!(4);
                o
            },
            "lines[0].qty_alocated",
        ),
        (
            {
                let mut o = order("E/1");
                o["warehouse"] = json!("XYZ");
                o
            },
            "warehouse",
        ),
        (
            {
                let mut o = order("E/1");
                o["lines"] = json!([]);
                o
            },
            "lines",
        ),
        (
            {
                let mut o = order("E/1");
                o["lines"][0]["qty"] = json!(0);
                o
            },
            "lines[0].qty",
        ),
        (
            {
                let mut o = order("E/1");
                o["external_id"] = json!("");
                o
            },
            "external_id",
        ),
        (json!([1, 2]), "body"),
    ];
    for (body, field) in cases {
        let (status, p) = problem(app.post("/api/v1/orders", &body, app.admin()).await).await;
        assert_eq!(status, 422, "{field}: {p}");
        let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert!(fields.contains(&field), "expected {field} in {fields:?}: {p}");
    }
    // A missing top-level field is named in the message.
    let mut o = order("E/1");
    o.as_object_mut().unwrap().remove("warehouse");
    let (_, p) = problem(app.post("/api/v1/orders", &o, app.admin()).await).await;
    assert!(p["errors"][0]["message"].as_str().unwrap().contains("missing field `warehouse`"), "{p}");
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = TestApp::spawn().await;
    let mut o = order("BIG/1");
    o["customer"]["name"] = json!("x".repeat(1_100_000));
    let (status, p) = problem(app.post("/api/v1/orders", &o, app.admin()).await).await;
    assert_eq!(status, 413);
    assert_eq!(p["type"], "urn:dispatchd:problem:body-too-large");
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = TestApp::spawn().await;
    let (status, _) = problem(app.post_raw("/api/v1/orders", order("CT/1").to_string(), "text/plain").await).await;
    assert_eq!(status, 415);
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn unknown_ids_and_paths_are_404() {
    let app = TestApp::spawn().await;
    for path in ["/api/v1/orders/ord_nope", "/api/v1/orders/ord_nope/timeline", "/api/v1/nothing-here"] {
        let (status, _) = problem(app.get(path, app.admin()).await).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _) = problem(app.post("/api/v1/orders/ord_nope/cancel", &json!({}), app.admin()).await).await;
    assert_eq!(status, 404);
    let r = app.client.delete(format!("{}/api/v1/orders", app.url)).bearer_auth(app.admin()).send().await.unwrap();
    assert_eq!(problem(r).await.0, 405);
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn missing_or_bad_tokens_are_401_and_write_nothing() {
    let app = TestApp::spawn().await;
    let r = app.client.post(format!("{}/api/v1/orders", app.url)).json(&order("A/1")).send().await.unwrap();
    let (status, _) = problem(r).await;
    assert_eq!(status, 401);
    for bad in ["nonsense", "dsp_000000000000_00", "dsp_", &app.admin().replace("dsp_", "dsp_0")] {
        let (status, _) = problem(app.post("/api/v1/orders", &order("A/1"), bad).await).await;
        assert_eq!(status, 401, "{bad}");
    }
    // A real prefix with a wrong secret is refused like an unknown token.
    let admin = app.admin().to_string();
    let last = if admin.ends_with('0') { '1' } else { '0' };
    let tampered = format!("{}{last}", &admin[..admin.len() - 1]);
    let (status, p) = problem(app.post("/api/v1/orders", &order("A/1"), &tampered).await).await;
    assert_eq!(status, 401);
    assert!(!p.to_string().contains(&admin[4..16]), "no hint which part was wrong");
    assert_nothing_written(&app).await;
}

#[tokio::test]
async fn roles_that_may_not_write_get_403_and_write_nothing() {
    let app = TestApp::spawn().await;
    for role in [Role::Auditor, Role::Finance, Role::Compliance, Role::AccountOwner] {
        let (status, p) = problem(app.post("/api/v1/orders", &order("R/1"), app.token(role)).await).await;
        assert_eq!(status, 403, "{role}");
        assert!(p["detail"].as_str().unwrap().contains("write_orders"));
        // Reading is fine.
        assert_eq!(app.get("/api/v1/orders", app.token(role)).await.status(), 200);
    }
    assert_nothing_written(&app).await;
}
