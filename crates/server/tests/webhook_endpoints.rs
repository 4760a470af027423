//! `/api/v1/webhook-endpoints` without a master key, and who may manage subscriptions.

mod common;

use common::TestApp;
use dispatch_core::Role;
use serde_json::json;

#[tokio::test]
async fn without_a_master_key_no_endpoint_is_created_and_the_answer_says_what_to_set() {
    // The test process has no DISPATCHD_MASTER_KEY.
    let app = TestApp::spawn().await;
    assert!(app.state.vault.is_none());
    let r = app.post("/api/v1/webhook-endpoints", &json!({"url": "https://n8n.example/webhook/x"}), app.admin()).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["type"], "urn:dispatchd:problem:vault-not-configured");
    assert!(p["detail"].as_str().unwrap().contains("DISPATCHD_MASTER_KEY"), "{p}");
    assert!(app.store.webhook_endpoints().await.unwrap().is_empty(), "nothing written");

    // Input is checked before the key: a bad request is a 422 either way.
    let r =
        app.post("/api/v1/webhook-endpoints", &json!({"url": "not a url", "event_types": ["x"]}), app.admin()).await;
    assert_eq!(r.status(), 422);

    // Subscribing needs manage_webhooks; a dispatcher may only look.
    let r =
        app.post("/api/v1/webhook-endpoints", &json!({"url": "https://x.example"}), app.token(Role::Dispatcher)).await;
    assert_eq!(r.status(), 403);
    let r = app.get("/api/v1/webhook-endpoints", app.token(Role::Dispatcher)).await;
    assert_eq!(r.status(), 200);
    let r = app.get("/api/v1/webhook-endpoints/ep_nope", app.admin()).await;
    assert_eq!(r.status(), 404);
    let r = app.post("/api/v1/webhook-endpoints/ep_nope/enable", &json!({}), app.admin()).await;
    assert_eq!(r.status(), 404);
}
