//! A carrier adapter driven entirely by configuration, for carriers without a dedicated one:
//! the request body is built from a field mapping (JSON pointer ← booking field), the answer
//! is read through JSON pointers.
//!
//! ```toml
//! [carriers.acme]
//! kind = "http-json"
//! base_url = "http://acme.example/api"
//! [carriers.acme.http_json]
//! book = { path = "/shipments" }
//! track = { method = "GET", path = "/shipments/{tracking_number}/events" }
//! [carriers.acme.http_json.request]
//! "/ref" = "order_id"
//! "/consignee/name" = "ship_to.name"
//! "/product" = "=EXPRESS"          # a literal
//! [carriers.acme.http_json.response]
//! tracking_number = "/data/awb"
//! label_url = "/data/label"
//! ```

use std::collections::BTreeMap;

use async_trait::async_trait;
use dispatch_core::{StatusMap, TrackingUpdate};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::carrier::{Booking, BookingRequest, CarrierAdapter, CarrierError, Label, Money, error_from_response};
use crate::secret::Secret;
use crate::webhook::parse_time;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    #[serde(default = "post")]
    pub method: String,
    /// Path below `base_url`; `{shipment_id}` and `{tracking_number}` are filled in.
    pub path: String,
}

fn post() -> String {
    "POST".into()
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseMapping {
    pub tracking_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_pdf: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingMapping {
    /// Pointer to the array of events in the tracking answer.
    pub events: String,
    /// Pointers inside one event.
    pub event_id: String,
    pub status: String,
    pub event_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpJsonConfig {
    pub book: Endpoint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<Endpoint>,
    #[serde(default = "auth_header")]
    pub auth_header: String,
    /// Put before the API key in `auth_header`.
    #[serde(default = "auth_prefix")]
    pub auth_prefix: String,
    #[serde(default = "idempotency_header")]
    pub idempotency_header: String,
    /// Request body: JSON pointer → booking field (`order_id`, `reference`, `idempotency_key`,
    /// `warehouse`, `service_level`, `ship_to.name|street|city|postcode|country`, `weight_kg`,
    /// `value`) or `=literal`.
    #[serde(default)]
    pub request: BTreeMap<String, String>,
    pub response: ResponseMapping,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<TrackingMapping>,
}

fn auth_header() -> String {
    "Authorization".into()
}
fn auth_prefix() -> String {
    "Bearer ".into()
}
fn idempotency_header() -> String {
    "Idempotency-Key".into()
}

/// The value of a booking field by its mapping name.
pub fn field(req: &BookingRequest, name: &str) -> Result<Value, CarrierError> {
    if let Some(literal) = name.strip_prefix('=') {
        return Ok(Value::String(literal.to_string()));
    }
    let s = |v: &str| Value::String(v.to_string());
    Ok(match name {
        "order_id" => s(&req.order_id),
        "reference" => s(&req.reference),
        "idempotency_key" => s(&req.idempotency_key),
        "warehouse" => s(&req.warehouse),
        "service_level" => s(&req.service_level),
        "ship_to.name" => s(&req.ship_to.name),
        "ship_to.street" => s(&req.ship_to.street),
        "ship_to.city" => s(&req.ship_to.city),
        "ship_to.postcode" => s(&req.ship_to.postcode),
        "ship_to.country" => s(&req.ship_to.country),
        "weight_kg" => serde_json::json!(req.weight_kg),
        "value" => serde_json::json!(req.value),
        other => return Err(CarrierError::Config(format!("unknown booking field `{other}` in the request mapping"))),
    })
}

/// Sets `value` at a JSON pointer, creating the objects on the way.
pub fn set_pointer(root: &mut Value, pointer: &str, value: Value) -> Result<(), CarrierError> {
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(CarrierError::Config(format!("`{pointer}` is not a JSON pointer (it must start with /)")));
    };
    let mut cur = root;
    let parts: Vec<String> = rest.split('/').map(|p| p.replace("~1", "/").replace("~0", "~")).collect();
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Default::default());
        }
        let Value::Object(map) = cur else {
            return Err(CarrierError::Config(format!("cannot set `{pointer}`")));
        };
        if i + 1 == parts.len() {
            map.insert(part.clone(), value);
            return Ok(());
        }
        cur = map.entry(part.clone()).or_insert_with(|| Value::Object(Default::default()));
    }
    Ok(())
}

/// Builds the booking body from the mapping.
pub fn request_body(mapping: &BTreeMap<String, String>, req: &BookingRequest) -> Result<Value, CarrierError> {
    let mut body = Value::Object(Default::default());
    for (pointer, source) in mapping {
        set_pointer(&mut body, pointer, field(req, source)?)?;
    }
    Ok(body)
}

fn text_at(v: &Value, pointer: &str) -> Option<String> {
    match v.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads a booking answer through the mapping.
pub fn read_booking(m: &ResponseMapping, v: &Value) -> Result<Booking, CarrierError> {
    let tracking_number = text_at(v, &m.tracking_number)
        .ok_or_else(|| CarrierError::Protocol(format!("no tracking number at `{}`", m.tracking_number)))?;
    let opt = |p: &Option<String>| p.as_deref().and_then(|p| text_at(v, p));
    let label = opt(&m.label_url).map(Label::Url).or_else(|| opt(&m.label_pdf).map(Label::Pdf));
    let price = opt(&m.price).map(|amount| Money { amount, currency: opt(&m.currency).unwrap_or_default() });
    Ok(Booking {
        shipment_id: opt(&m.shipment_id).unwrap_or_else(|| tracking_number.clone()),
        tracking_number,
        label,
        price,
        service: opt(&m.service),
    })
}

pub struct HttpJsonAdapter {
    name: String,
    base_url: String,
    api_key: Option<Secret>,
    cfg: HttpJsonConfig,
    status_map: StatusMap,
    client: reqwest::Client,
}

impl std::fmt::Debug for HttpJsonAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpJsonAdapter")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .finish()
    }
}

impl HttpJsonAdapter {
    pub fn new(
        name: &str,
        base_url: &str,
        api_key: Option<Secret>,
        cfg: HttpJsonConfig,
        status_map: StatusMap,
        client: reqwest::Client,
    ) -> Result<Self, CarrierError> {
        for source in cfg.request.values() {
            if !source.starts_with('=') {
                field(&sample(), source)?;
            }
        }
        Ok(HttpJsonAdapter {
            name: name.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            cfg,
            status_map,
            client,
        })
    }

    async fn call(
        &self,
        ep: &Endpoint,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Result<Value, CarrierError> {
        let method = reqwest::Method::from_bytes(ep.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| CarrierError::Config(format!("`{}` is not an HTTP method", ep.method)))?;
        let mut req = self.client.request(method, format!("{}{path}", self.base_url));
        if let Some(k) = &self.api_key {
            req = req.header(self.cfg.auth_header.as_str(), format!("{}{}", self.cfg.auth_prefix, k.expose()));
        }
        if let Some(k) = key {
            req = req.header(self.cfg.idempotency_header.as_str(), k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| CarrierError::from_reqwest(&e))?;
        if !resp.status().is_success() {
            return Err(error_from_response(resp).await);
        }
        let bytes = resp.bytes().await.map_err(|e| CarrierError::from_reqwest(&e))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| CarrierError::Protocol(e.to_string()))
    }
}

fn sample() -> BookingRequest {
    BookingRequest {
        idempotency_key: String::new(),
        order_id: String::new(),
        reference: String::new(),
        warehouse: String::new(),
        service_level: String::new(),
        ship_to: Default::default(),
        weight_kg: 0.0,
        value: 0.0,
    }
}

fn fill(path: &str, shipment_id: &str, tracking_number: &str) -> String {
    path.replace("{shipment_id}", shipment_id).replace("{tracking_number}", tracking_number)
}

#[async_trait]
impl CarrierAdapter for HttpJsonAdapter {
    async fn book(&self, req: &BookingRequest) -> Result<Booking, CarrierError> {
        let body = request_body(&self.cfg.request, req)?;
        let v = self.call(&self.cfg.book, &self.cfg.book.path, Some(&body), Some(&req.idempotency_key)).await?;
        read_booking(&self.cfg.response, &v)
    }

    async fn cancel(&self, booking: &Booking) -> Result<(), CarrierError> {
        let ep = self
            .cfg
            .cancel
            .as_ref()
            .ok_or_else(|| CarrierError::Config(format!("carrier {} has no cancel endpoint", self.name)))?;
        self.call(ep, &fill(&ep.path, &booking.shipment_id, &booking.tracking_number), None, None).await.map(|_| ())
    }

    async fn track(&self, tracking_number: &str) -> Result<Vec<TrackingUpdate>, CarrierError> {
        let (Some(ep), Some(m)) = (&self.cfg.track, &self.cfg.tracking) else {
            return Err(CarrierError::Config(format!("carrier {} has no tracking endpoint", self.name)));
        };
        let v = self.call(ep, &fill(&ep.path, tracking_number, tracking_number), None, None).await?;
        let events = v
            .pointer(&m.events)
            .and_then(|e| e.as_array())
            .ok_or_else(|| CarrierError::Protocol(format!("no event list at `{}`", m.events)))?;
        let mut out = Vec::new();
        for e in events {
            let (Some(id), Some(code), Some(at)) = (
                text_at(e, &m.event_id),
                text_at(e, &m.status),
                text_at(e, &m.event_time).as_deref().and_then(parse_time),
            ) else {
                continue;
            };
            out.push(TrackingUpdate {
                carrier: self.name.clone(),
                event_id: id,
                tracking_number: tracking_number.to_string(),
                status: self.status_map.normalize(&code),
                carrier_status: code,
                event_time: at,
                detail: m.detail.as_deref().and_then(|p| text_at(e, p)),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_follow_the_mapping() {
        let mut req = sample();
        req.order_id = "ord_1".into();
        req.ship_to.name = "Acme".into();
        req.weight_kg = 2.5;
        let mapping: BTreeMap<String, String> = [
            ("/ref", "order_id"),
            ("/consignee/name", "ship_to.name"),
            ("/parcel/kg", "weight_kg"),
            ("/product", "=EXPRESS"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let body = request_body(&mapping, &req).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"ref": "ord_1", "consignee": {"name": "Acme"}, "parcel": {"kg": 2.5}, "product": "EXPRESS"})
        );
        let bad: BTreeMap<String, String> = [("/x".to_string(), "colour".to_string())].into_iter().collect();
        assert!(matches!(request_body(&bad, &req), Err(CarrierError::Config(_))));

        let m = ResponseMapping {
            tracking_number: "/data/awb".into(),
            label_url: Some("/data/label".into()),
            price: Some("/data/price/amount".into()),
            currency: Some("/data/price/currency".into()),
            ..Default::default()
        };
        let answer = serde_json::json!({"data": {"awb": "A1", "label": "http://l/1.pdf", "price": {"amount": 7.5, "currency": "EUR"}}});
        let b = read_booking(&m, &answer).unwrap();
        assert_eq!(b.tracking_number, "A1");
        assert_eq!(b.shipment_id, "A1");
        assert_eq!(b.label, Some(Label::Url("http://l/1.pdf".into())));
        assert_eq!(b.price, Some(Money { amount: "7.5".into(), currency: "EUR".into() }));
        assert!(matches!(read_booking(&m, &serde_json::json!({})), Err(CarrierError::Protocol(_))));
    }
}
