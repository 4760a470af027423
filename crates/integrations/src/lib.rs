//! dispatchd's integrations with the outside world, starting with carriers.
//!
//! - [`carrier`]: the adapter interface (book, cancel, track) and its error classification;
//! - [`easypost`]: an adapter for EasyPost-shaped APIs (create shipment, buy rate, trackers);
//! - [`http_json`]: a configurable adapter whose request/response field mapping is configuration;
//! - [`webhook`]: tracking webhooks: HMAC signatures (constant time, several secrets, replay
//!   window) and parsing into carrier-neutral updates;
//! - [`resilience`]: exponential backoff with full jitter and a per-carrier circuit breaker,
//!   as pure functions of an injected time;
//! - [`outbound`]: outbound webhooks in the Standard Webhooks format (secrets, signatures, one attempt);
//! - [`vault`]: secrets sealed at rest with AES-256-GCM under a versioned master key ring;
//! - [`registry`]: carriers built from configuration, with credentials from the environment.
//!
//! Secrets are [`Secret`]s: their `Debug` and `Display` print `***`, so they cannot leak into
//! logs by accident.

pub mod carrier;
pub mod easypost;
pub mod http_json;
pub mod outbound;
pub mod registry;
pub mod resilience;
pub mod secret;
pub mod vault;
pub mod webhook;

pub use carrier::{Booking, BookingRequest, CarrierAdapter, CarrierError, Label, Money};
pub use registry::{Carrier, CarrierConfig, CarrierKind, Carriers, ConfigError};
pub use secret::Secret;
pub use vault::{Vault, VaultError};
