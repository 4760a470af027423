//! Outbound webhooks in the Standard Webhooks format: `whsec_` signing secrets, the
//! `webhook-id` / `webhook-timestamp` / `webhook-signature` headers, and one delivery attempt
//! over HTTP. What an answer means (retry, disable) is decided in `core::outbound`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

pub const SECRET_PREFIX: &str = "whsec_";
/// A subscriber that has not answered 2xx within this time has failed the attempt.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error("signing secret is not `whsec_<base64>`")]
    BadSecret,
    #[error("no signing secret")]
    NoSecret,
}

/// A fresh signing secret: `whsec_` and 32 random bytes in base64.
pub fn generate_secret() -> Secret {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    Secret::new(format!("{SECRET_PREFIX}{}", B64.encode(key)))
}

/// The HMAC key of a `whsec_` secret: the base64-decoded part after the prefix.
fn key_of(secret: &Secret) -> Result<Vec<u8>, SigningError> {
    let b64 = secret.expose().strip_prefix(SECRET_PREFIX).ok_or(SigningError::BadSecret)?;
    let key = B64.decode(b64).map_err(|_| SigningError::BadSecret)?;
    if key.is_empty() {
        return Err(SigningError::BadSecret);
    }
    Ok(key)
}

/// `webhook-signature`: `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>` for every
/// secret, separated by spaces, so a subscriber holding the old or the new secret verifies
/// during a rotation.
pub fn signature(secrets: &[Secret], msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String, SigningError> {
    if secrets.is_empty() {
        return Err(SigningError::NoSecret);
    }
    let mut parts = Vec::with_capacity(secrets.len());
    for s in secrets {
        let mut mac = HmacSha256::new_from_slice(&key_of(s)?).map_err(|_| SigningError::BadSecret)?;
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        parts.push(format!("v1,{}", B64.encode(mac.finalize().into_bytes())));
    }
    Ok(parts.join(" "))
}

/// The result of one attempt: the HTTP status, or why there was none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub status: Option<u16>,
    /// Timeout or connection error, or a short excerpt of a non-2xx answer.
    pub error: Option<String>,
}

/// Posts `body` to `url` with the Standard Webhooks headers, waiting at most `timeout`.
/// Redirects are not followed: a subscriber must be configured with its final URL.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    signature: &str,
    timeout: Duration,
) -> Attempt {
    let sent = client
        .post(url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .header("user-agent", concat!("dispatchd/", env!("CARGO_PKG_VERSION")))
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_vec())
        .send()
        .await;
    match sent {
        Ok(r) => {
            let status = r.status().as_u16();
            if r.status().is_success() {
                Attempt { status: Some(status), error: None }
            } else {
                let text = r.text().await.unwrap_or_default();
                let excerpt: String = text.chars().take(200).collect();
                Attempt { status: Some(status), error: Some(format!("HTTP {status}: {excerpt}")) }
            }
        }
        Err(e) if e.is_timeout() => Attempt { status: None, error: Some(format!("no answer within {timeout:?}")) },
        Err(e) => Attempt { status: None, error: Some(format!("cannot reach the endpoint: {e}")) },
    }
}

/// A client for deliveries: no redirects, no connection pooling surprises across endpoints.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_specification_example() {
        // The example of the Standard Webhooks specification (secret, id, timestamp, body).
        let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        let sig = signature(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn one_signature_per_secret_and_bad_secrets_refused() {
        let a = generate_secret();
        let b = generate_secret();
        assert!(a.expose().starts_with("whsec_"));
        assert_ne!(a, b);
        let sig = signature(&[a, b], "msg_1", 1, b"{}").unwrap();
        assert_eq!(sig.split(' ').count(), 2);
        assert!(sig.split(' ').all(|s| s.starts_with("v1,")));
        assert_eq!(signature(&[Secret::new("nope")], "m", 1, b""), Err(SigningError::BadSecret));
        assert_eq!(signature(&[], "m", 1, b""), Err(SigningError::NoSecret));
    }
}
