//! Anomalies over live operations: hourly counts read from the store (holds entered, holds
//! that aged past the on-hold threshold, failed carrier bookings) become regular hourly and
//! daily series per warehouse or carrier, judged by the same seasonal detector as the
//! dispatch history ([`crate::anomaly::detect`]), and each anomaly gets a plain sentence.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::anomaly::{AnomalyOptions, Period, detect};

/// What an anomaly is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Late departures out of dispatches, from the dispatch history.
    LateDepartures,
    /// Orders put on hold or into exception.
    ExceptionVolume,
    /// Holds still unresolved when they reach the on-hold aging threshold.
    QueueAging,
    /// Failed carrier booking attempts.
    BookingFailures,
}

impl Metric {
    pub const ALL: [Metric; 4] =
        [Metric::LateDepartures, Metric::ExceptionVolume, Metric::QueueAging, Metric::BookingFailures];

    pub fn code(self) -> &'static str {
        match self {
            Metric::LateDepartures => "late_departures",
            Metric::ExceptionVolume => "exception_volume",
            Metric::QueueAging => "queue_aging",
            Metric::BookingFailures => "booking_failures",
        }
    }

    pub fn parse(code: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.code() == code)
    }

    /// The count in words, for `n` of it.
    fn noun(self, hold_age: Duration) -> String {
        match self {
            Metric::LateDepartures => "late departures".into(),
            Metric::ExceptionVolume => "orders put on hold or into exception".into(),
            Metric::QueueAging => format!("holds still unresolved after {}", age_words(hold_age)),
            Metric::BookingFailures => "failed carrier booking attempts".into(),
        }
    }
}

fn age_words(d: Duration) -> String {
    let m = d.num_minutes();
    if m % 60 == 0 { format!("{} h", m / 60) } else { format!("{m} min") }
}

/// One hour's count of a series (`warehouse:AMS`, `carrier:dhl`) of a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct HourlyCount {
    pub metric: Metric,
    pub series: String,
    /// Start of the UTC hour.
    pub hour: DateTime<Utc>,
    pub count: f64,
}

/// An unusual hour or day of a live-operations series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpsAnomaly {
    pub metric: Metric,
    pub series: String,
    pub period: Period,
    /// The bucket: its first instant, and its date (and hour) in the series' time zone.
    pub start: DateTime<Utc>,
    pub date: NaiveDate,
    pub hour: Option<u32>,
    pub value: f64,
    /// What the same weekday (or hour of the week) of earlier weeks predicts.
    pub expected: f64,
    pub score: f64,
    pub sentence: String,
}

/// What [`ops_anomalies`] judges.
pub struct OpsWindow<'a> {
    /// The counts cover the hours from `from` (floored to the hour) to `to`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Anomalies in buckets starting before this are not reported (they are history).
    pub report_since: DateTime<Utc>,
    /// The on-hold aging threshold the `queue_aging` counts used (for the sentences).
    pub hold_age: Duration,
    /// A series' time zone (warehouse series: the warehouse's); UTC when `None`.
    pub zone: &'a dyn Fn(&str) -> Option<Tz>,
}

fn floor_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::hours(1)).unwrap_or(t)
}

/// Zero-filled hourly series per (metric, series): index `i` is the hour `from + i h`.
pub fn hourly_series(
    counts: &[HourlyCount],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> BTreeMap<(Metric, String), Vec<f64>> {
    let first = floor_hour(from);
    let hours = usize::try_from((to - first).num_hours().max(0)).unwrap_or(0) + 1;
    let mut out: BTreeMap<(Metric, String), Vec<f64>> = BTreeMap::new();
    for c in counts {
        let Ok(i) = usize::try_from((floor_hour(c.hour) - first).num_hours()) else { continue };
        if i >= hours {
            continue;
        }
        out.entry((c.metric, c.series.clone())).or_insert_with(|| vec![0.0; hours])[i] += c.count;
    }
    out
}

/// The hourly series summed per day of `zone`, every day from the first hour's to the last's.
pub fn daily_series(hourly: &[f64], first_hour: DateTime<Utc>, zone: Tz) -> (Vec<NaiveDate>, Vec<f64>) {
    let day = |i: usize| (first_hour + Duration::hours(i as i64)).with_timezone(&zone).date_naive();
    let Some(last) = hourly.len().checked_sub(1) else { return (Vec::new(), Vec::new()) };
    let (d0, d1) = (day(0), day(last));
    let n = usize::try_from((d1 - d0).num_days()).unwrap_or(0) + 1;
    let dates: Vec<NaiveDate> = (0..n).map(|k| d0 + Duration::days(k as i64)).collect();
    let mut values = vec![0.0; n];
    for (i, v) in hourly.iter().enumerate() {
        if let Ok(k) = usize::try_from((day(i) - d0).num_days()) {
            values[k] += v;
        }
    }
    (dates, values)
}

/// Anomalies of every series, hourly and daily, newest first. A series is judged from its
/// first non-zero bucket on, so a warehouse or carrier that is new in the window is compared
/// with its own weeks, not with the empty weeks before it existed.
pub fn ops_anomalies(counts: &[HourlyCount], w: &OpsWindow<'_>, opts: &AnomalyOptions) -> Vec<OpsAnomaly> {
    let first = floor_hour(w.from);
    let mut out = Vec::new();
    for ((metric, series), hourly) in hourly_series(counts, w.from, w.to) {
        let zone = (w.zone)(&series).unwrap_or(Tz::UTC);
        let (kind, name) = series.split_once(':').unwrap_or(("series", series.as_str()));
        let noun = metric.noun(w.hold_age);

        let skip = hourly.iter().position(|v| *v > 0.0).unwrap_or(hourly.len());
        for a in detect(&series, &hourly[skip..], Period::Hourly, opts) {
            let start = first + Duration::hours((skip + a.index) as i64);
            if start < w.report_since {
                continue;
            }
            let local = start.with_timezone(&zone);
            out.push(OpsAnomaly {
                metric,
                series: series.clone(),
                period: Period::Hourly,
                start,
                date: local.date_naive(),
                hour: Some(local.hour()),
                value: a.value,
                expected: a.baseline,
                score: a.score,
                sentence: format!(
                    "{kind} {name} on {} {:02}:00–{:02}:00: {} {noun}, {:.1} expected from the same hour of earlier weeks",
                    local.date_naive(),
                    local.hour(),
                    (local.hour() + 1) % 24,
                    a.value,
                    a.baseline
                ),
            });
        }

        let (dates, daily) = daily_series(&hourly, first, zone);
        let skip = daily.iter().position(|v| *v > 0.0).unwrap_or(daily.len());
        for a in detect(&series, &daily[skip..], Period::Daily, opts) {
            let date = dates[skip + a.index];
            let start = day_start(date, zone).unwrap_or(first);
            // A day is reported when any of it is recent.
            if start + Duration::days(1) <= w.report_since {
                continue;
            }
            out.push(OpsAnomaly {
                metric,
                series: series.clone(),
                period: Period::Daily,
                start,
                date,
                hour: None,
                value: a.value,
                expected: a.baseline,
                score: a.score,
                sentence: format!(
                    "{kind} {name} on {date}: {} {noun}, {:.1} expected from the same weekday of earlier weeks",
                    a.value, a.baseline
                ),
            });
        }
    }
    out.sort_by(|a, b| b.start.cmp(&a.start).then_with(|| b.score.total_cmp(&a.score)));
    out
}

/// The first instant of a local date (the earliest, around a DST change).
fn day_start(date: NaiveDate, zone: Tz) -> Option<DateTime<Utc>> {
    use chrono::TimeZone;
    let midnight = date.and_hms_opt(0, 0, 0)?;
    zone.from_local_datetime(&midnight)
        .earliest()
        .or_else(|| {
            // Midnight skipped by DST: the day starts an hour later.
            zone.from_local_datetime(&(midnight + Duration::hours(1))).earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap()
            + Duration::days(i64::from(d))
            + Duration::hours(i64::from(h))
    }

    /// Five weeks of two holds a day at 09:00 and 10:00 UTC in AMS and DUS; on day 35 AMS
    /// has 15 more at 11:00.
    fn planted() -> Vec<HourlyCount> {
        let mut c = Vec::new();
        for d in 0..=35 {
            for wh in ["AMS", "DUS"] {
                for h in [9, 10] {
                    c.push(HourlyCount {
                        metric: Metric::ExceptionVolume,
                        series: format!("warehouse:{wh}"),
                        hour: utc(d, h),
                        count: 1.0,
                    });
                }
            }
        }
        c.push(HourlyCount {
            metric: Metric::ExceptionVolume,
            series: "warehouse:AMS".into(),
            hour: utc(35, 11),
            count: 15.0,
        });
        c
    }

    fn zone(series: &str) -> Option<Tz> {
        series.starts_with("warehouse:").then_some(chrono_tz::Europe::Amsterdam)
    }

    fn window(report_since: DateTime<Utc>) -> OpsWindow<'static> {
        OpsWindow { from: utc(0, 0), to: utc(36, 0), report_since, hold_age: Duration::hours(4), zone: &zone }
    }

    #[test]
    fn a_burst_is_found_hourly_and_daily_in_its_series_only() {
        let found = ops_anomalies(&planted(), &window(utc(30, 0)), &AnomalyOptions::default());
        assert!(found.iter().all(|a| a.series == "warehouse:AMS" && a.metric == Metric::ExceptionVolume), "{found:?}");
        let daily = found.iter().find(|a| a.period == Period::Daily).expect("the day");
        assert_eq!((daily.date, daily.value, daily.expected), (utc(35, 0).date_naive(), 17.0, 2.0));
        assert!(daily.sentence.contains("17 orders put on hold or into exception, 2.0 expected"), "{}", daily.sentence);
        let hourly = found.iter().find(|a| a.period == Period::Hourly).expect("the hour");
        // 11:00 UTC is 12:00 in Amsterdam on 5 November (CET).
        assert_eq!((hourly.start, hourly.hour, hourly.value), (utc(35, 11), Some(12), 15.0));
        assert_eq!(found.len(), 2);
    }

    #[test]
    fn older_anomalies_are_history_and_not_reported() {
        assert!(ops_anomalies(&planted(), &window(utc(36, 0)), &AnomalyOptions::default()).is_empty());
    }

    #[test]
    fn a_series_starting_late_is_not_compared_with_the_empty_weeks_before_it() {
        // A carrier with 5 failures every day, only for the last 10 days: not enough of its own
        // weeks to judge, so no alert although the weeks before were empty.
        let c: Vec<HourlyCount> = (26..36)
            .map(|d| HourlyCount {
                metric: Metric::BookingFailures,
                series: "carrier:dhl".into(),
                hour: utc(d, 14),
                count: 5.0,
            })
            .collect();
        assert!(ops_anomalies(&c, &window(utc(0, 0)), &AnomalyOptions::default()).is_empty());
    }

    #[test]
    fn daily_series_follow_the_local_calendar() {
        // 23:00 UTC on 1 October is already 2 October in Amsterdam.
        let mut hourly = vec![0.0; 48];
        hourly[23] = 1.0;
        let (dates, v) = daily_series(&hourly, utc(0, 0), chrono_tz::Europe::Amsterdam);
        assert_eq!(dates[0], utc(0, 0).date_naive());
        assert_eq!(v[1], 1.0);
        assert_eq!(v[0], 0.0);
    }

    #[test]
    fn metrics_have_stable_codes() {
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.code()), Some(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.code());
        }
        assert_eq!(Metric::parse("moon"), None);
    }
}
