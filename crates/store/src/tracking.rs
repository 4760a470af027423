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
    found: Mutex<HashMap<String, (String, String)>>,
}

impl TrackingCache {
    pub(crate) fn get(&self, tracking_number: &str) -> Option<(String, String)> {
        self.found.lock().unwrap_or_else(|p| p.into_inner()).get(tracking_number).cloned()
    }

    /// Keeps what a lookup found (a miss is not kept: the shipment may be booked any moment).
    pub(crate) fn keep(&self, tracking_number: &str, found: &Option<(String, String)>) {
        let Some(hit) = found else { return };
        let mut cache = self.found.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
        cache.insert(tracking_number.to_string(), hit.clone());
    }

    /// Keeps the shipments of orders just committed, so that even a shipment's first tracking
    /// event finds its order without a read (on the node that booked it).
    pub(crate) fn learn<'o>(&self, orders: impl Iterator<Item = &'o dispatch_core::Order>) {
        let mut cache = None;
        for o in orders {
            let Some(s) = &o.shipment else { continue };
            let cache = cache.get_or_insert_with(|| self.found.lock().unwrap_or_else(|p| p.into_inner()));
            if cache.contains_key(&s.tracking_number) {
                continue;
            }
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
            cache.insert(s.tracking_number.clone(), (o.id.clone(), s.carrier.clone()));
        }
    }
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
}
