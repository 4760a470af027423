//! Retry and circuit-breaker policy as pure functions: time and randomness are arguments, so
//! tests decide them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Exponential backoff with full jitter (a uniform pick in `[0, min(cap, base · 2^attempt))`),
/// but never sooner than the carrier's `Retry-After`. `attempt` counts from 1; `unit` is a
/// uniform random number in `[0, 1)`.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, retry_after: Option<Duration>, unit: f64) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.saturating_sub(1).min(30)).unwrap_or(u32::MAX));
    let ceiling = exp.min(cap);
    let jittered = ceiling.mul_f64(unit.clamp(0.0, 1.0));
    match retry_after {
        Some(r) => jittered.max(r),
        None => jittered,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BreakerConfig {
    /// Consecutive carrier faults that open the circuit.
    pub failure_threshold: u32,
    /// How long an open circuit refuses calls before one probe is let through.
    #[serde(with = "millis")]
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { failure_threshold: 5, open_for: Duration::from_secs(10) }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    /// The gauge value: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// A circuit breaker: closed → (threshold consecutive faults) → open → (after `open_for`)
/// half-open, where one probe goes through: success closes, failure opens again.
#[derive(Debug, Clone, PartialEq)]
pub struct Breaker {
    cfg: BreakerConfig,
    failures: u32,
    open_until: Option<DateTime<Utc>>,
    probe_in_flight: bool,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Self {
        Breaker { cfg, failures: 0, open_until: None, probe_in_flight: false }
    }

    pub fn state(&self, now: DateTime<Utc>) -> CircuitState {
        match self.open_until {
            None => CircuitState::Closed,
            Some(t) if now < t => CircuitState::Open,
            Some(_) => CircuitState::HalfOpen,
        }
    }

    /// May a call go out now? In half-open, only one at a time (the probe).
    pub fn try_acquire(&mut self, now: DateTime<Utc>) -> bool {
        match self.state(now) {
            CircuitState::Closed => true,
            CircuitState::Open => false,
            CircuitState::HalfOpen if self.probe_in_flight => false,
            CircuitState::HalfOpen => {
                self.probe_in_flight = true;
                true
            }
        }
    }

    /// When a refused caller should look again.
    pub fn reopens_at(&self) -> Option<DateTime<Utc>> {
        self.open_until
    }

    pub fn on_success(&mut self) {
        self.failures = 0;
        self.open_until = None;
        self.probe_in_flight = false;
    }

    pub fn on_failure(&mut self, now: DateTime<Utc>) {
        self.failures = self.failures.saturating_add(1);
        let was_probe = self.probe_in_flight;
        self.probe_in_flight = false;
        if was_probe || self.failures >= self.cfg.failure_threshold {
            let open_for = chrono::Duration::from_std(self.cfg.open_for).unwrap_or(chrono::Duration::seconds(10));
            self.open_until = Some(now + open_for);
        }
    }

    /// A call that ended without telling anything about the carrier's health (e.g. the
    /// request was rejected as invalid): frees the probe slot.
    pub fn on_neutral(&mut self) {
        if self.probe_in_flight {
            self.on_success();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn backoff_stays_within_its_window(attempt in 1u32..40, unit in 0.0f64..1.0, ra in proptest::option::of(0u64..120)) {
            let base = Duration::from_millis(100);
            let cap = Duration::from_secs(60);
            let d = backoff(attempt, base, cap, ra.map(Duration::from_secs), unit);
            let ceiling = base.saturating_mul(2u32.saturating_pow(attempt - 1)).min(cap);
            let floor = ra.map(Duration::from_secs).unwrap_or_default();
            prop_assert!(d <= ceiling.max(floor));
            prop_assert!(d >= floor);
        }
    }

    #[test]
    fn retry_after_is_honoured() {
        let d = backoff(1, Duration::from_millis(100), Duration::from_secs(1), Some(Duration::from_secs(3)), 0.5);
        assert_eq!(d, Duration::from_secs(3));
        assert_eq!(backoff(3, Duration::from_millis(100), Duration::from_secs(10), None, 0.0), Duration::ZERO);
        assert_eq!(
            backoff(3, Duration::from_millis(100), Duration::from_secs(10), None, 0.5),
            Duration::from_millis(200)
        );
    }

    #[test]
    fn breaker_opens_probes_and_closes() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
        let mut b = Breaker::new(BreakerConfig { failure_threshold: 3, open_for: Duration::from_secs(5) });
        for _ in 0..2 {
            assert!(b.try_acquire(t0));
            b.on_failure(t0);
        }
        assert_eq!(b.state(t0), CircuitState::Closed);
        b.on_failure(t0);
        assert_eq!(b.state(t0), CircuitState::Open);
        assert!(!b.try_acquire(t0 + chrono::Duration::seconds(4)));
        let later = t0 + chrono::Duration::seconds(5);
        assert_eq!(b.state(later), CircuitState::HalfOpen);
        assert!(b.try_acquire(later), "one probe");
        assert!(!b.try_acquire(later), "only one");
        b.on_failure(later);
        assert_eq!(b.state(later), CircuitState::Open, "a failed probe opens again");
        let much_later = later + chrono::Duration::seconds(6);
        assert!(b.try_acquire(much_later));
        b.on_success();
        assert_eq!(b.state(much_later), CircuitState::Closed);
        assert!(b.try_acquire(much_later) && b.try_acquire(much_later));
    }
}
