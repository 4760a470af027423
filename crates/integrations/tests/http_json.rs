//! The configurable `http-json` adapter against a small carrier served in-process: the request
//! is built from the mapping, headers carry the key and the idempotency key, the answer and the
//! tracking events are read through pointers, errors are classified.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use dispatch_core::{Address, StatusMap, TrackingStatus};
use dispatch_integrations::http_json::{HttpJsonAdapter, HttpJsonConfig};
use dispatch_integrations::{BookingRequest, CarrierAdapter, CarrierError, Secret};
use serde_json::{Value, json};

#[tokio::test]
async fn books_cancels_and_tracks_through_the_mapping() {
    let seen: Arc<Mutex<Vec<(Value, String, String)>>> = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new()
        .route(
            "/api/shipments",
            post(move |headers: HeaderMap, Json(body): Json<Value>| {
                let s = s.clone();
                async move {
                    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    s.lock().unwrap().push((body.clone(), h("x-api-key"), h("x-request-key")));
                    if body["consignee"]["country"] == "XX" {
                        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7")], Json(json!({"message": "slow down"})));
                    }
                    (StatusCode::OK, [("retry-after", "0")], Json(json!({"data": {"awb": "AWB1", "id": "S1", "label": "http://l/1", "price": {"amount": "9.90", "currency": "EUR"}}})))
                }
            }),
        )
        .route("/api/shipments/S1/cancel", post(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/api/track/AWB1",
            get(|| async {
                Json(json!({"events": [
                    {"id": "ev1", "code": "PU", "at": "2026-11-24T08:00:00Z"},
                    {"id": "ev2", "code": "ZZ", "at": "2026-11-24T09:00:00Z", "text": "??"}
                ]}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let cfg: HttpJsonConfig = serde_json::from_value(json!({
        "book": {"path": "/shipments"},
        "cancel": {"path": "/shipments/{shipment_id}/cancel"},
        "track": {"method": "GET", "path": "/track/{tracking_number}"},
        "auth_header": "X-Api-Key", "auth_prefix": "", "idempotency_header": "X-Request-Key",
        "request": {"/ref": "order_id", "/consignee/name": "ship_to.name", "/consignee/country": "ship_to.country", "/kg": "weight_kg", "/product": "=EXPRESS"},
        "response": {"tracking_number": "/data/awb", "shipment_id": "/data/id", "label_url": "/data/label", "price": "/data/price/amount", "currency": "/data/price/currency"},
        "tracking": {"events": "/events", "event_id": "/id", "status": "/code", "event_time": "/at", "detail": "/text"}
    }))
    .unwrap();
    let map = StatusMap::new([("pu".to_string(), TrackingStatus::PickedUp)]);
    let adapter =
        HttpJsonAdapter::new("acme", &base, Some(Secret::new("k1")), cfg, map, reqwest::Client::new()).unwrap();
    let mut req = BookingRequest {
        idempotency_key: "book_shipment:ord_1:2".into(),
        order_id: "ord_1".into(),
        reference: "WH/OUT/1".into(),
        warehouse: "AMS".into(),
        service_level: "standard".into(),
        ship_to: Address { name: "Acme".into(), country: "NL".into(), ..Default::default() },
        weight_kg: 1.5,
        value: 10.0,
    };
    let b = adapter.book(&req).await.unwrap();
    assert_eq!((b.tracking_number.as_str(), b.shipment_id.as_str()), ("AWB1", "S1"));
    assert_eq!(b.price.as_ref().map(|p| p.amount.as_str()), Some("9.90"));
    let (body, key, idem) = seen.lock().unwrap()[0].clone();
    assert_eq!(
        body,
        json!({"ref": "ord_1", "consignee": {"name": "Acme", "country": "NL"}, "kg": 1.5, "product": "EXPRESS"})
    );
    assert_eq!((key.as_str(), idem.as_str()), ("k1", "book_shipment:ord_1:2"));

    req.ship_to.country = "XX".into();
    let e = adapter.book(&req).await.unwrap_err();
    assert!(matches!(e, CarrierError::Unavailable { status: 429, .. }), "{e:?}");
    assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(7)));

    adapter.cancel(&b).await.unwrap();
    let t = adapter.track("AWB1").await.unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].status, TrackingStatus::PickedUp);
    assert_eq!((t[1].status, t[1].carrier_status.as_str()), (TrackingStatus::Unknown, "ZZ"));
    assert_eq!(t[1].detail.as_deref(), Some("??"));
}
