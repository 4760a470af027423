//! Scheduled actions, the pure part: when a schedule is due next, how missed ticks collapse
//! into one run after downtime, and how a failing action backs off and when it alerts.
//! (Odoo's crons fail silently; ours record every run and say so when they keep failing.)

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};

/// How often a schedule runs: a cron expression (UTC) or a fixed interval.
#[derive(Debug, Clone)]
pub enum Cadence {
    Cron { expr: String, cron: Box<croner::Cron> },
    Every(Duration),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CadenceError {
    #[error(
        "`{0}` is not a cron expression (5 fields: minute hour day-of-month month day-of-week) nor an interval such as `every 5m`: {1}"
    )]
    Invalid(String, String),
    #[error("interval `{0}` is too short; the shortest is 1s")]
    TooShort(String),
}

impl Cadence {
    /// `every 30s`, `every 5m`, `every 2h`, or a cron expression such as `*/15 * * * *`.
    pub fn parse(text: &str) -> Result<Cadence, CadenceError> {
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("every ") {
            let rest = rest.trim();
            let (num, unit) = rest.split_at(rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len()));
            let n: i64 =
                num.parse().map_err(|_| CadenceError::Invalid(t.into(), "the interval needs a number".into()))?;
            let d = match unit.trim() {
                "s" | "sec" | "seconds" => Duration::seconds(n),
                "m" | "min" | "minutes" => Duration::minutes(n),
                "h" | "hours" => Duration::hours(n),
                "d" | "days" => Duration::days(n),
                u => return Err(CadenceError::Invalid(t.into(), format!("unknown unit `{u}`; use s, m, h or d"))),
            };
            if d < Duration::seconds(1) {
                return Err(CadenceError::TooShort(t.into()));
            }
            return Ok(Cadence::Every(d));
        }
        let cron = croner::Cron::from_str(t).map_err(|e| CadenceError::Invalid(t.into(), e.to_string()))?;
        Ok(Cadence::Cron { expr: t.to_string(), cron: Box::new(cron) })
    }

    pub fn text(&self) -> String {
        match self {
            Cadence::Cron { expr, .. } => expr.clone(),
            Cadence::Every(d) => format!("every {}s", d.num_seconds()),
        }
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Cadence::Every(d) => after + *d,
            Cadence::Cron { cron, .. } => {
                cron.find_next_occurrence(&after, false).unwrap_or_else(|_| after + Duration::days(366))
            }
        }
    }
}

/// A due schedule: the tick to run now and the regular tick after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub scheduled_for: DateTime<Utc>,
    pub next_regular: DateTime<Utc>,
}

/// Is a schedule whose next run is `next_run_at` due at `now`? After downtime every missed tick
/// collapses into this one run: the next regular tick is computed from `now`, not from the
/// missed one.
pub fn due(cadence: &Cadence, next_run_at: DateTime<Utc>, now: DateTime<Utc>) -> Option<Due> {
    (next_run_at <= now).then(|| Due { scheduled_for: next_run_at, next_regular: cadence.next_after(now) })
}

/// After this many failures in a row a schedule raises an alert (and keeps retrying).
pub const ALERT_AFTER_FAILURES: u32 = 3;

/// When to try again after `consecutive_failures` failures: 10 s doubling to at most 10 min,
/// never later than the next regular tick.
pub fn retry_at(consecutive_failures: u32, now: DateTime<Utc>, next_regular: DateTime<Utc>) -> DateTime<Utc> {
    let exp = consecutive_failures.saturating_sub(1).min(6);
    let delay = (Duration::seconds(10) * 2i32.pow(exp)).min(Duration::minutes(10));
    (now + delay).min(next_regular)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, h, m, s).unwrap()
    }

    #[test]
    fn parses_intervals_and_cron() {
        assert_eq!(Cadence::parse("every 5m").unwrap().next_after(t(10, 0, 0)), t(10, 5, 0));
        assert_eq!(Cadence::parse("*/15 * * * *").unwrap().next_after(t(10, 1, 0)), t(10, 15, 0));
        assert_eq!(
            Cadence::parse("0 6 * * *").unwrap().next_after(t(10, 0, 0)),
            Utc.with_ymd_and_hms(2026, 11, 28, 6, 0, 0).unwrap()
        );
        assert!(matches!(Cadence::parse("every 0s"), Err(CadenceError::TooShort(_))));
        assert!(matches!(Cadence::parse("every 5 fortnights"), Err(CadenceError::Invalid(..))));
        assert!(matches!(Cadence::parse("61 * * * *"), Err(CadenceError::Invalid(..))));
        assert_eq!(Cadence::parse("every 2h").unwrap().text(), "every 7200s");
    }

    #[test]
    fn missed_ticks_collapse_into_one_run() {
        let c = Cadence::parse("every 1m").unwrap();
        assert_eq!(due(&c, t(10, 5, 0), t(10, 4, 59)), None);
        // Down from 10:05 to 12:00: one run now, the next tick a minute from now.
        let d = due(&c, t(10, 5, 0), t(12, 0, 0)).unwrap();
        assert_eq!(d.scheduled_for, t(10, 5, 0));
        assert_eq!(d.next_regular, t(12, 1, 0));
    }

    #[test]
    fn failures_back_off_but_not_past_the_next_tick() {
        let now = t(10, 0, 0);
        let far = t(20, 0, 0);
        assert_eq!(retry_at(1, now, far), t(10, 0, 10));
        assert_eq!(retry_at(2, now, far), t(10, 0, 20));
        assert_eq!(retry_at(20, now, far), t(10, 10, 0));
        assert_eq!(retry_at(5, now, t(10, 0, 30)), t(10, 0, 30));
    }
}
