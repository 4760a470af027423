//! A deterministic generator of dispatch history for the demo's three warehouses, with
//! planted, known effects, so the risk model and the hotspot search can be measured against
//! the truth. Every record carries the probability its outcome was drawn from.
//!
//! The true late probability depends only on facts in the record (known at release), so the
//! best achievable model is the true probability itself; the outcome's coin flip is the noise.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;

use crate::history::{DispatchRecord, ReleaseFacts, shift_of};

/// Product family × destination region × carrier combinations that depart late far more often.
pub const PLANTED_ROUTE_HOTSPOTS: &[(&str, &str, &str)] =
    &[("pumps", "GB", "dhl_freight"), ("valves", "PL", "dpd"), ("sensors", "FR", "ups")];
/// Warehouse × shift combinations that depart late far more often.
pub const PLANTED_SHIFT_HOTSPOTS: &[(&str, &str)] = &[("MAN", "night")];

const FAMILIES: &[&str] =
    &["pumps", "valves", "filters", "motors", "bearings", "seals", "sensors", "cables", "batteries", "chemicals"];

struct Site {
    code: &'static str,
    zone: Tz,
    /// Orders per ship day at scale 1.
    volume: f64,
    /// Backlog the warehouse handles without strain.
    capacity: f64,
    regions: &'static [(&'static str, u32)],
    /// Local cut-off (hour, minute) per service level.
    cutoffs: [(&'static str, u32, u32); 5],
}

const SITES: &[Site] = &[
    Site {
        code: "AMS",
        zone: chrono_tz::Europe::Amsterdam,
        volume: 420.0,
        capacity: 120.0,
        regions: &[
            ("NL", 55),
            ("BE", 15),
            ("DE", 10),
            ("FR", 8),
            ("GB", 4),
            ("PL", 3),
            ("ES", 2),
            ("IT", 2),
            ("US", 1),
        ],
        cutoffs: [
            ("same_day", 12, 0),
            ("next_day", 17, 0),
            ("express", 16, 0),
            ("standard", 18, 0),
            ("economy", 18, 0),
        ],
    },
    Site {
        code: "DUS",
        zone: chrono_tz::Europe::Berlin,
        volume: 340.0,
        capacity: 100.0,
        regions: &[("DE", 60), ("PL", 12), ("NL", 8), ("FR", 6), ("CH", 6), ("IT", 4), ("BE", 2), ("ES", 2)],
        cutoffs: [
            ("same_day", 11, 30),
            ("next_day", 17, 30),
            ("express", 16, 0),
            ("standard", 18, 0),
            ("economy", 18, 0),
        ],
    },
    Site {
        code: "MAN",
        zone: chrono_tz::Europe::London,
        volume: 300.0,
        capacity: 90.0,
        regions: &[("GB", 75), ("US", 6), ("NL", 5), ("FR", 5), ("DE", 4), ("ES", 3), ("IT", 2)],
        cutoffs: [
            ("same_day", 11, 0),
            ("next_day", 16, 30),
            ("express", 15, 30),
            ("standard", 17, 0),
            ("economy", 17, 0),
        ],
    },
];

const PARCEL_CARRIERS: &[&str] = &["dhl", "dpd", "ups", "gls", "postnl"];
const ALL_CARRIERS: &[&str] = &["dhl", "dpd", "ups", "gls", "postnl", "dhl_freight"];

/// What to generate. `scale` multiplies the daily volume (1.0 ≈ 1,060 orders per ship day).
#[derive(Debug, Clone)]
pub struct HistorySpec {
    pub seed: u64,
    /// Last day of history (inclusive).
    pub end: NaiveDate,
    pub days: u32,
    pub scale: f64,
}

impl Default for HistorySpec {
    fn default() -> Self {
        HistorySpec { seed: 42, end: NaiveDate::from_ymd_opt(2026, 10, 31).expect("valid date"), days: 730, scale: 1.0 }
    }
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, weighted: &'a [(T, u32)]) -> &'a T {
    let total: u32 = weighted.iter().map(|(_, w)| w).sum();
    let mut n = rng.random_range(0..total);
    for (item, w) in weighted {
        if n < *w {
            return item;
        }
        n -= w;
    }
    &weighted[weighted.len() - 1].0
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn local_to_utc(zone: Tz, t: NaiveDateTime) -> DateTime<Utc> {
    // A wall time inside a DST gap does not exist; an hour later does.
    zone.from_local_datetime(&t)
        .earliest()
        .or_else(|| zone.from_local_datetime(&(t + Duration::hours(1))).earliest())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&t))
}

fn is_ship_day(d: NaiveDate) -> bool {
    !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

/// Seasonal load: the November–December peak, and a quieter August.
fn season(d: NaiveDate) -> f64 {
    match d.month() {
        11 => 1.25,
        12 => 1.35,
        8 => 0.85,
        _ => 1.0,
    }
}

impl HistorySpec {
    pub fn start(&self) -> NaiveDate {
        self.end - Duration::days(i64::from(self.days) - 1)
    }

    /// The days each carrier had an outage (booking failures, missed pick-ups), from their own
    /// random stream so they do not depend on volume.
    pub fn outage_days(&self) -> Vec<(NaiveDate, &'static str)> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x07a6e_u64);
        let mut out = Vec::new();
        for i in 0..self.days {
            let day = self.start() + Duration::days(i64::from(i));
            for carrier in ALL_CARRIERS {
                if rng.random_bool(0.015) && is_ship_day(day) {
                    out.push((day, *carrier));
                }
            }
        }
        out
    }

    /// The history, in release order per day and warehouse.
    pub fn generate(&self) -> Vec<DispatchRecord> {
        let outages: std::collections::HashSet<(NaiveDate, &str)> = self.outage_days().into_iter().collect();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut out = Vec::with_capacity((self.days as f64 * 760.0 * self.scale) as usize);
        for i in 0..self.days {
            let day = self.start() + Duration::days(i64::from(i));
            if !is_ship_day(day) {
                continue;
            }
            let weekday = day.weekday().num_days_from_monday();
            let weekly = match weekday {
                0 => 1.2,
                4 => 0.9,
                _ => 1.0,
            };
            for site in SITES {
                // The day's load: how busy the floor is, which drives the backlog.
                let load: f64 = season(day) * weekly * (0.25 * (rng.random::<f64>() - 0.5) + 1.0);
                let n = (site.volume * self.scale * load * rng.random_range(0.85..1.15)).round() as u32;
                let mut seq = 0u32;
                for _ in 0..n {
                    seq += 1;
                    out.push(self.one(&mut rng, site, day, weekday, load, seq, &outages));
                }
            }
        }
        out.sort_by(|a, b| {
            a.facts.released_at.cmp(&b.facts.released_at).then_with(|| a.facts.order_id.cmp(&b.facts.order_id))
        });
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn one(
        &self,
        rng: &mut ChaCha8Rng,
        site: &Site,
        day: NaiveDate,
        weekday: u32,
        load: f64,
        seq: u32,
        outages: &std::collections::HashSet<(NaiveDate, &str)>,
    ) -> DispatchRecord {
        let region = *pick(rng, site.regions);
        let family = FAMILIES[rng.random_range(0..FAMILIES.len())];
        let (service, svc_logit) = *pick(
            rng,
            &[
                (("same_day", 0.6), 10),
                (("next_day", 0.0), 35),
                (("express", 0.3), 5),
                (("standard", -0.2), 40),
                (("economy", -0.4), 10),
            ],
        );
        let mode = *pick(rng, &[("parcel", 72), ("ltl", 20), ("courier", 5), ("own_fleet", 3)]);
        let carrier: &str = match mode {
            "ltl" => {
                if rng.random_bool(0.8) {
                    "dhl_freight"
                } else {
                    "dpd"
                }
            }
            "own_fleet" => "own_fleet",
            _ => {
                let local = matches!(region, "NL" | "BE");
                let weights: &[(&str, u32)] = if local {
                    &[("dhl", 25), ("dpd", 20), ("ups", 15), ("gls", 10), ("postnl", 30)]
                } else {
                    &[("dhl", 30), ("dpd", 30), ("ups", 25), ("gls", 15)]
                };
                let c = *pick(rng, weights);
                debug_assert!(PARCEL_CARRIERS.contains(&c));
                c
            }
        };
        // Release time: mostly the early shift, some late, a few at night.
        let hour: u32 = match *pick(rng, &[(0u8, 60), (1, 30), (2, 10)]) {
            0 => rng.random_range(6..14),
            1 => rng.random_range(14..22),
            _ => *[22u32, 23, 0, 1, 2, 3, 4, 5].choose(rng).unwrap_or(&22),
        };
        let minute: u32 = rng.random_range(0..60);
        let release_local = day.and_time(NaiveTime::from_hms_opt(hour, minute, 0).unwrap_or(NaiveTime::MIN));
        let (_, ch, cm) = site.cutoffs.iter().find(|(s, _, _)| *s == service).copied().unwrap_or(("", 17, 0));
        let cutoff_time = NaiveTime::from_hms_opt(ch, cm, 0).unwrap_or(NaiveTime::MIN);
        // The planned ship date: today if the cut-off is still ahead, else the next ship day.
        let mut ship_date = day;
        if release_local.time() >= cutoff_time {
            ship_date += Duration::days(1);
        }
        while !is_ship_day(ship_date) {
            ship_date += Duration::days(1);
        }
        let cutoff_local = ship_date.and_time(cutoff_time);
        let released_at = local_to_utc(site.zone, release_local);
        let cutoff_at = local_to_utc(site.zone, cutoff_local);
        let hours_to_cutoff = (cutoff_at - released_at).num_minutes() as f64 / 60.0;

        let intraday = match hour {
            6..=9 => 0.7,
            10..=15 => 1.1,
            16..=21 => 0.9,
            _ => 0.8,
        };
        let backlog = (site.capacity * load * intraday * rng.random_range(0.7..1.3)).round().max(0.0) as u32;
        let outage = outages.contains(&(day, carrier));
        let failures: u32 = if outage { rng.random_range(3..16) } else { *pick(rng, &[(0u32, 88), (1, 9), (2, 3)]) };
        let lines = *pick(rng, &[(1u32, 45), (2, 25), (3, 15), (4, 10), (6, 5)]);
        let hazmat = matches!(family, "batteries" | "chemicals") && rng.random_bool(0.5);
        let weight: f64 = f64::from(lines) * rng.random_range(0.5..30.0);
        let value: f64 = f64::from(lines) * rng.random_range(20.0..900.0);
        let shift = shift_of(hour);

        let mut logit = -2.75 + svc_logit;
        logit += 2.2 * (-hours_to_cutoff.max(0.0) / 2.0).exp();
        logit += 1.6 * (f64::from(backlog) / site.capacity - 1.0);
        logit += match weekday {
            0 => 0.35,
            4 => 0.25,
            _ => 0.0,
        };
        logit += match shift {
            "night" => 0.3,
            "late" => 0.15,
            _ => 0.0,
        };
        if PLANTED_SHIFT_HOTSPOTS.contains(&(site.code, shift)) {
            logit += 1.6;
        }
        logit += 0.06 * f64::from(lines - 1);
        if hazmat {
            logit += 0.35;
        }
        if mode == "ltl" {
            logit += 0.2;
        }
        logit += match carrier {
            "gls" => 0.1,
            "postnl" => -0.1,
            _ => 0.0,
        };
        if outage {
            logit += 2.2;
        }
        if PLANTED_ROUTE_HOTSPOTS.contains(&(family, region, carrier)) {
            logit += 2.0;
        }
        let p = sigmoid(logit);
        let late = rng.random_bool(p);
        let hours_late = if late { 0.25 + -4.0 * (1.0 - rng.random::<f64>()).ln() } else { 0.0 };
        let departed_at = if late {
            cutoff_at + Duration::minutes((hours_late * 60.0) as i64)
        } else {
            let early_min = (hours_to_cutoff.clamp(0.25, 6.0) * 60.0) as i64;
            cutoff_at - Duration::minutes(rng.random_range(5..=early_min.max(6)))
        };
        let shipped_after_promise = late && rng.random_bool(0.6);
        let facts = ReleaseFacts {
            order_id: format!("{}/OUT/{}-{:05}", site.code, day.format("%y%m%d"), seq),
            warehouse: site.code.into(),
            carrier: carrier.into(),
            product_family: family.into(),
            region: region.into(),
            service_level: service.into(),
            transport_mode: mode.into(),
            released_at,
            release_local,
            hours_to_cutoff: Some((hours_to_cutoff * 100.0).round() / 100.0),
            backlog_at_release: if rng.random_bool(0.01) { None } else { Some(backlog) },
            carrier_failures_6h: Some(failures),
            lines,
            weight_kg: if rng.random_bool(0.03) { None } else { Some((weight * 10.0).round() / 10.0) },
            hazmat,
            order_value: if rng.random_bool(0.02) { None } else { Some((value * 100.0).round() / 100.0) },
        };
        DispatchRecord {
            facts,
            departed_at: Some(departed_at),
            departed_late: late,
            shipped_after_promise,
            hours_late: (hours_late * 100.0).round() / 100.0,
            true_late_probability: Some(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_history() {
        let spec = HistorySpec { days: 20, scale: 0.1, ..Default::default() };
        assert_eq!(spec.generate(), spec.generate());
        let other = HistorySpec { seed: 7, ..spec.clone() };
        assert_ne!(spec.generate(), other.generate());
    }

    #[test]
    fn history_is_realistic() {
        let spec = HistorySpec { days: 120, scale: 0.2, ..Default::default() };
        let recs = spec.generate();
        let late = recs.iter().filter(|r| r.departed_late).count() as f64 / recs.len() as f64;
        assert!((0.08..0.25).contains(&late), "late rate {late}");
        for w in ["AMS", "DUS", "MAN"] {
            assert!(recs.iter().filter(|r| r.facts.warehouse == w).count() > 1000, "{w}");
        }
        // Every planted combination occurs often enough to be found.
        for (f, r, c) in PLANTED_ROUTE_HOTSPOTS {
            let n = recs
                .iter()
                .filter(|x| x.facts.product_family == *f && x.facts.region == *r && x.facts.carrier == *c)
                .count();
            assert!(n >= 15, "{f}/{r}/{c}: {n}");
        }
        assert!(recs.windows(2).all(|w| w[0].facts.released_at <= w[1].facts.released_at));
        assert!(recs.iter().all(|r| r.facts.hours_to_cutoff.is_some_and(|h| h > 0.0)));
        assert!(!spec.outage_days().is_empty());
    }
}
