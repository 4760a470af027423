//! The delivery order: the facts the ERP (or an integrator) sends, and the projection that
//! dispatchd keeps of it.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::approval::{ApprovalRequest, BookingOverride, Remainder, SplitLink};
use crate::overrides::HoldOverride;
use crate::readiness::CheckResult;
use crate::tracking::TrackingState;
use crate::vocab::{CreditStatus, HoldReason, OrderState, PaymentStatus, ServiceLevel};

/// What the system of record says about a delivery order. This is the body of
/// `POST /api/v1/orders`; upserts are keyed by (`source`, `external_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderFacts {
    /// Which system the order comes from, e.g. `odoo`.
    #[schema(example = "odoo")]
    pub source: String,
    /// The order's id in that system, e.g. the picking name.
    #[schema(example = "WH1/OUT/00042")]
    pub external_id: String,
    /// Warehouse code, one of `GET /api/v1/warehouses`.
    #[schema(example = "AMS")]
    pub warehouse: String,
    /// Sales channel: `sales`, `ecommerce`, `key_account`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "ecommerce")]
    pub channel: Option<String>,
    pub customer: Customer,
    pub service_level: ServiceLevel,
    /// Date the customer was promised delivery (warehouse-local calendar date).
    #[schema(value_type = String, format = Date, example = "2026-11-28")]
    pub promised_date: NaiveDate,
    pub ship_to: Address,
    pub lines: Vec<Line>,
    #[serde(default)]
    pub payment: Payment,
    /// Codes of the documents that are present, e.g. `commercial_invoice`.
    #[serde(default)]
    pub documents: Vec<String>,
    /// `parcel`, `ltl`, `ftl`, `courier`, `own_fleet`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "parcel")]
    pub transport_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "dhl")]
    pub carrier_preference: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Customer {
    #[schema(example = "C-100")]
    pub id: String,
    #[serde(default)]
    #[schema(example = "Acme BV")]
    pub name: String,
    /// `standard`, `silver`, `gold`, `platinum`, `key_account`.
    #[serde(default = "default_tier")]
    #[schema(example = "gold")]
    pub tier: String,
    #[serde(default = "default_credit")]
    pub credit_status: CreditStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "u-7")]
    pub account_owner: Option<String>,
    /// Where customer notices go (dispatch confirmation, delay notice, proof of delivery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "logistics@acme.example")]
    pub email: Option<String>,
    /// Language of the customer's notices: `en`, `nl`, `de`; `en` when unset or not shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "nl")]
    pub locale: Option<String>,
    /// The customer asked not to receive notices (internal alerts are still sent).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub notifications_opt_out: bool,
}

fn default_tier() -> String {
    "standard".into()
}

fn default_credit() -> CreditStatus {
    CreditStatus::Ok
}

/// Ship-to address. Missing parts are not a request error: they hold the order with
/// `address_invalid`, because the ERP record is what must be fixed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Address {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub street: String,
    #[serde(default)]
    pub city: String,
    #[serde(default)]
    pub postcode: String,
    /// ISO 3166-1 alpha-2.
    #[serde(default)]
    #[schema(example = "NL")]
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Line {
    #[schema(example = "P-1")]
    pub sku: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "pumps")]
    pub product_family: Option<String>,
    pub qty: u32,
    /// Quantity reserved in stock for this line.
    #[serde(default)]
    pub qty_allocated: u32,
    #[serde(default)]
    pub unit_value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_cost: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_kg: Option<f64>,
    /// Dangerous goods: needs a dangerous-goods declaration.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hazmat: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Payment {
    #[serde(default = "default_terms")]
    #[schema(example = "net30")]
    pub terms: String,
    #[serde(default = "default_payment_status")]
    pub status: PaymentStatus,
}

fn default_terms() -> String {
    "net30".into()
}

fn default_payment_status() -> PaymentStatus {
    PaymentStatus::Ok
}

impl Default for Payment {
    fn default() -> Self {
        Payment { terms: default_terms(), status: default_payment_status() }
    }
}

impl OrderFacts {
    /// Total goods value of the order (sum of qty × unit value).
    pub fn order_value(&self) -> f64 {
        self.lines.iter().map(|l| f64::from(l.qty) * l.unit_value).sum()
    }

    pub fn total_weight_kg(&self) -> f64 {
        self.lines.iter().map(|l| f64::from(l.qty) * l.weight_kg.unwrap_or(0.0)).sum()
    }

    pub fn has_hazmat(&self) -> bool {
        self.lines.iter().any(|l| l.hazmat)
    }
}

/// The query projection of one order: its latest facts, state and the last decision about it.
/// It is always exactly the fold of the order's events (see [`crate::replay`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    #[schema(example = "ord_01938f0a6c1e7b2a9d4f5e6a7b8c9d0e")]
    pub id: String,
    /// Number of events in the order's stream; the optimistic-concurrency token (`ETag`).
    pub version: u64,
    pub state: OrderState,
    /// Every failing readiness reason; empty when none.
    pub hold_reasons: Vec<HoldReason>,
    /// Dispatch priority, 0–1000: higher leaves first.
    pub priority: i32,
    #[serde(flatten)]
    pub facts: OrderFacts,
    /// Result of each readiness check at the last evaluation.
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    /// Latest departure that still meets the promised date (the cut-off on the ship-by date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_departure: Option<DateTime<Utc>>,
    /// Why the order was cancelled or went to `exception`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment: Option<Shipment>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the order entered its current state (queue aging).
    pub state_since: DateTime<Utc>,
    /// Approval requests on this order, oldest first (see `approval`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalRequest>,
    /// Hold reasons that still fail but are lifted by an approved request or an override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waived: Vec<HoldReason>,
    /// On a backorder remainder: the order and approval it was split from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_from: Option<SplitLink>,
    /// Remainders split off this order by approved partial shipments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remainders: Vec<Remainder>,
    /// The carrier or service an approval decided for the booking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking_override: Option<BookingOverride>,
    /// Holds people overrode (see `overrides`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<HoldOverride>,
    /// The active model's late-departure probability at the last evaluation that recorded one
    /// (0–1); absent when no model was active at any evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_departure_risk: Option<f64>,
    /// When the order was first released (the on-time release KPI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_released_at: Option<DateTime<Utc>>,
    /// Whether that first release was before the latest departure then in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_on_time: Option<bool>,
    /// A person acted on the order: decided an approval step or overrode a hold (the
    /// touchless KPI counts orders without).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub touched: bool,
}

/// The carrier booking of an order and its last known tracking status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Shipment {
    pub carrier: String,
    pub tracking_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub departed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// The carrier's latest status (the greatest tracking update seen; see `tracking`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<TrackingState>,
}
