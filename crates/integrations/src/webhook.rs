//! Tracking webhooks: verifying a carrier's HMAC signature and reading its body into a
//! carrier-neutral form.
//!
//! The EasyPost scheme: `X-Hmac-Signature: hmac-sha256-hex=<hex of HMAC-SHA256(secret, raw
//! body)>`. It has no timestamp header; the event's own `created_at` is inside the signed body,
//! so it is the replay window's clock. Schemes with a timestamp header sign `"<ts>.<body>"`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// How a carrier signs its webhooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureScheme {
    #[serde(default = "default_header")]
    pub header: String,
    /// Text before the hex digest in the header value.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// A header with the signing time (Unix seconds), signed as `"<ts>.<body>"`. Without
    /// one, the body's own timestamp is checked after parsing (see [`check_fresh`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_header: Option<String>,
    /// Largest accepted age (and clock skew) of a signed request; 0 turns the check off.
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
}

fn default_header() -> String {
    "X-Hmac-Signature".into()
}
fn default_prefix() -> String {
    "hmac-sha256-hex=".into()
}
fn default_tolerance() -> u64 {
    300
}

impl Default for SignatureScheme {
    fn default() -> Self {
        SignatureScheme {
            header: default_header(),
            prefix: default_prefix(),
            timestamp_header: None,
            tolerance_secs: default_tolerance(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no signature header")]
    Missing,
    #[error("the signature header is not in the expected form")]
    Malformed,
    #[error("the signature does not match any active secret")]
    Mismatch,
    #[error("the request is too old or from the future ({age_secs} s); replays are refused")]
    Stale { age_secs: i64 },
    #[error("no webhook secret is configured for this carrier")]
    NoSecret,
}

impl SignatureError {
    /// A stable label for the rejected-signature metric.
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureError::Missing => "missing",
            SignatureError::Malformed => "malformed",
            SignatureError::Mismatch => "mismatch",
            SignatureError::Stale { .. } => "stale",
            SignatureError::NoSecret => "no_secret",
        }
    }
}

/// Hex HMAC-SHA256 of `payload` under `secret`.
pub fn sign(secret: &Secret, payload: &[u8]) -> String {
    let Ok(mut mac) = HmacSha256::new_from_slice(secret.expose().as_bytes()) else {
        return String::new(); // HMAC takes keys of any length; unreachable
    };
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

/// The header value a sender puts on `body` (and the signed time, for timestamped schemes).
pub fn signature_header(scheme: &SignatureScheme, secret: &Secret, body: &[u8], ts: Option<i64>) -> String {
    let digest = match ts {
        Some(ts) if scheme.timestamp_header.is_some() => sign(secret, &signed_payload(ts, body)),
        _ => sign(secret, body),
    };
    format!("{}{digest}", scheme.prefix)
}

fn signed_payload(ts: i64, body: &[u8]) -> Vec<u8> {
    let mut p = ts.to_string().into_bytes();
    p.push(b'.');
    p.extend_from_slice(body);
    p
}

/// Verifies a request against every active secret (rotation: old and new both verify while
/// both are configured). Compares in constant time and tries every secret, so timing tells
/// nothing about which secret or how much of the digest matched.
pub fn verify(
    scheme: &SignatureScheme,
    secrets: &[Secret],
    header: impl Fn(&str) -> Option<String>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    if secrets.iter().all(Secret::is_empty) {
        return Err(SignatureError::NoSecret);
    }
    let value = header(&scheme.header).ok_or(SignatureError::Missing)?;
    let digest_hex = value.trim().strip_prefix(scheme.prefix.as_str()).ok_or(SignatureError::Malformed)?;
    let digest = hex::decode(digest_hex.trim()).map_err(|_| SignatureError::Malformed)?;
    if digest.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let payload = match &scheme.timestamp_header {
        Some(h) => {
            let ts: i64 = header(h).and_then(|v| v.trim().parse().ok()).ok_or(SignatureError::Malformed)?;
            check_fresh_secs(ts, now, scheme.tolerance_secs)?;
            signed_payload(ts, body)
        }
        None => body.to_vec(),
    };
    let mut ok = false;
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        let Ok(mut mac) = HmacSha256::new_from_slice(s.expose().as_bytes()) else { continue };
        mac.update(&payload);
        ok |= mac.verify_slice(&digest).is_ok();
    }
    if ok { Ok(()) } else { Err(SignatureError::Mismatch) }
}

fn check_fresh_secs(ts: i64, now: DateTime<Utc>, tolerance_secs: u64) -> Result<(), SignatureError> {
    let age = now.timestamp() - ts;
    if tolerance_secs > 0 && age.unsigned_abs() > tolerance_secs {
        return Err(SignatureError::Stale { age_secs: age });
    }
    Ok(())
}

/// The replay window for schemes whose timestamp is inside the signed body.
pub fn check_fresh(created_at: DateTime<Utc>, now: DateTime<Utc>, tolerance: Duration) -> Result<(), SignatureError> {
    check_fresh_secs(created_at.timestamp(), now, tolerance.as_secs())
}

/// One tracking event as the carrier sent it, before normalization.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedEvent {
    pub event_id: String,
    pub tracking_number: String,
    pub carrier_status: String,
    pub event_time: DateTime<Utc>,
    /// When the carrier created the event (signed; used for the replay window).
    pub created_at: Option<DateTime<Utc>>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("`{0}` is missing or not a string")]
    Missing(String),
    #[error("`{field}` is not an RFC 3339 time: {value}")]
    BadTime { field: String, value: String },
}

/// Where a carrier's webhook body keeps the fields dispatchd reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "kebab-case", deny_unknown_fields)]
pub enum WebhookFormat {
    /// EasyPost `Event` objects with a `Tracker` result.
    Easypost,
    /// Any JSON body; each field named by a JSON pointer.
    Json {
        event_id: String,
        tracking_number: String,
        status: String,
        event_time: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        created_at: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
}

fn str_at<'a>(v: &'a serde_json::Value, pointer: &str) -> Result<&'a str, ParseError> {
    v.pointer(pointer).and_then(|x| x.as_str()).ok_or_else(|| ParseError::Missing(pointer.to_string()))
}

fn time_at(v: &serde_json::Value, pointer: &str) -> Result<DateTime<Utc>, ParseError> {
    let s = str_at(v, pointer)?;
    parse_time(s).ok_or_else(|| ParseError::BadTime { field: pointer.into(), value: s.chars().take(40).collect() })
}

pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// Reads a webhook body. `Ok(None)`: a well-formed event that is not about tracking (e.g. a
/// batch or refund event), acknowledged and ignored.
pub fn parse(format: &WebhookFormat, body: &[u8]) -> Result<Option<ParsedEvent>, ParseError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        // Tell malformed JSON from JSON that is not an object.
        return Err(ParseError::NotJson(match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => "the body must be a JSON object".into(),
            Err(e) => e.to_string(),
        }));
    }
    match format {
        WebhookFormat::Easypost => parse_easypost(body),
        WebhookFormat::Json { event_id, tracking_number, status, event_time, created_at, detail } => {
            let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
            Ok(Some(ParsedEvent {
                event_id: str_at(&v, event_id)?.to_string(),
                tracking_number: str_at(&v, tracking_number)?.to_string(),
                carrier_status: str_at(&v, status)?.to_string(),
                event_time: time_at(&v, event_time)?,
                created_at: created_at.as_deref().map(|p| time_at(&v, p)).transpose()?,
                detail: detail.as_deref().and_then(|p| v.pointer(p)).and_then(|d| d.as_str()).map(str::to_string),
            }))
        }
    }
}

type Text<'a> = Option<std::borrow::Cow<'a, str>>;

/// Just enough of an EasyPost `Event` to know whether it is about tracking.
#[derive(Deserialize)]
struct EpEnvelope<'a> {
    #[serde(borrow, default)]
    description: Text<'a>,
}

/// The fields of an EasyPost `tracker.*` event that dispatchd reads; the rest is skipped.
#[derive(Deserialize)]
struct EpEvent<'a> {
    #[serde(borrow, default)]
    id: Text<'a>,
    #[serde(borrow, default)]
    created_at: Text<'a>,
    #[serde(borrow, default)]
    result: Option<EpTracker<'a>>,
}

#[derive(Deserialize)]
struct EpTracker<'a> {
    #[serde(borrow, default)]
    tracking_code: Text<'a>,
    #[serde(borrow, default)]
    status: Text<'a>,
    #[serde(borrow, default)]
    status_detail: Text<'a>,
    #[serde(borrow, default)]
    updated_at: Text<'a>,
    #[serde(borrow, default)]
    tracking_details: Vec<EpDetail<'a>>,
}

#[derive(Deserialize)]
struct EpDetail<'a> {
    #[serde(borrow, default)]
    status: Text<'a>,
    #[serde(borrow, default)]
    datetime: Text<'a>,
    #[serde(borrow, default)]
    message: Text<'a>,
}

fn required<'a>(v: &'a Text<'_>, field: &str) -> Result<&'a str, ParseError> {
    v.as_deref().ok_or_else(|| ParseError::Missing(field.to_string()))
}

fn time_of(v: &Text<'_>, field: &str) -> Result<DateTime<Utc>, ParseError> {
    let s = required(v, field)?;
    parse_time(s).ok_or_else(|| ParseError::BadTime { field: field.into(), value: s.chars().take(40).collect() })
}

/// Typed and borrowing: a webhook is read without building a JSON tree.
fn parse_easypost(body: &[u8]) -> Result<Option<ParsedEvent>, ParseError> {
    let shape = |e: serde_json::Error| {
        if e.is_data() {
            ParseError::Missing(format!("a well-typed event ({e})"))
        } else {
            ParseError::NotJson(e.to_string())
        }
    };
    let envelope: EpEnvelope<'_> = serde_json::from_slice(body).map_err(shape)?;
    if !required(&envelope.description, "/description")?.starts_with("tracker.") {
        return Ok(None);
    }
    let ev: EpEvent<'_> = serde_json::from_slice(body).map_err(shape)?;
    let event_id = required(&ev.id, "/id")?.to_string();
    let created_at = time_of(&ev.created_at, "/created_at")?;
    let tracker = ev.result.ok_or_else(|| ParseError::Missing("/result".into()))?;
    let tracking_number = required(&tracker.tracking_code, "/result/tracking_code")?.to_string();
    let carrier_status = required(&tracker.status, "/result/status")?.to_string();
    // The event's time is that of the latest tracking detail with the tracker's status; a
    // tracker without details uses its `updated_at`.
    let latest = tracker
        .tracking_details
        .iter()
        .filter(|d| d.status.as_deref() == Some(carrier_status.as_str()))
        .filter_map(|d| Some((parse_time(d.datetime.as_deref()?)?, d.message.as_deref())))
        .max_by_key(|(t, _)| *t);
    let (event_time, detail) = match latest {
        Some((t, m)) => (t, m.map(str::to_string)),
        None => (time_of(&tracker.updated_at, "/result/updated_at")?, None),
    };
    let detail = detail.or_else(|| tracker.status_detail.as_deref().map(str::to_string));
    Ok(Some(ParsedEvent {
        event_id,
        tracking_number,
        carrier_status,
        event_time,
        created_at: Some(created_at),
        detail,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap()
    }

    fn hdr(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
        move |name: &str| pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }

    #[test]
    fn easypost_signatures_verify_with_any_active_secret() {
        let scheme = SignatureScheme::default();
        let (old, new) = (Secret::new("old-secret"), Secret::new("new-secret"));
        let body = br#"{"id":"evt_1"}"#;
        let sig = signature_header(&scheme, &old, body, None);
        assert!(sig.starts_with("hmac-sha256-hex="));
        let secrets = vec![new.clone(), old.clone()];
        assert_eq!(verify(&scheme, &secrets, hdr(vec![("x-hmac-signature", sig.clone())]), body, now()), Ok(()));
        assert_eq!(
            verify(&scheme, std::slice::from_ref(&new), hdr(vec![("X-Hmac-Signature", sig.clone())]), body, now()),
            Err(SignatureError::Mismatch),
            "a retired secret no longer verifies"
        );
        assert_eq!(
            verify(&scheme, &secrets, hdr(vec![("X-Hmac-Signature", sig)]), br#"{"id":"evt_2"}"#, now()),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(&scheme, &secrets, hdr(vec![]), body, now()), Err(SignatureError::Missing));
        assert_eq!(
            verify(&scheme, &secrets, hdr(vec![("X-Hmac-Signature", "sha1=abc".into())]), body, now()),
            Err(SignatureError::Malformed)
        );
        assert_eq!(verify(&scheme, &[], hdr(vec![]), body, now()), Err(SignatureError::NoSecret));
    }

    #[test]
    fn timestamped_schemes_refuse_replays() {
        let scheme = SignatureScheme {
            header: "X-Signature".into(),
            prefix: "v1=".into(),
            timestamp_header: Some("X-Timestamp".into()),
            tolerance_secs: 300,
        };
        let s = Secret::new("k");
        let body = b"{}";
        let ts = now().timestamp();
        let ok = signature_header(&scheme, &s, body, Some(ts));
        let h = |sig: String, ts: i64| hdr(vec![("X-Signature", sig), ("X-Timestamp", ts.to_string())]);
        assert_eq!(verify(&scheme, std::slice::from_ref(&s), h(ok.clone(), ts), body, now()), Ok(()));
        let old = ts - 301;
        let stale = signature_header(&scheme, &s, body, Some(old));
        assert_eq!(
            verify(&scheme, std::slice::from_ref(&s), h(stale, old), body, now()),
            Err(SignatureError::Stale { age_secs: 301 })
        );
        // Moving the timestamp breaks the signature.
        assert_eq!(verify(&scheme, &[s], h(ok, ts + 1), body, now()), Err(SignatureError::Mismatch));
        assert!(check_fresh(now() - chrono::Duration::seconds(299), now(), Duration::from_secs(300)).is_ok());
        assert!(check_fresh(now() - chrono::Duration::seconds(301), now(), Duration::from_secs(300)).is_err());
    }

    #[test]
    fn easypost_events_are_read() {
        let body = serde_json::json!({
            "id": "evt_1", "object": "Event", "description": "tracker.updated", "created_at": "2026-11-24T08:00:00Z",
            "result": {"id": "trk_1", "object": "Tracker", "tracking_code": "EZ1", "status": "in_transit",
                "status_detail": "arrived_at_facility", "updated_at": "2026-11-24T07:59:00Z",
                "tracking_details": [
                    {"object": "TrackingDetail", "status": "pre_transit", "datetime": "2026-11-24T07:00:00Z", "message": "Label created"},
                    {"object": "TrackingDetail", "status": "in_transit", "datetime": "2026-11-24T07:30:00Z", "message": "Departed"}
                ]}
        });
        let e = parse(&WebhookFormat::Easypost, body.to_string().as_bytes()).unwrap().unwrap();
        assert_eq!(e.event_id, "evt_1");
        assert_eq!(e.tracking_number, "EZ1");
        assert_eq!(e.carrier_status, "in_transit");
        assert_eq!(e.event_time, Utc.with_ymd_and_hms(2026, 11, 24, 7, 30, 0).unwrap());
        assert_eq!(e.detail.as_deref(), Some("Departed"));
        let other =
            serde_json::json!({"id": "evt_2", "description": "batch.updated", "created_at": "2026-11-24T08:00:00Z"});
        assert_eq!(parse(&WebhookFormat::Easypost, other.to_string().as_bytes()), Ok(None));
        assert!(matches!(parse(&WebhookFormat::Easypost, b"{nope"), Err(ParseError::NotJson(_))));
        assert!(matches!(parse(&WebhookFormat::Easypost, b"[]"), Err(ParseError::NotJson(_))));
        let missing = serde_json::json!({"id": "evt_3", "description": "tracker.updated", "created_at": "2026-11-24T08:00:00Z", "result": {}});
        assert!(matches!(parse(&WebhookFormat::Easypost, missing.to_string().as_bytes()), Err(ParseError::Missing(_))));
    }

    #[test]
    fn json_webhooks_follow_their_pointers() {
        let f = WebhookFormat::Json {
            event_id: "/uid".into(),
            tracking_number: "/shipment/awb".into(),
            status: "/code".into(),
            event_time: "/ts".into(),
            created_at: None,
            detail: Some("/text".into()),
        };
        let body = br#"{"uid":"u1","shipment":{"awb":"A1"},"code":"DLV","ts":"2026-11-24T09:00:00+01:00","text":"left at door"}"#;
        let e = parse(&f, body).unwrap().unwrap();
        assert_eq!((e.event_id.as_str(), e.tracking_number.as_str(), e.carrier_status.as_str()), ("u1", "A1", "DLV"));
        assert_eq!(e.event_time, now());
        assert_eq!(e.detail.as_deref(), Some("left at door"));
    }
}
