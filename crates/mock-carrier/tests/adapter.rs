//! The EasyPost-shaped adapter against the real `mock-carrier` process: bookings are
//! idempotent per key, both buy flows work, errors are classified for the retry policy,
//! tracking reads back, and faults change at run time.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dispatch_core::{Address, StatusMap, TrackingStatus};
use dispatch_integrations::easypost::EasyPostAdapter;
use dispatch_integrations::{Booking, BookingRequest, CarrierAdapter, CarrierError, Secret};
use serde_json::{Value, json};

struct MockProc {
    child: Child,
    url: String,
}

impl Drop for MockProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(args: &[&str]) -> MockProc {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_mock-carrier"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--api-key", "test-key"])
        .args(args)
        .stdout(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let m = MockProc { child, url: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if reqwest::get(format!("{}/healthz", m.url)).await.is_ok_and(|r| r.status() == 200) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("mock-carrier did not start");
}

fn adapter(url: &str, service: Option<&str>, key: &str) -> EasyPostAdapter {
    let client = reqwest::Client::builder().timeout(Duration::from_millis(800)).build().unwrap();
    EasyPostAdapter::new("mock", url, Secret::new(key), service.map(str::to_string), StatusMap::easypost(), client)
}

fn request(key: &str, order: &str) -> BookingRequest {
    BookingRequest {
        idempotency_key: key.into(),
        order_id: order.into(),
        reference: format!("WH/OUT/{order}"),
        warehouse: "AMS".into(),
        service_level: "next_day".into(),
        ship_to: Address {
            name: "Acme".into(),
            street: "Damrak 1".into(),
            city: "Amsterdam".into(),
            postcode: "1012 LG".into(),
            country: "NL".into(),
        },
        weight_kg: 2.0,
        value: 100.0,
    }
}

async fn bookings(m: &MockProc) -> Value {
    reqwest::get(format!("{}/admin/bookings", m.url)).await.unwrap().json().await.unwrap()
}

async fn set_faults(m: &MockProc, faults: Value) {
    let r = reqwest::Client::new().put(format!("{}/admin/faults", m.url)).json(&faults).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn bookings_are_idempotent_per_key_in_both_buy_flows() {
    let m = start(&[]).await;
    for service in [Some("Express"), None] {
        let a = adapter(&m.url, service, "test-key");
        let order = format!("ord_{}", service.unwrap_or("cheapest"));
        let first: Booking = a.book(&request(&format!("key-{order}"), &order)).await.unwrap();
        let again = a.book(&request(&format!("key-{order}"), &order)).await.unwrap();
        assert_eq!(first, again, "the same key returns the same booking");
        assert!(first.tracking_number.starts_with("MP"));
        let expect_service = service.unwrap_or("Ground");
        assert_eq!(first.service.as_deref(), Some(expect_service));
        assert!(first.price.is_some() && first.label.is_some());
        let b = bookings(&m).await;
        assert_eq!(b["purchases_by_reference"][&order], 1, "{b}");
        a.cancel(&first).await.unwrap();
    }
    let b = bookings(&m).await;
    assert_eq!(b["purchases"], 2);
    assert_eq!(b["refunds"], 2);
    assert!(b["double_booked"].as_array().unwrap().is_empty());
    let bad = adapter(&m.url, None, "wrong-key").book(&request("k", "o")).await.unwrap_err();
    assert!(matches!(bad, CarrierError::Rejected { status: 401, .. }), "{bad:?}");
}

#[tokio::test]
async fn errors_are_classified_for_the_retry_policy() {
    let m = start(&["--fault", "error-rate=1", "--fault", "errors=429", "--fault", "retry-after=3"]).await;
    let a = adapter(&m.url, Some("Ground"), "test-key");
    let e = a.book(&request("k1", "o1")).await.unwrap_err();
    assert!(e.is_retryable() && e.is_carrier_fault(), "{e:?}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(e.outcome(), "rate_limited");

    set_faults(&m, json!({"error_rate": 1.0, "error_statuses": [503]})).await;
    assert_eq!(a.book(&request("k1", "o1")).await.unwrap_err().outcome(), "unavailable");
    set_faults(&m, json!({"reject_rate": 1.0})).await;
    let e = a.book(&request("k1", "o1")).await.unwrap_err();
    assert!(!e.is_retryable(), "{e:?}");
    set_faults(&m, json!({"down": true})).await;
    assert!(a.book(&request("k1", "o1")).await.unwrap_err().is_retryable());

    // Processed, then no answer in time: the retry with the same key gets the booking.
    set_faults(&m, json!({"timeout_rate": 1.0, "timeout_ms": 2000})).await;
    let e = a.book(&request("k2", "o2")).await.unwrap_err();
    assert!(matches!(e, CarrierError::Unreachable { maybe_processed: true, .. }), "{e:?}");
    set_faults(&m, json!({})).await;
    let booked = a.book(&request("k2", "o2")).await.unwrap();
    let b = bookings(&m).await;
    assert_eq!(b["purchases_by_reference"]["o2"], 1, "{b}");
    assert_eq!(b["requests_by_key"]["k2"], 2);
    assert!(b["purchases_by_reference"].get("o1").is_none(), "nothing was booked while failing");

    // A closed port is unreachable and certainly not booked.
    let closed = adapter("http://127.0.0.1:9", Some("Ground"), "k").book(&request("k", "o")).await.unwrap_err();
    assert!(matches!(closed, CarrierError::Unreachable { maybe_processed: false, .. }), "{closed:?}");

    // Tracking reads back through the tracker endpoint (no scans yet without webhooks).
    let updates = a.track(&booked.tracking_number).await.unwrap();
    assert!(updates.iter().all(|u| u.status != TrackingStatus::Unknown));
}

#[tokio::test]
async fn shipments_move_and_send_signed_webhooks() {
    // A tiny receiver that records what the mock sends.
    type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;
    let received: Received = Default::default();
    let rx = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let rx = rx.clone();
            async move {
                let sig = headers.get("x-hmac-signature").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                rx.lock().unwrap().push((sig, body.to_vec()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let m = start(&[
        "--webhook-url",
        &hook,
        "--webhook-secret",
        "whsec",
        "--time-scale",
        "0.0002",
        "--fault",
        "duplicate-rate=1",
        "--fault",
        "unknown-status-rate=1",
    ])
    .await;
    let a = adapter(&m.url, Some("Ground"), "test-key");
    let booking = a.book(&request("k", "o")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.lock().unwrap().len() < 12 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 12, "4 scans, each duplicated and followed by an unknown code");
    let scheme = dispatch_integrations::webhook::SignatureScheme::default();
    let mut statuses = BTreeMap::new();
    for (sig, body) in &got {
        let hdr = |_: &str| Some(sig.clone());
        dispatch_integrations::webhook::verify(&scheme, &[Secret::new("whsec")], hdr, body, chrono::Utc::now())
            .unwrap();
        let e = dispatch_integrations::webhook::parse(&dispatch_integrations::webhook::WebhookFormat::Easypost, body)
            .unwrap()
            .unwrap();
        assert_eq!(e.tracking_number, booking.tracking_number);
        *statuses.entry(e.carrier_status).or_insert(0) += 1;
    }
    assert_eq!(statuses["delivered"], 2);
    assert!(statuses.keys().any(|k| k.starts_with("mystery_scan")));
    let tracked = a.track(&booking.tracking_number).await.unwrap();
    assert_eq!(tracked.last().map(|u| u.status), Some(TrackingStatus::Delivered));
}
