//! The route-density table `route.density` is read from: for each route key (postcode area
//! and wave, see `dispatch_core::route`) the orders that are members of it, as the store last
//! listed them. The server refreshes it (the priority sweep, and a cheap per-node refresh);
//! an evaluation only reads it, so the crate still does no I/O. A table that was never filled
//! gives every order a density of 1 (itself).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// Members by route key; a member is `source` and `external_id` (the order's natural key, what
/// an evaluation sees).
pub type Members = HashMap<String, HashSet<String>>;

#[derive(Debug, Default)]
pub struct RouteDensities {
    members: RwLock<Arc<Members>>,
}

fn member(source: &str, external_id: &str) -> String {
    format!("{source}\u{1f}{external_id}")
}

/// Splits a member back into `(source, external_id)`.
pub fn natural_key(member: &str) -> Option<(&str, &str)> {
    member.split_once('\u{1f}')
}

impl RouteDensities {
    /// Orders of the route `key` that are members, `(source, external_id)` included or not:
    /// the density is the others plus the order itself.
    pub fn density(&self, key: &str, source: &str, external_id: &str) -> u32 {
        let m = self.snapshot();
        let others = m.get(key).map_or(0, |set| set.len() - usize::from(set.contains(&member(source, external_id))));
        u32::try_from(others).unwrap_or(u32::MAX).saturating_add(1)
    }

    pub fn snapshot(&self) -> Arc<Members> {
        self.members.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the table with `(route key, source, external_id)` rows and returns the members
    /// (natural keys) of every route whose membership changed: their density did.
    pub fn replace(&self, rows: impl IntoIterator<Item = (String, String, String)>) -> Vec<String> {
        let mut next = Members::new();
        for (key, source, external_id) in rows {
            next.entry(key).or_default().insert(member(&source, &external_id));
        }
        let before = self.snapshot();
        let mut touched: Vec<String> = next
            .iter()
            .filter(|(k, set)| before.get(*k) != Some(*set))
            .flat_map(|(_, set)| set.iter().cloned())
            .collect();
        touched.sort();
        self.set(Arc::new(next));
        touched
    }

    /// Takes over another table's contents (a policy change keeps the counts).
    pub fn set(&self, members: Arc<Members>) {
        *self.members.write().unwrap_or_else(|p| p.into_inner()) = members;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(k: &str, id: &str) -> (String, String, String) {
        (k.to_string(), "odoo".to_string(), id.to_string())
    }

    #[test]
    fn density_counts_the_others_and_the_order_itself() {
        let t = RouteDensities::default();
        assert_eq!(t.density("NL-10|AMS@x", "odoo", "A"), 1, "an empty table: the order alone");
        t.replace([row("NL-10|AMS@x", "A"), row("NL-10|AMS@x", "B"), row("NL-20|AMS@x", "C")]);
        assert_eq!(t.density("NL-10|AMS@x", "odoo", "A"), 2, "A is counted once");
        assert_eq!(t.density("NL-10|AMS@x", "odoo", "Z"), 3, "a new order joins the two");
        assert_eq!(t.density("NL-20|AMS@x", "odoo", "C"), 1);
        assert_eq!(t.density("NL-10|AMS@x", "erp2", "A"), 3, "the natural key includes the source");
    }

    #[test]
    fn replace_names_the_members_of_changed_routes_only() {
        let t = RouteDensities::default();
        let first = t.replace([row("k1", "A"), row("k1", "B"), row("k2", "C")]);
        assert_eq!(first.len(), 3);
        // D joins k1; k2 is unchanged.
        let mut changed = t.replace([row("k1", "A"), row("k1", "B"), row("k1", "D"), row("k2", "C")]);
        changed.sort();
        let ids: Vec<&str> = changed.iter().filter_map(|m| natural_key(m)).map(|(_, e)| e).collect();
        assert_eq!(ids, ["A", "B", "D"]);
        // C leaves k2 (booked and departed): nothing left to re-evaluate there.
        let changed = t.replace([row("k1", "A"), row("k1", "B"), row("k1", "D")]);
        assert!(changed.is_empty(), "{changed:?}");
    }
}
