//! Notifications, the pure part: which rule fires for an outbound event, who receives it (and
//! in which language), and when a notice is suppressed — one per order per kind per window,
//! so a flapping state does not spam a customer; a customer who opted out gets no notices.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::order::Customer;
use crate::outbound::{EventType, Message};

/// What a notice is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    DispatchConfirmation,
    DelayNotice,
    ProofOfDispatch,
    ProofOfDelivery,
    /// To the internal team: an order needs a person.
    ExceptionAlert,
}

impl NoticeKind {
    pub const ALL: &'static [NoticeKind] = &[
        NoticeKind::DispatchConfirmation,
        NoticeKind::DelayNotice,
        NoticeKind::ProofOfDispatch,
        NoticeKind::ProofOfDelivery,
        NoticeKind::ExceptionAlert,
    ];

    pub fn code(self) -> &'static str {
        match self {
            NoticeKind::DispatchConfirmation => "dispatch_confirmation",
            NoticeKind::DelayNotice => "delay_notice",
            NoticeKind::ProofOfDispatch => "proof_of_dispatch",
            NoticeKind::ProofOfDelivery => "proof_of_delivery",
            NoticeKind::ExceptionAlert => "exception_alert",
        }
    }
}

/// Who a rule writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// The order's customer (`customer.email`, in `customer.locale`); honours opt-out.
    Customer,
    /// The configured internal recipients.
    Internal,
    /// One fixed address (or URL for the webhook channel).
    Fixed(String),
}

impl Audience {
    pub fn parse(text: &str) -> Audience {
        match text {
            "customer" => Audience::Customer,
            "internal" => Audience::Internal,
            other => Audience::Fixed(other.to_string()),
        }
    }
}

/// A notification rule: this event (optionally only for these hold reasons or tracking
/// statuses) sends this kind of notice to this audience.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub event: EventType,
    pub kind: NoticeKind,
    pub audience: Audience,
    /// At most one notice of this kind per order within this window.
    pub window: Duration,
    /// For `order.held`: only when one of these reasons holds it (empty: any).
    pub hold_reasons: Vec<String>,
    /// For `tracking.updated`: only for these statuses (empty: any).
    pub tracking_statuses: Vec<String>,
}

/// Does `rule` fire for `m`?
pub fn fires(rule: &Rule, m: &Message) -> bool {
    if rule.event != m.event_type {
        return false;
    }
    let any_of = |field: &str, wanted: &[String]| {
        if wanted.is_empty() {
            return true;
        }
        match m.data.get(field) {
            Some(serde_json::Value::Array(items)) => {
                items.iter().any(|v| v.as_str().is_some_and(|s| wanted.iter().any(|w| w == s)))
            }
            Some(serde_json::Value::String(s)) => wanted.iter().any(|w| w == s),
            _ => false,
        }
    };
    any_of("hold_reasons", &rule.hold_reasons) && any_of("status", &rule.tracking_statuses)
}

/// Why a notice is not sent to someone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    OptedOut,
    NoAddress,
}

/// The customer's address and language, unless they opted out or have no address.
pub fn customer_recipient(c: &Customer) -> Result<(String, Option<String>), Skip> {
    if c.notifications_opt_out {
        return Err(Skip::OptedOut);
    }
    match c.email.as_deref().map(str::trim) {
        Some(e) if e.contains('@') => Ok((e.to_string(), c.locale.clone())),
        _ => Err(Skip::NoAddress),
    }
}

/// The language to write in: the requested one's primary subtag (`nl-BE` → `nl`) when its
/// templates exist, else `default`.
pub fn pick_locale(requested: Option<&str>, available: &[&str], default: &str) -> String {
    requested
        .map(|r| r.split(['-', '_']).next().unwrap_or(r).trim().to_ascii_lowercase())
        .filter(|r| available.contains(&r.as_str()))
        .unwrap_or_else(|| default.to_string())
}

/// Is a notice suppressed because one of its kind went out for the order within `window`?
pub fn suppressed(last: Option<DateTime<Utc>>, now: DateTime<Utc>, window: Duration) -> bool {
    last.is_some_and(|at| now - at < window)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn msg(t: EventType, data: serde_json::Value) -> Message {
        Message { id: "m".into(), event_type: t, timestamp: Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap(), data }
    }

    fn rule(event: EventType, reasons: &[&str]) -> Rule {
        Rule {
            event,
            kind: NoticeKind::DelayNotice,
            audience: Audience::Customer,
            window: Duration::hours(24),
            hold_reasons: reasons.iter().map(|s| s.to_string()).collect(),
            tracking_statuses: vec![],
        }
    }

    #[test]
    fn rules_fire_on_their_event_and_filters() {
        let held = msg(EventType::OrderHeld, serde_json::json!({"hold_reasons": ["stock_short", "credit_hold"]}));
        assert!(fires(&rule(EventType::OrderHeld, &[]), &held));
        assert!(fires(&rule(EventType::OrderHeld, &["cutoff_missed", "stock_short"]), &held));
        assert!(!fires(&rule(EventType::OrderHeld, &["cutoff_missed"]), &held));
        assert!(!fires(&rule(EventType::OrderReleased, &[]), &held));
        let mut r = rule(EventType::TrackingUpdated, &[]);
        r.tracking_statuses = vec!["exception".into()];
        assert!(fires(&r, &msg(EventType::TrackingUpdated, serde_json::json!({"status": "exception"}))));
        assert!(!fires(&r, &msg(EventType::TrackingUpdated, serde_json::json!({"status": "in_transit"}))));
    }

    #[test]
    fn recipients_locales_and_windows() {
        let mut c = crate::readiness::tests::facts().customer;
        assert_eq!(customer_recipient(&c), Err(Skip::NoAddress));
        c.email = Some("ops@acme.example".into());
        c.locale = Some("nl-BE".into());
        assert_eq!(customer_recipient(&c), Ok(("ops@acme.example".into(), Some("nl-BE".into()))));
        c.notifications_opt_out = true;
        assert_eq!(customer_recipient(&c), Err(Skip::OptedOut));

        let avail = ["en", "nl", "de"];
        assert_eq!(pick_locale(Some("nl-BE"), &avail, "en"), "nl");
        assert_eq!(pick_locale(Some("DE"), &avail, "en"), "de");
        assert_eq!(pick_locale(Some("fr"), &avail, "en"), "en");
        assert_eq!(pick_locale(None, &avail, "en"), "en");

        let now = Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap();
        assert!(!suppressed(None, now, Duration::hours(24)));
        assert!(suppressed(Some(now - Duration::hours(23)), now, Duration::hours(24)));
        assert!(!suppressed(Some(now - Duration::hours(24)), now, Duration::hours(24)));
    }
}
