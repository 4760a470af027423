//! Storage of who may act and what they did: users, the tokens bound to them, console
//! sessions, sealed secrets and the hash-chained audit log ([`dispatch_core::audit`]).
//!
//! Every change to users, tokens and secrets appends its audit entry in the same transaction,
//! and every order event appended by a writer gets its entry in the writer's transaction, so
//! the log never misses a committed change and never records one that was rolled back.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dispatch_core::Event;
use dispatch_core::audit::{AuditDraft, AuditEntry};

use crate::{StoreError, TokenRecord};

/// A person (or a named service account) who signs in and holds roles.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    /// argon2id PHC string; `None`: no console login.
    pub password_hash: Option<String>,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

/// A console session: only the hash of its id is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub id_hash: String,
    pub user_id: String,
    /// The synchronizer token every form of this session must carry.
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A secret as stored: sealed by the master key ring, never in clear.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedSecret {
    pub name: String,
    pub sealed: String,
    pub key_version: u32,
    pub updated_at: DateTime<Utc>,
}

/// Filters of `GET /api/v1/audit` and the CLI; entries come in position order.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Exact subject, or a prefix when it ends with `*` (`order:ord_1@*`).
    pub subject: Option<String>,
    pub request_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Keyset pagination: only entries after this position.
    pub after_seq: Option<i64>,
    pub limit: u32,
}

/// The audit entry of an order event: who, with which roles, in which request; the event's
/// JSON is committed to by its digest (the event itself stays in the event log).
pub(crate) fn event_draft(ev: &Event, roles: &[String], data_json: &str) -> AuditDraft {
    AuditDraft {
        at: ev.at,
        actor: ev.actor.clone(),
        roles: roles.to_vec(),
        request_id: ev.request_id.clone(),
        action: ev.data.kind().to_string(),
        subject: format!("order:{}@{}", ev.order_id, ev.version),
        before: None,
        after: Some(dispatch_core::audit::digest(data_json)),
    }
}

pub(crate) fn subject_pattern(subject: &str) -> (String, bool) {
    match subject.strip_suffix('*') {
        Some(prefix) => {
            let escaped = prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            (format!("{escaped}%"), true)
        }
        None => (subject.to_string(), false),
    }
}

#[async_trait]
pub trait SecurityStore: Send + Sync {
    /// Appends entries (in this order) to the chain in their own transaction.
    async fn append_audit(&self, drafts: Vec<AuditDraft>) -> Result<Vec<AuditEntry>, StoreError>;
    /// Entries matching `q`, in position order, at most `q.limit`.
    async fn audit_entries(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    /// The position and hash of the last appended entry, `(0, GENESIS)` when there is none.
    async fn audit_head(&self) -> Result<(i64, String), StoreError>;
    /// The position of the entry with this hash (verification, once a link is broken).
    async fn audit_seq_of(&self, hash: &str) -> Result<Option<i64>, StoreError>;
    /// `(seq, data)` of the events whose audit entries are `order:<id>@<version>`, to check
    /// the event log against the digests the chain committed to.
    async fn event_data(&self, order_id: &str, version: i64) -> Result<Option<String>, StoreError>;

    /// Fails with [`StoreError::Conflict`] when the name is taken.
    async fn create_user(&self, u: &UserRecord, audit: AuditDraft) -> Result<(), StoreError>;
    async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;
    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError>;
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Stores roles, password hash and disabled time of an existing user.
    async fn update_user(&self, u: &UserRecord, audit: AuditDraft) -> Result<(), StoreError>;

    async fn create_token(&self, t: &TokenRecord, audit: AuditDraft) -> Result<(), StoreError>;
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// `false` when there is no such token or it was already revoked.
    async fn revoke_token(&self, id: &str, at: DateTime<Utc>, audit: AuditDraft) -> Result<bool, StoreError>;

    async fn create_session(&self, s: &SessionRecord, audit: AuditDraft) -> Result<(), StoreError>;
    async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError>;
    async fn delete_session(&self, id_hash: &str, audit: AuditDraft) -> Result<(), StoreError>;

    /// Creates or replaces a sealed secret.
    async fn put_secret(&self, s: &SealedSecret, audit: AuditDraft) -> Result<(), StoreError>;
    async fn secret(&self, name: &str) -> Result<Option<SealedSecret>, StoreError>;
    async fn secrets(&self) -> Result<Vec<SealedSecret>, StoreError>;
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VerifyReport {
    /// Entries whose links and hashes were checked.
    pub checked: u64,
    /// The last good position and hash (anchor it elsewhere to detect a rewritten tail).
    pub head_seq: i64,
    pub head_hash: String,
    /// Order events checked against the digest their entry committed to.
    pub events_checked: u64,
    /// The first break, if any.
    pub problem: Option<String>,
}

/// Walks the whole chain in position order (in pages) and, with `events`, checks every order
/// event against the digest its entry committed to. Stops at the first break and names it.
pub async fn verify_chain(
    store: &dyn SecurityStore,
    events: bool,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, StoreError> {
    use dispatch_core::audit::Verifier;
    let head = store.audit_head().await?;
    let mut v = Verifier::default();
    let mut events_checked = 0;
    let mut after = 0;
    let problem = 'walk: loop {
        let page =
            store.audit_entries(&AuditQuery { after_seq: Some(after), limit: 2_000, ..Default::default() }).await?;
        let Some(last) = page.last() else { break v.finish((head.0, &head.1)).err().map(|b| b.to_string()) };
        after = last.seq;
        for e in &page {
            // A link is broken: find where the entry it links to went (rare, one query).
            let mut found = std::collections::HashMap::new();
            if e.prev_hash != v.last().1 {
                found.insert(e.prev_hash.clone(), store.audit_seq_of(&e.prev_hash).await?);
            }
            if let Err(b) = v.next(e, |h| found.get(h).copied().flatten()) {
                break 'walk Some(b.to_string());
            }
            if events && let Some((order, version)) = event_subject(&e.draft.subject) {
                let stored = store.event_data(order, version).await?;
                match stored {
                    Some(data) if e.draft.after.as_deref() == Some(dispatch_core::audit::digest(&data).as_str()) => {
                        events_checked += 1
                    }
                    Some(_) => {
                        break 'walk Some(format!(
                            "event {order} version {version} was changed after audit entry {} recorded it",
                            e.seq
                        ));
                    }
                    None => {
                        break 'walk Some(format!(
                            "event {order} version {version} (audit entry {}) is missing from the event log",
                            e.seq
                        ));
                    }
                }
            }
        }
        progress(v.checked);
    };
    let (seq, hash) = v.last();
    Ok(VerifyReport { checked: v.checked, head_seq: seq, head_hash: hash.to_string(), events_checked, problem })
}

/// `order:<id>@<version>` → (id, version).
fn event_subject(subject: &str) -> Option<(&str, i64)> {
    let rest = subject.strip_prefix("order:")?;
    let (id, version) = rest.rsplit_once('@')?;
    Some((id, version.parse().ok()?))
}
