//! The tamper-evident audit chain: each entry commits (SHA-256) to its own content and to the
//! hash of the entry before it, so changing, removing or reordering any stored entry breaks
//! the chain at that entry. Pure: the store appends and reads, [`verify`] judges.
//!
//! The hash is over a canonical encoding (a domain tag, then every field length-prefixed, an
//! absent value distinct from an empty one), never over JSON, so it does not depend on a
//! serializer's choices. The position (`seq`) is not hashed: the chain links give the order,
//! which is what lets [`verify`] tell a reordered entry from a changed one.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const DOMAIN: &[u8] = b"dispatchd-audit-v1";

/// What an entry says, before it has a place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditDraft {
    /// Microsecond precision (what the store keeps).
    pub at: DateTime<Utc>,
    /// `user:<name>`, `token:<name>`, `system:<part>`, `cli:<os user>`.
    pub actor: String,
    pub roles: Vec<String>,
    pub request_id: Option<String>,
    /// What was done: an event kind (`order.evaluated`) or `policy.changed`, `token.created`, ….
    pub action: String,
    /// What it was done to: `order:<id>@<version>`, `token:<id>`, `user:<name>`, `policy`.
    pub subject: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// An entry as stored: the draft, its position and its links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    #[serde(flatten)]
    pub draft: AuditDraft,
    pub prev_hash: String,
    pub hash: String,
}

fn field(h: &mut Sha256, bytes: Option<&[u8]>) {
    match bytes {
        None => h.update([0u8]),
        Some(b) => {
            h.update([1u8]);
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        }
    }
}

/// The hash of an entry with this content following `prev_hash`.
pub fn entry_hash(prev_hash: &str, d: &AuditDraft) -> String {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    field(&mut h, Some(prev_hash.as_bytes()));
    field(&mut h, Some(&d.at.timestamp_micros().to_be_bytes()));
    field(&mut h, Some(d.actor.as_bytes()));
    h.update((d.roles.len() as u64).to_be_bytes());
    for r in &d.roles {
        field(&mut h, Some(r.as_bytes()));
    }
    field(&mut h, d.request_id.as_deref().map(str::as_bytes));
    field(&mut h, Some(d.action.as_bytes()));
    field(&mut h, Some(d.subject.as_bytes()));
    field(&mut h, d.before.as_deref().map(str::as_bytes));
    field(&mut h, d.after.as_deref().map(str::as_bytes));
    hex(&h.finalize())
}

/// SHA-256 of a stored value, for entries that commit to data kept elsewhere (an event's
/// JSON): `sha256:<hex>`.
pub fn digest(data: &str) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data.as_bytes())))
}

/// Lowercase hex, as stored in every audit entry (the writer computes two per event).
fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Appends drafts after the head `(seq, hash)`; returns the entries and the new head.
pub fn chain(head: (i64, String), drafts: impl IntoIterator<Item = AuditDraft>) -> (Vec<AuditEntry>, (i64, String)) {
    let (mut seq, mut prev) = head;
    let mut out = Vec::new();
    for d in drafts {
        seq += 1;
        let hash = entry_hash(&prev, &d);
        out.push(AuditEntry { seq, draft: d, prev_hash: std::mem::replace(&mut prev, hash.clone()), hash });
    }
    (out, (seq, prev))
}

/// The first place the stored chain is not what was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Break {
    /// The entry's content (or its stored hash) was changed.
    Modified { seq: i64 },
    /// Entries `from..=to` are missing: a gap in the positions.
    Removed { from: i64, to: i64 },
    /// The entry stands at the wrong place: it links to an entry stored later (`follows`).
    Reordered { seq: i64, follows: i64 },
    /// The entry does not link to the one before it, and its predecessor is nowhere: the entry
    /// before it was removed (the rest renumbered), or changed and re-hashed.
    Unlinked { seq: i64 },
    /// The chain ends before the recorded head: the last entries were removed.
    Truncated { last: i64, head: i64 },
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Break::Modified { seq } => write!(f, "entry {seq} was modified (its hash does not match its content)"),
            Break::Removed { from, to } if from == to => write!(f, "entry {from} was removed"),
            Break::Removed { from, to } => write!(f, "entries {from} to {to} were removed"),
            Break::Reordered { seq, follows } => {
                write!(f, "entry {seq} was reordered (it was written after entry {follows})")
            }
            Break::Unlinked { seq } => {
                write!(
                    f,
                    "entry {seq} does not link to entry {}: that entry was removed or changed and re-hashed",
                    seq - 1
                )
            }
            Break::Truncated { last, head } => {
                write!(f, "entries {} to {head} were removed from the end (the chain ends at {last})", last + 1)
            }
        }
    }
}

/// Walks a chain in position order. Feed it entries with [`Verifier::next`]; the first break
/// is final. `lookup` answers "which position holds the entry with this hash?" (used only
/// once a link is broken, to tell a reordered entry from a removed one).
#[derive(Debug, Clone)]
pub struct Verifier {
    seq: i64,
    hash: String,
    pub checked: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier { seq: 0, hash: GENESIS.to_string(), checked: 0 }
    }
}

impl Verifier {
    pub fn next(&mut self, e: &AuditEntry, lookup: impl Fn(&str) -> Option<i64>) -> Result<(), Break> {
        if entry_hash(&e.prev_hash, &e.draft) != e.hash {
            return Err(Break::Modified { seq: e.seq });
        }
        if e.prev_hash != self.hash {
            if e.seq > self.seq + 1 {
                return Err(Break::Removed { from: self.seq + 1, to: e.seq - 1 });
            }
            return Err(match lookup(&e.prev_hash) {
                Some(follows) if follows > e.seq => Break::Reordered { seq: e.seq, follows },
                _ => Break::Unlinked { seq: e.seq },
            });
        }
        if e.seq != self.seq + 1 {
            return Err(Break::Removed { from: self.seq + 1, to: e.seq - 1 });
        }
        self.seq = e.seq;
        self.hash = e.hash.clone();
        self.checked += 1;
        Ok(())
    }

    /// After the last entry: the chain must reach the head recorded with the last append.
    pub fn finish(&self, head: (i64, &str)) -> Result<(), Break> {
        if head.0 > self.seq {
            return Err(Break::Truncated { last: self.seq, head: head.0 });
        }
        if head.0 == self.seq && head.1 != self.hash {
            return Err(Break::Modified { seq: self.seq });
        }
        Ok(())
    }

    pub fn last(&self) -> (i64, &str) {
        (self.seq, &self.hash)
    }
}

/// Checks a whole chain held in memory (tests, small exports).
pub fn verify(entries: &[AuditEntry], head: (i64, &str)) -> Result<u64, Break> {
    let mut v = Verifier::default();
    let lookup = |h: &str| entries.iter().find(|e| e.hash == h).map(|e| e.seq);
    for e in entries {
        v.next(e, lookup)?;
    }
    v.finish(head)?;
    Ok(v.checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(i: u32) -> AuditDraft {
        AuditDraft {
            at: DateTime::from_timestamp_micros(1_790_000_000_000_000 + i as i64).unwrap(),
            actor: format!("user:u{i}"),
            roles: vec!["dispatcher".into()],
            request_id: i.is_multiple_of(2).then(|| format!("req-{i}")),
            action: "order.evaluated".into(),
            subject: format!("order:ord_{i}@1"),
            before: None,
            after: Some(digest(&format!("{{\"n\":{i}}}"))),
        }
    }

    fn sample(n: u32) -> (Vec<AuditEntry>, (i64, String)) {
        chain((0, GENESIS.to_string()), (1..=n).map(draft))
    }

    #[test]
    fn an_untouched_chain_verifies_and_appends_continue_it() {
        let (mut entries, head) = sample(5);
        assert_eq!(verify(&entries, (head.0, &head.1)), Ok(5));
        let (more, head) = chain(head, [draft(6)]);
        entries.extend(more);
        assert_eq!(verify(&entries, (head.0, &head.1)), Ok(6));
        assert_eq!(entries[5].prev_hash, entries[4].hash);
    }

    #[test]
    fn every_field_is_covered_by_the_hash() {
        let d = draft(1);
        let h = entry_hash(GENESIS, &d);
        let variants = [
            AuditDraft { actor: "user:x".into(), ..d.clone() },
            AuditDraft { roles: vec![], ..d.clone() },
            AuditDraft { roles: vec!["dispatcher".into(), "admin".into()], ..d.clone() },
            AuditDraft { request_id: Some(String::new()), ..d.clone() },
            AuditDraft { action: "order.received".into(), ..d.clone() },
            AuditDraft { subject: "order:ord_1@2".into(), ..d.clone() },
            AuditDraft { before: Some(String::new()), ..d.clone() },
            AuditDraft { after: None, ..d.clone() },
            AuditDraft { at: d.at + chrono::Duration::microseconds(1), ..d.clone() },
        ];
        for v in variants {
            assert_ne!(entry_hash(GENESIS, &v), h, "{v:?}");
        }
        // Field boundaries matter: moving a character from one field to the next changes it.
        let a = AuditDraft { actor: "ab".into(), action: "c".into(), ..d.clone() };
        let b = AuditDraft { actor: "a".into(), action: "bc".into(), ..d.clone() };
        assert_ne!(entry_hash(GENESIS, &a), entry_hash(GENESIS, &b));
        assert_ne!(entry_hash(GENESIS, &d), entry_hash(&"1".repeat(64), &d));
    }

    #[test]
    fn a_modified_entry_is_named() {
        let (mut e, head) = sample(5);
        e[2].draft.actor = "user:mallory".into();
        assert_eq!(verify(&e, (head.0, &head.1)), Err(Break::Modified { seq: 3 }));
        // Recomputing its hash moves the break to the next link.
        e[2].hash = entry_hash(&e[2].prev_hash, &e[2].draft);
        assert_eq!(verify(&e, (head.0, &head.1)), Err(Break::Unlinked { seq: 4 }));
    }

    #[test]
    fn a_removed_entry_is_named() {
        let (mut e, head) = sample(5);
        e.remove(2);
        assert_eq!(verify(&e, (head.0, &head.1)), Err(Break::Removed { from: 3, to: 3 }));
        // Removed and the rest renumbered: no gap, but the link is gone.
        let (mut e, head) = sample(5);
        e.remove(2);
        for x in e.iter_mut().skip(2) {
            x.seq -= 1;
        }
        assert_eq!(verify(&e, (head.0, &head.1)), Err(Break::Unlinked { seq: 3 }));
        let (mut e, head) = sample(5);
        e.pop();
        assert_eq!(verify(&e, (head.0, &head.1)), Err(Break::Truncated { last: 4, head: 5 }));
    }

    #[test]
    fn a_reordered_entry_is_named() {
        let (mut e, head) = sample(5);
        e.swap(1, 3);
        let (s1, s3) = (e[1].seq, e[3].seq);
        e[1].seq = s3;
        e[3].seq = s1;
        e.sort_by_key(|x| x.seq);
        // Position 2 now holds the entry written 4th, which links to the entry now at 3.
        assert_eq!(verify(&e, (head.0, &head.1)), Err(Break::Reordered { seq: 2, follows: 3 }));
    }

    #[test]
    fn breaks_read_as_sentences() {
        assert_eq!(Break::Removed { from: 3, to: 3 }.to_string(), "entry 3 was removed");
        assert!(Break::Modified { seq: 7 }.to_string().starts_with("entry 7 was modified"));
    }
}
