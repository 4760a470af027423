//! The carrier adapter interface: what dispatchd needs from any carrier.

use std::time::Duration;

use async_trait::async_trait;
use dispatch_core::{Address, Order, TrackingUpdate};
use serde::{Deserialize, Serialize};

/// What to book. `idempotency_key` is derived from the order and its release, never from the
/// attempt, so a retry of the same booking can never book twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookingRequest {
    pub idempotency_key: String,
    pub order_id: String,
    /// The order's id in the system of record (`external_id`), printed on the label.
    pub reference: String,
    pub warehouse: String,
    pub service_level: String,
    pub ship_to: Address,
    pub weight_kg: f64,
    pub value: f64,
}

impl BookingRequest {
    pub fn for_order(order: &Order, idempotency_key: &str) -> Self {
        BookingRequest {
            idempotency_key: idempotency_key.to_string(),
            order_id: order.id.clone(),
            reference: order.facts.external_id.clone(),
            warehouse: order.facts.warehouse.clone(),
            // An approved expedited-freight request books the faster service.
            service_level: order
                .booking_override
                .as_ref()
                .and_then(|b| b.service)
                .unwrap_or(order.facts.service_level)
                .code()
                .to_string(),
            ship_to: order.facts.ship_to.clone(),
            weight_kg: order.facts.total_weight_kg().max(0.1),
            value: order.facts.order_value(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Money {
    /// Decimal string as carriers send it (`"7.58"`): no float rounding on money.
    pub amount: String,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    Url(String),
    /// Base64 of the PDF.
    Pdf(String),
}

/// A confirmed booking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Booking {
    /// The carrier's id of the shipment (for cancel).
    pub shipment_id: String,
    pub tracking_number: String,
    pub label: Option<Label>,
    pub price: Option<Money>,
    pub service: Option<String>,
}

/// Why a carrier call failed, classified for the retry policy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CarrierError {
    /// The carrier answered that it cannot serve now (5xx, 429, 408): nothing was booked;
    /// try again, after `retry_after` when it said so.
    #[error("carrier unavailable (HTTP {status}): {message}")]
    Unavailable { status: u16, retry_after: Option<Duration>, message: String },
    /// No answer (connection refused, reset, timeout). A timeout may have booked: only a
    /// retry with the same idempotency key is safe.
    #[error("carrier unreachable: {message}")]
    Unreachable { message: String, maybe_processed: bool },
    /// The carrier refused the request itself (4xx other than 408/429): retrying the same
    /// request cannot help.
    #[error("carrier rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    /// The answer could not be understood.
    #[error("carrier answered in an unexpected form: {0}")]
    Protocol(String),
    #[error("carrier is not configured correctly: {0}")]
    Config(String),
}

impl CarrierError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, CarrierError::Unavailable { .. } | CarrierError::Unreachable { .. } | CarrierError::Protocol(_))
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CarrierError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Counts against the carrier's health (circuit breaker): the carrier, not the request,
    /// is at fault.
    pub fn is_carrier_fault(&self) -> bool {
        matches!(self, CarrierError::Unavailable { .. } | CarrierError::Unreachable { .. })
    }

    /// A short stable label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            CarrierError::Unavailable { status: 429, .. } => "rate_limited",
            CarrierError::Unavailable { .. } => "unavailable",
            CarrierError::Unreachable { maybe_processed: true, .. } => "timeout",
            CarrierError::Unreachable { .. } => "unreachable",
            CarrierError::Rejected { .. } => "rejected",
            CarrierError::Protocol(_) => "protocol_error",
            CarrierError::Config(_) => "config_error",
        }
    }

    /// Classifies an HTTP error answer.
    pub fn from_status(status: u16, retry_after: Option<Duration>, message: String) -> Self {
        match status {
            408 | 425 | 429 | 500..=599 => CarrierError::Unavailable { status, retry_after, message },
            _ => CarrierError::Rejected { status, message },
        }
    }

    pub fn from_reqwest(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            CarrierError::Unreachable { message: "timed out".into(), maybe_processed: true }
        } else if e.is_connect() {
            CarrierError::Unreachable { message: format!("cannot connect: {e}"), maybe_processed: false }
        } else if e.is_decode() {
            CarrierError::Protocol(e.to_string())
        } else {
            // A request sent and then lost may have been processed.
            CarrierError::Unreachable { message: e.to_string(), maybe_processed: true }
        }
    }
}

/// `Retry-After` as delta-seconds (the HTTP-date form is rare for APIs and read as absent).
pub fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let secs: f64 = v.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// What dispatchd needs from a carrier.
#[async_trait]
pub trait CarrierAdapter: Send + Sync {
    /// Books the shipment. Calling it again with the same idempotency key returns the same
    /// booking and books nothing new.
    async fn book(&self, req: &BookingRequest) -> Result<Booking, CarrierError>;
    /// Cancels (voids) a booking.
    async fn cancel(&self, booking: &Booking) -> Result<(), CarrierError>;
    /// The carrier's tracking history of a shipment, as carrier-neutral updates.
    async fn track(&self, tracking_number: &str) -> Result<Vec<TrackingUpdate>, CarrierError>;
}

/// Reads an error answer's body into a short message (carriers put it in various places).
pub(crate) async fn error_from_response(resp: reqwest::Response) -> CarrierError {
    let status = resp.status().as_u16();
    let retry_after = parse_retry_after(resp.headers());
    let body = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.pointer("/message"))
                .or_else(|| v.pointer("/error"))
                .and_then(|m| m.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| body.chars().take(200).collect());
    CarrierError::from_status(status, retry_after, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert!(CarrierError::from_status(503, None, "x".into()).is_retryable());
        assert!(CarrierError::from_status(429, Some(Duration::from_secs(2)), "x".into()).is_retryable());
        assert_eq!(
            CarrierError::from_status(429, Some(Duration::from_secs(2)), "x".into()).retry_after(),
            Some(Duration::from_secs(2))
        );
        let rejected = CarrierError::from_status(422, None, "bad address".into());
        assert!(!rejected.is_retryable());
        assert!(!rejected.is_carrier_fault());
        assert_eq!(rejected.outcome(), "rejected");
    }
}
