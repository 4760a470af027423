//! Warehouses: where orders leave from, in which time zone, and by which cut-off per service
//! level. Cut-offs are local wall-clock times; all arithmetic converts through the IANA zone
//! so daylight-saving changes are handled by the zone database, not by us.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::vocab::ServiceLevel;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Warehouse {
    #[schema(example = "AMS")]
    pub code: String,
    #[serde(default)]
    #[schema(example = "Amsterdam DC")]
    pub name: String,
    /// ISO 3166-1 alpha-2.
    #[schema(example = "NL")]
    pub country: String,
    /// IANA time zone of the site, e.g. `Europe/Amsterdam`.
    #[schema(value_type = String, example = "Europe/Amsterdam")]
    pub timezone: Tz,
    /// Local cut-off time per service level, `HH:MM`. Levels without an entry use `default_cutoff`.
    #[schema(value_type = BTreeMap<String, String>)]
    #[serde(default, with = "cutoff_map")]
    pub cutoffs: BTreeMap<ServiceLevel, NaiveTime>,
    #[schema(value_type = String, example = "17:00")]
    #[serde(default = "default_cutoff", with = "hhmm")]
    pub default_cutoff: NaiveTime,
    /// Days on which trucks leave; defaults to Monday–Friday.
    #[schema(value_type = Vec<String>)]
    #[serde(default = "default_ship_days")]
    pub ship_days: Vec<Weekday>,
}

fn default_cutoff() -> NaiveTime {
    NaiveTime::from_hms_opt(17, 0, 0).unwrap_or(NaiveTime::MIN)
}

fn default_ship_days() -> Vec<Weekday> {
    vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri]
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WarehouseError {
    #[error("warehouse {0}: country must be an ISO 3166-1 alpha-2 code such as NL")]
    BadCountry(String),
    #[error("warehouse {0}: ship_days is empty, so nothing could ever leave")]
    NoShipDays(String),
    #[error("warehouse code {0} appears twice")]
    Duplicate(String),
    #[error("warehouse code must not be empty")]
    EmptyCode,
}

impl Warehouse {
    pub fn cutoff(&self, level: ServiceLevel) -> NaiveTime {
        self.cutoffs.get(&level).copied().unwrap_or(self.default_cutoff)
    }

    pub fn ships_on(&self, date: NaiveDate) -> bool {
        self.ship_days.contains(&date.weekday())
    }

    /// The last ship day on or before `date`.
    pub fn ship_day_on_or_before(&self, date: NaiveDate) -> NaiveDate {
        let mut d = date;
        // ship_days is validated non-empty, so a week back always finds one.
        for _ in 0..7 {
            if self.ships_on(d) {
                return d;
            }
            d = d.pred_opt().unwrap_or(d);
        }
        date
    }

    /// A local wall-clock time on a date as an instant. In a DST gap the time does not exist
    /// and we take the instant just after the gap; in a fold the earlier instant.
    pub fn local_instant(&self, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
        let naive = date.and_time(time);
        match self.timezone.from_local_datetime(&naive) {
            LocalResult::Single(t) => t.with_timezone(&Utc),
            LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
            LocalResult::None => {
                let later = naive + chrono::Duration::hours(1);
                match self.timezone.from_local_datetime(&later) {
                    LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
                    LocalResult::None => Utc.from_utc_datetime(&naive),
                }
            }
        }
    }

    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.timezone).date_naive()
    }

    pub fn validate(&self) -> Result<(), WarehouseError> {
        if self.code.trim().is_empty() {
            return Err(WarehouseError::EmptyCode);
        }
        if self.country.len() != 2 || !self.country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(WarehouseError::BadCountry(self.code.clone()));
        }
        if self.ship_days.is_empty() {
            return Err(WarehouseError::NoShipDays(self.code.clone()));
        }
        Ok(())
    }
}

/// The configured warehouses, looked up by code.
#[derive(Debug, Clone, Default)]
pub struct Warehouses {
    by_code: BTreeMap<String, Warehouse>,
}

impl Warehouses {
    pub fn new(list: Vec<Warehouse>) -> Result<Self, WarehouseError> {
        let mut by_code = BTreeMap::new();
        for w in list {
            w.validate()?;
            let code = w.code.clone();
            if by_code.insert(code.clone(), w).is_some() {
                return Err(WarehouseError::Duplicate(code));
            }
        }
        Ok(Warehouses { by_code })
    }

    pub fn get(&self, code: &str) -> Option<&Warehouse> {
        self.by_code.get(code)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Warehouse> {
        self.by_code.values()
    }

    pub fn len(&self) -> usize {
        self.by_code.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_code.is_empty()
    }
}

mod hhmm {
    use chrono::NaiveTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &NaiveTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.format("%H:%M").to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    pub fn parse(s: &str) -> Result<NaiveTime, String> {
        NaiveTime::parse_from_str(s, "%H:%M")
            .map_err(|_| format!("`{s}` is not a time of day in HH:MM form, e.g. 17:00"))
    }
}

mod cutoff_map {
    use std::collections::BTreeMap;

    use chrono::NaiveTime;
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeMap};

    use crate::vocab::ServiceLevel;

    pub fn serialize<S: Serializer>(m: &BTreeMap<ServiceLevel, NaiveTime>, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(m.len()))?;
        for (k, v) in m {
            map.serialize_entry(k.code(), &v.format("%H:%M").to_string())?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<ServiceLevel, NaiveTime>, D::Error> {
        let raw = BTreeMap::<String, String>::deserialize(d)?;
        let mut out = BTreeMap::new();
        for (k, v) in raw {
            let level = ServiceLevel::from_code(&k).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown service level `{k}` in cutoffs; use one of same_day, next_day, express, standard, economy"
                ))
            })?;
            out.insert(level, super::hhmm::parse(&v).map_err(serde::de::Error::custom)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn ams() -> Warehouse {
        serde_json::from_value(serde_json::json!({
            "code": "AMS", "country": "NL", "timezone": "Europe/Amsterdam",
            "cutoffs": {"same_day": "12:00", "next_day": "17:00"}
        }))
        .unwrap()
    }

    #[test]
    fn cutoff_falls_back_to_default() {
        let w = ams();
        assert_eq!(w.cutoff(ServiceLevel::SameDay), NaiveTime::from_hms_opt(12, 0, 0).unwrap());
        assert_eq!(w.cutoff(ServiceLevel::Economy), NaiveTime::from_hms_opt(17, 0, 0).unwrap());
    }

    #[test]
    fn local_instant_follows_dst() {
        let w = ams();
        let winter =
            w.local_instant(NaiveDate::from_ymd_opt(2026, 1, 15).unwrap(), NaiveTime::from_hms_opt(17, 0, 0).unwrap());
        let summer =
            w.local_instant(NaiveDate::from_ymd_opt(2026, 7, 15).unwrap(), NaiveTime::from_hms_opt(17, 0, 0).unwrap());
        assert_eq!(winter.to_rfc3339(), "2026-01-15T16:00:00+00:00");
        assert_eq!(summer.to_rfc3339(), "2026-07-15T15:00:00+00:00");
        // 02:30 on the spring-forward night does not exist locally: the instant after the gap.
        let gap =
            w.local_instant(NaiveDate::from_ymd_opt(2026, 3, 29).unwrap(), NaiveTime::from_hms_opt(2, 30, 0).unwrap());
        assert_eq!(gap.to_rfc3339(), "2026-03-29T01:30:00+00:00");
    }

    #[test]
    fn ship_day_skips_weekends() {
        let w = ams();
        let sunday = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        assert_eq!(w.ship_day_on_or_before(sunday), NaiveDate::from_ymd_opt(2026, 11, 27).unwrap());
    }

    #[test]
    fn bad_config_is_refused() {
        let mut w = ams();
        w.country = "nl".into();
        assert_eq!(w.validate(), Err(WarehouseError::BadCountry("AMS".into())));
        let bad: Result<Warehouse, _> = serde_json::from_value(serde_json::json!({
            "code": "X", "country": "NL", "timezone": "Europe/Amsterdam", "cutoffs": {"warp": "10:00"}
        }));
        assert!(bad.unwrap_err().to_string().contains("unknown service level `warp`"));
        assert!(Warehouses::new(vec![ams(), ams()]).is_err());
    }
}
