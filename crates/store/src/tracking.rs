//! Tracking number → (order id, carrier), as found by a store's lookup or written by its
//! writer (a booking). A carrier sends many events per shipment (label, pick-up, every hub,
//! delivery), and each used to cost a database read to find its order.
//!
//! Entries never go stale in a way that matters: a booking's tracking number never changes, and
//! should a shipment be booked again under a new number, the order's own check
//! (`decide_tracking` compares the numbers) refuses an event that still comes in for the old
//! one.

use std::collections::HashMap;
use std::sync::Mutex;

/// Most entries kept (about 100 bytes each); past it the cache starts again empty.
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub(crate) struct TrackingCache {
    found: Mutex<Found>,
}

type Found = HashMap<String, (String, String)>;

impl TrackingCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Found> {
        self.found.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, tracking_number: &str) -> Option<(String, String)> {
        self.lock().get(tracking_number).cloned()
    }

    /// Keeps what a lookup found (a miss is not kept: the shipment may be booked any moment).
    pub(crate) fn keep(&self, tracking_number: &str, found: &Option<(String, String)>) {
        let Some(hit) = found else { return };
        put(&mut self.lock(), tracking_number, hit.clone());
    }

    /// Keeps the shipments of the orders a writer just committed, so that even a shipment's
    /// first tracking event finds its order without a read (on the node that booked it).
    pub(crate) fn learn(&self, committed: &[Result<crate::WriteOutcome, crate::StoreError>]) {
        let mut shipments = committed
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .filter_map(|w| w.order.shipment.as_ref().map(|s| (&w.order.id, s)))
            .peekable();
        if shipments.peek().is_none() {
            return;
        }
        let mut cache = self.lock();
        for (order_id, s) in shipments {
            // Every tracking event's order has its shipment: most are known already.
            if !cache.contains_key(&s.tracking_number) {
                put(&mut cache, &s.tracking_number, (order_id.clone(), s.carrier.clone()));
            }
        }
    }
}

fn put(cache: &mut Found, tracking_number: &str, hit: (String, String)) {
    if cache.len() >= MAX_ENTRIES {
        cache.clear();
    }
    cache.insert(tracking_number.to_string(), hit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_hits_not_misses() {
        let cache = TrackingCache::default();
        cache.keep("TRK-1", &None);
        assert_eq!(cache.get("TRK-1"), None);
        cache.keep("TRK-1", &Some(("o-1".into(), "mock".into())));
        assert_eq!(cache.get("TRK-1"), Some(("o-1".into(), "mock".into())));
    }

    #[test]
    fn starts_again_when_full() {
        let cache = TrackingCache::default();
        for i in 0..MAX_ENTRIES {
            cache.keep(&format!("T{i}"), &Some((format!("o{i}"), "c".into())));
        }
        assert!(cache.get("T0").is_some());
        cache.keep("last", &Some(("o".into(), "c".into())));
        assert_eq!(cache.get("T0"), None);
        assert!(cache.get("last").is_some());
    }

    /// The writers teach the cache every committed order's shipment; orders without one and
    /// refused writes teach nothing.
    #[test]
    fn learns_the_shipments_of_committed_orders() {
        let order = |id: &str, tracking: Option<&str>| {
            let mut o: dispatch_core::Order = serde_json::from_value(serde_json::json!({
                "id": id, "version": 1, "state": "booked", "priority": 0, "hold_reasons": [],
                "source": "s", "external_id": id, "warehouse": "AMS", "customer": {"id": "C"},
                "service_level": "next_day", "promised_date": "2026-11-27",
                "ship_to": {"name": "A", "street": "S 1", "city": "C", "postcode": "1012 LG", "country": "NL"},
                "lines": [{"sku": "P", "qty": 1, "qty_allocated": 1}],
                "created_at": "2026-11-27T08:00:00Z", "updated_at": "2026-11-27T08:00:00Z",
                "state_since": "2026-11-27T08:00:00Z"
            }))
            .unwrap();
            o.shipment = tracking
                .map(|t| serde_json::from_value(serde_json::json!({"carrier": "mock", "tracking_number": t})).unwrap());
            Ok(crate::WriteOutcome { order: o, created: false, appended: 1, replayed: false })
        };
        let cache = TrackingCache::default();
        cache.learn(&[
            order("o-1", Some("TRK-1")),
            order("o-2", None),
            Err(crate::StoreError::Unavailable("refused".into())),
        ]);
        assert_eq!(cache.get("TRK-1"), Some(("o-1".into(), "mock".into())));
        assert_eq!(cache.lock().len(), 1);
    }
}
