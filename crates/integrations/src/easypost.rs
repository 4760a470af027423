//! An adapter for EasyPost-shaped carrier APIs: `POST /v2/shipments` (with a `service`, a
//! one-call buy; without, the cheapest rate is bought with `POST /v2/shipments/{id}/buy`),
//! `POST /v2/shipments/{id}/refund` to cancel, `GET /v2/trackers?tracking_code=` to track.
//! Basic auth with the API key as the user name; every booking call carries the
//! `Idempotency-Key` of the booking.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dispatch_core::{StatusMap, TrackingUpdate};
use serde_json::{Value, json};

use crate::carrier::{Booking, BookingRequest, CarrierAdapter, CarrierError, Label, Money, error_from_response};
use crate::secret::Secret;
use crate::webhook::parse_time;

pub struct EasyPostAdapter {
    name: String,
    base_url: String,
    api_key: Secret,
    service: Option<String>,
    status_map: StatusMap,
    client: reqwest::Client,
}

impl std::fmt::Debug for EasyPostAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EasyPostAdapter")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("service", &self.service)
            .finish()
    }
}

impl EasyPostAdapter {
    pub fn new(
        name: &str,
        base_url: &str,
        api_key: Secret,
        service: Option<String>,
        status_map: StatusMap,
        client: reqwest::Client,
    ) -> Self {
        EasyPostAdapter {
            name: name.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            service,
            status_map,
            client,
        }
    }

    fn auth(&self) -> String {
        format!("Basic {}", STANDARD.encode(format!("{}:", self.api_key.expose())))
    }

    async fn post(&self, path: &str, body: &Value, idempotency_key: Option<&str>) -> Result<Value, CarrierError> {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base_url))
            .header(reqwest::header::AUTHORIZATION, self.auth())
            .json(body);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.map_err(|e| CarrierError::from_reqwest(&e))?;
        if !resp.status().is_success() {
            return Err(error_from_response(resp).await);
        }
        resp.json::<Value>().await.map_err(|e| CarrierError::Protocol(e.to_string()))
    }

    fn shipment_body(&self, req: &BookingRequest) -> Value {
        let a = &req.ship_to;
        let mut shipment = json!({
            "reference": req.order_id,
            "to_address": {"name": a.name, "street1": a.street, "city": a.city, "zip": a.postcode, "country": a.country},
            "from_address": {"company": req.warehouse},
            // EasyPost weighs parcels in ounces.
            "parcel": {"weight": (req.weight_kg * 35.274 * 10.0).round() / 10.0},
            "options": {"invoice_number": req.reference, "declared_value": format!("{:.2}", req.value)},
        });
        if let (Some(service), Some(obj)) = (&self.service, shipment.as_object_mut()) {
            obj.insert("service".into(), json!(service));
        }
        json!({ "shipment": shipment })
    }
}

/// Percent-encodes a query value (unreserved characters stay).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn booking_from_shipment(v: &Value) -> Result<Booking, CarrierError> {
    let s = |p: &str| v.pointer(p).and_then(|x| x.as_str()).map(str::to_string);
    let tracking_number =
        s("/tracking_code").ok_or_else(|| CarrierError::Protocol("the shipment has no tracking_code".into()))?;
    let shipment_id = s("/id").ok_or_else(|| CarrierError::Protocol("the shipment has no id".into()))?;
    let label = s("/postage_label/label_url").map(Label::Url).or_else(|| s("/postage_label/label_pdf").map(Label::Pdf));
    let price = match (s("/selected_rate/rate"), s("/selected_rate/currency")) {
        (Some(amount), Some(currency)) => Some(Money { amount, currency }),
        _ => None,
    };
    Ok(Booking { shipment_id, tracking_number, label, price, service: s("/selected_rate/service") })
}

fn cheapest_rate(v: &Value) -> Option<String> {
    v.get("rates")?
        .as_array()?
        .iter()
        .filter_map(|r| {
            let price: f64 = r.get("rate")?.as_str()?.parse().ok()?;
            Some((price, r.get("id")?.as_str()?.to_string()))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, id)| id)
}

#[async_trait]
impl CarrierAdapter for EasyPostAdapter {
    async fn book(&self, req: &BookingRequest) -> Result<Booking, CarrierError> {
        let key = req.idempotency_key.as_str();
        let shipment = self.post("/v2/shipments", &self.shipment_body(req), Some(key)).await?;
        if shipment.get("tracking_code").and_then(|t| t.as_str()).is_some() {
            return booking_from_shipment(&shipment); // one-call buy, or bought by an earlier attempt
        }
        let id = shipment
            .get("id")
            .and_then(|i| i.as_str())
            .ok_or_else(|| CarrierError::Protocol("the shipment has no id".into()))?;
        let rate = cheapest_rate(&shipment)
            .ok_or_else(|| CarrierError::Rejected { status: 422, message: "the carrier offered no rate".into() })?;
        let bought = self.post(&format!("/v2/shipments/{id}/buy"), &json!({"rate": {"id": rate}}), Some(key)).await?;
        booking_from_shipment(&bought)
    }

    async fn cancel(&self, booking: &Booking) -> Result<(), CarrierError> {
        self.post(&format!("/v2/shipments/{}/refund", booking.shipment_id), &json!({}), None).await.map(|_| ())
    }

    async fn track(&self, tracking_number: &str) -> Result<Vec<TrackingUpdate>, CarrierError> {
        let resp = self
            .client
            .get(format!("{}/v2/trackers?tracking_code={}", self.base_url, encode(tracking_number)))
            .header(reqwest::header::AUTHORIZATION, self.auth())
            .send()
            .await
            .map_err(|e| CarrierError::from_reqwest(&e))?;
        if !resp.status().is_success() {
            return Err(error_from_response(resp).await);
        }
        let v: Value = resp.json().await.map_err(|e| CarrierError::Protocol(e.to_string()))?;
        let mut out = Vec::new();
        for tracker in v.get("trackers").and_then(|t| t.as_array()).into_iter().flatten() {
            let trk = tracker.get("id").and_then(|i| i.as_str()).unwrap_or("trk");
            for d in tracker.get("tracking_details").and_then(|d| d.as_array()).into_iter().flatten() {
                let (Some(code), Some(at)) = (
                    d.get("status").and_then(|s| s.as_str()),
                    d.get("datetime").and_then(|t| t.as_str()).and_then(parse_time),
                ) else {
                    continue;
                };
                out.push(TrackingUpdate {
                    carrier: self.name.clone(),
                    // Polled details have no event id of their own: tracker, time and code are one.
                    event_id: format!("{trk}:{}:{code}", at.timestamp_micros()),
                    tracking_number: tracking_number.to_string(),
                    carrier_status: code.to_string(),
                    status: self.status_map.normalize(code),
                    event_time: at,
                    detail: d.get("message").and_then(|m| m.as_str()).map(str::to_string),
                });
            }
        }
        Ok(out)
    }
}
