//! The normalized vocabularies of the design brief. They are fixed early so that reporting,
//! policy and analysis agree on one spelling; each serializes as its snake_case code.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $code:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every member, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable code used in the API, the database and the policy.
            pub const fn code(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }

            /// Parses a code; `None` for anything outside the vocabulary.
            pub fn from_code(code: &str) -> Option<Self> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

vocabulary!(
    /// Where a delivery order is in its lifecycle.
    OrderState {
        Received => "received",
        OnHold => "on_hold",
        AwaitingApproval => "awaiting_approval",
        Released => "released",
        Booked => "booked",
        Dispatched => "dispatched",
        Delivered => "delivered",
        Exception => "exception",
        Cancelled => "cancelled",
    }
);

impl OrderState {
    /// States an order leaves only through an external event; nothing dispatchd decides on
    /// its own moves an order out of them.
    pub const fn is_terminal(self) -> bool {
        matches!(self, OrderState::Delivered | OrderState::Cancelled)
    }

    /// Open orders are the dispatch workload: not yet handed to a carrier.
    pub const fn is_open(self) -> bool {
        matches!(self, OrderState::Received | OrderState::OnHold | OrderState::AwaitingApproval | OrderState::Released)
    }
}

vocabulary!(
    /// Why an order may not leave yet. Every failing check contributes its own code.
    HoldReason {
        StockShort => "stock_short",
        StockUnallocated => "stock_unallocated",
        CreditHold => "credit_hold",
        PaymentPending => "payment_pending",
        AddressInvalid => "address_invalid",
        DocsMissing => "docs_missing",
        CutoffMissed => "cutoff_missed",
        CarrierUnavailable => "carrier_unavailable",
        PolicyHold => "policy_hold",
        PolicyError => "policy_error",
    }
);

vocabulary!(
    /// Kinds of exception that need a human (or policy) approval.
    ApprovalKind {
        PartialShipment => "partial_shipment",
        ExpeditedFreight => "expedited_freight",
        CreditHoldRelease => "credit_hold_release",
        RouteOverride => "route_override",
        ComplianceRelease => "compliance_release",
    }
);

vocabulary!(
    /// Carrier-neutral shipment status, in the spirit of EasyPost and AfterShip.
    TrackingStatus {
        PreTransit => "pre_transit",
        PickedUp => "picked_up",
        InTransit => "in_transit",
        OutForDelivery => "out_for_delivery",
        AvailableForPickup => "available_for_pickup",
        Delivered => "delivered",
        AttemptFailed => "attempt_failed",
        Exception => "exception",
        Returned => "returned",
        Cancelled => "cancelled",
        Unknown => "unknown",
    }
);

vocabulary!(
    /// Who acts. A user or token may hold several roles.
    Role {
        Dispatcher => "dispatcher",
        WarehouseLead => "warehouse_lead",
        Supervisor => "supervisor",
        Finance => "finance",
        Compliance => "compliance",
        AccountOwner => "account_owner",
        OpsManager => "ops_manager",
        Admin => "admin",
        Auditor => "auditor",
        Integration => "integration",
    }
);

vocabulary!(
    /// Promised speed of delivery; decides transit days and the warehouse cut-off that applies.
    ServiceLevel {
        SameDay => "same_day",
        NextDay => "next_day",
        Express => "express",
        Standard => "standard",
        Economy => "economy",
    }
);

impl ServiceLevel {
    /// Calendar days between departure and the promised delivery date.
    pub const fn transit_days(self) -> i64 {
        match self {
            ServiceLevel::SameDay => 0,
            ServiceLevel::NextDay | ServiceLevel::Express => 1,
            ServiceLevel::Standard => 2,
            ServiceLevel::Economy => 4,
        }
    }
}

vocabulary!(
    /// The readiness checks run before release, in evaluation order.
    CheckName {
        Stock => "stock",
        Credit => "credit",
        Payment => "payment",
        Cutoff => "cutoff",
        Address => "address",
        Documents => "documents",
    }
);

vocabulary!(
    /// Customer credit standing as the ERP reports it.
    CreditStatus {
        Ok => "ok",
        Watch => "watch",
        Hold => "hold",
        Blocked => "blocked",
        OverLimit => "over_limit",
    }
);

vocabulary!(
    /// Payment state of the order as the ERP reports it.
    PaymentStatus {
        Ok => "ok",
        Paid => "paid",
        Authorized => "authorized",
        Pending => "pending",
        Unpaid => "unpaid",
        Failed => "failed",
        Overdue => "overdue",
    }
);

/// Document types the built-in checks require. The policy may add more, so orders carry
/// documents as free codes; these constants name the ones dispatchd itself knows.
pub mod document {
    pub const COMMERCIAL_INVOICE: &str = "commercial_invoice";
    pub const EXPORT_DECLARATION: &str = "export_declaration";
    pub const DANGEROUS_GOODS_DECLARATION: &str = "dangerous_goods_declaration";
    pub const CERTIFICATE_OF_ORIGIN: &str = "certificate_of_origin";
    pub const PACKING_LIST: &str = "packing_list";
    pub const ALL: &[&str] =
        &[COMMERCIAL_INVOICE, EXPORT_DECLARATION, DANGEROUS_GOODS_DECLARATION, CERTIFICATE_OF_ORIGIN, PACKING_LIST];
}

/// Member states of the EU customs union: shipping across its border needs export papers.
pub const EU_CUSTOMS_UNION: &[&str] = &[
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU", "MT",
    "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
];

pub fn in_eu_customs_union(country: &str) -> bool {
    EU_CUSTOMS_UNION.contains(&country)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_serde_and_from_code() {
        for s in OrderState::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.code()));
            assert_eq!(OrderState::from_code(s.code()), Some(*s));
        }
        for r in HoldReason::ALL {
            assert_eq!(serde_json::from_str::<HoldReason>(&format!("\"{r}\"")).unwrap(), *r);
        }
        assert_eq!(Role::from_code("auditor"), Some(Role::Auditor));
        assert_eq!(Role::from_code("root"), None);
    }

    #[test]
    fn vocabularies_match_the_brief() {
        let states: Vec<_> = OrderState::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(
            states,
            [
                "received",
                "on_hold",
                "awaiting_approval",
                "released",
                "booked",
                "dispatched",
                "delivered",
                "exception",
                "cancelled"
            ]
        );
        assert_eq!(HoldReason::ALL.len(), 10);
        assert_eq!(TrackingStatus::ALL.len(), 11);
        assert_eq!(Role::ALL.len(), 10);
    }

    #[test]
    fn customs_union_is_eu27() {
        assert_eq!(EU_CUSTOMS_UNION.len(), 27);
        assert!(in_eu_customs_union("NL"));
        assert!(!in_eu_customs_union("GB"));
        assert!(!in_eu_customs_union("CH"));
    }
}
