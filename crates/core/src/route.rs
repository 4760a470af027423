//! Route density: which orders travel together. Orders to the same **postcode area** in the same
//! **wave** share a truck run, so a dispatcher picks them together; the policy can weigh how
//! many there are (`route.density`).
//!
//! - **Postcode area**: the country and the leading characters of the postcode, uppercased,
//!   spaces and punctuation dropped: the outward letters for GB (`SW1A 1AA` → `GB-SW`), the
//!   first three for the US (sectional centre), CA (forward sortation area) and IE (Eircode
//!   routing key), the first two everywhere else (`1012 LG` → `NL-10`, `80331` → `DE-80`).
//! - **Wave**: the warehouse and the latest departure (the cut-off slot on the ship-by date):
//!   `AMS@2026-11-30T17:00Z`. Orders of different service levels with different cut-offs
//!   leave with different pickups, so they are different waves.
//! - **Members** of a wave are its orders that are `released` or `booked` (not yet departed).

use chrono::{DateTime, Utc};

use crate::order::{Order, OrderFacts};
use crate::vocab::OrderState;

/// The postcode area of an address, e.g. `NL-10`.
pub fn postcode_area(country: &str, postcode: &str) -> String {
    let norm = postcode.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_uppercase());
    let lead: String = match country {
        "GB" => norm.take_while(char::is_ascii_alphabetic).take(2).collect(),
        "US" | "CA" | "IE" => norm.take(3).collect(),
        _ => norm.take(2).collect(),
    };
    format!("{country}-{lead}")
}

/// The wave of an order: warehouse and latest departure, e.g. `AMS@2026-11-30T17:00Z`.
pub fn wave(warehouse: &str, latest_departure: DateTime<Utc>) -> String {
    format!("{warehouse}@{}", latest_departure.format("%Y-%m-%dT%H:%MZ"))
}

/// The route key: postcode area and wave, e.g. `NL-10|AMS@2026-11-30T17:00Z`.
pub fn route_key(facts: &OrderFacts, latest_departure: DateTime<Utc>) -> String {
    format!(
        "{}|{}",
        postcode_area(&facts.ship_to.country, &facts.ship_to.postcode),
        wave(&facts.warehouse, latest_departure)
    )
}

/// Whether an order in `state` is a member of its wave (counts toward its density).
pub fn counts_in_wave(state: OrderState) -> bool {
    matches!(state, OrderState::Released | OrderState::Booked)
}

/// The route key an order is counted under, when it is a member of a wave: what the store
/// keeps in `orders.route_key` (NULL otherwise).
pub fn member_key(o: &Order) -> Option<String> {
    let at = o.latest_departure?;
    counts_in_wave(o.state).then(|| route_key(&o.facts, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn areas_follow_each_countrys_postcode_structure() {
        assert_eq!(postcode_area("NL", "1012 LG"), "NL-10");
        assert_eq!(postcode_area("NL", "1012lg"), "NL-10");
        assert_eq!(postcode_area("DE", "80331"), "DE-80");
        assert_eq!(postcode_area("GB", "SW1A 1AA"), "GB-SW");
        assert_eq!(postcode_area("GB", "m1 1ae"), "GB-M");
        assert_eq!(postcode_area("US", "94105-1804"), "US-941");
        assert_eq!(postcode_area("CA", "K1A 0B1"), "CA-K1A");
        assert_eq!(postcode_area("IE", "D02 X285"), "IE-D02");
        assert_eq!(postcode_area("PL", "00-950"), "PL-00");
        assert_eq!(postcode_area("NL", ""), "NL-");
    }

    #[test]
    fn a_wave_is_warehouse_and_departure_slot() {
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 17, 0, 0).unwrap();
        assert_eq!(wave("AMS", at), "AMS@2026-11-30T17:00Z");
        let later = Utc.with_ymd_and_hms(2026, 11, 30, 11, 0, 0).unwrap();
        assert_ne!(wave("AMS", at), wave("AMS", later), "another cut-off slot is another wave");
        assert_ne!(wave("AMS", at), wave("DUS", at));
    }

    #[test]
    fn only_released_and_booked_orders_are_members() {
        for s in OrderState::ALL {
            let member = matches!(s, OrderState::Released | OrderState::Booked);
            assert_eq!(counts_in_wave(*s), member, "{s}");
        }
    }
}
