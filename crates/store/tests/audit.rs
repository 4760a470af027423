//! The audit chain in the store (SQLite, or PostgreSQL when TEST_POSTGRES_URL is set): every
//! committed order event gets its entry in the same transaction, non-order changes append
//! with theirs, concurrent writers keep one gap-free chain, and tampering with the database
//! directly (modify, delete, reorder, change an event) is found and named by `verify_chain`.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use dispatch_core::audit::{AuditDraft, GENESIS};
use dispatch_core::{Command, OrderFacts, Warehouse, Warehouses};
use dispatch_store::security::verify_chain;
use dispatch_store::testing::Location;
use dispatch_store::{
    AuditQuery, OrderWrite, SealedSecret, SessionRecord, Store, StoreError, Target, TokenRecord, UserRecord, WriteMeta,
};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap()
}

fn warehouses() -> Arc<Warehouses> {
    let w: Warehouse = serde_json::from_value(serde_json::json!({
        "code": "AMS", "country": "NL", "timezone": "Europe/Amsterdam", "cutoffs": {"next_day": "17:00"}
    }))
    .unwrap();
    Arc::new(Warehouses::new(vec![w]).unwrap())
}

fn facts(ext: &str) -> OrderFacts {
    serde_json::from_value(serde_json::json!({
        "source": "odoo", "external_id": ext, "warehouse": "AMS",
        "customer": {"id": "C-1"}, "service_level": "next_day", "promised_date": "2026-11-27",
        "ship_to": {"name": "A", "street": "Damrak 1", "city": "Amsterdam", "postcode": "1012 LG", "country": "NL"},
        "lines": [{"sku": "P-1", "qty": 4, "qty_allocated": 4, "unit_value": 10.0}]
    }))
    .unwrap()
}

fn upsert(ext: &str, actor: &str, roles: &[&str], request_id: &str) -> OrderWrite {
    let f = facts(ext);
    OrderWrite {
        target: Target::NaturalKey { source: f.source.clone(), external_id: f.external_id.clone() },
        meta: WriteMeta {
            actor: actor.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            request_id: Some(request_id.into()),
            at: now(),
        },
        idempotency: None,
        decide: dispatch_store::decision(
            Command::Upsert { facts: Box::new(f), expected_version: None },
            now(),
            warehouses(),
            Arc::new(dispatch_core::BuiltinRules),
        ),
    }
}

fn draft(action: &str, subject: &str) -> AuditDraft {
    AuditDraft {
        at: now(),
        actor: "cli:test".into(),
        roles: vec![],
        request_id: None,
        action: action.into(),
        subject: subject.into(),
        before: None,
        after: None,
    }
}

async fn open(dir: &tempfile::TempDir) -> (Location, Arc<dyn Store>) {
    let loc = Location::fresh(dir.path()).await;
    let store = loc.open().await;
    (loc, store)
}

async fn all(store: &dyn Store) -> Vec<dispatch_core::audit::AuditEntry> {
    store.audit_entries(&AuditQuery { limit: 10_000, ..Default::default() }).await.unwrap()
}

/// A store with 3 orders (2 events each) and 1 non-order entry: 7 entries.
async fn seeded(dir: &tempfile::TempDir) -> (Location, Arc<dyn Store>) {
    let (loc, store) = open(dir).await;
    for i in 1..=3 {
        store.execute(upsert(&format!("A/{i}"), "user:ana", &["dispatcher"], &format!("req-{i}"))).await.unwrap();
    }
    store.append_audit(vec![draft("policy.changed", "policy")]).await.unwrap();
    assert_eq!(store.audit_head().await.unwrap().0, 7);
    (loc, store)
}

async fn verdict(store: &dyn Store) -> Option<String> {
    verify_chain(store, true, |_| {}).await.unwrap().problem
}

#[tokio::test]
async fn every_committed_event_is_an_entry_with_actor_roles_and_request() {
    let dir = tempfile::tempdir().unwrap();
    let (_loc, store) = open(&dir).await;
    assert_eq!(store.audit_head().await.unwrap(), (0, GENESIS.to_string()));
    let out = store.execute(upsert("A/1", "user:ana", &["dispatcher", "supervisor"], "req-1")).await.unwrap();
    let entries = all(store.as_ref()).await;
    let events = store.events(&out.order.id).await.unwrap();
    assert_eq!(entries.len(), events.len());
    for (e, ev) in entries.iter().zip(&events) {
        assert_eq!(e.draft.actor, "user:ana");
        assert_eq!(e.draft.roles, vec!["dispatcher", "supervisor"]);
        assert_eq!(e.draft.request_id.as_deref(), Some("req-1"));
        assert_eq!(e.draft.action, ev.data.kind());
        assert_eq!(e.draft.subject, format!("order:{}@{}", out.order.id, ev.version));
        assert!(e.draft.after.as_deref().unwrap().starts_with("sha256:"));
    }
    assert_eq!(entries[0].prev_hash, GENESIS);
    assert_eq!(entries[1].prev_hash, entries[0].hash);
    // A write that changes nothing appends no event and no entry.
    store.execute(upsert("A/1", "user:ana", &["dispatcher"], "req-2")).await.unwrap();
    assert_eq!(all(store.as_ref()).await.len(), entries.len());
    let r = verify_chain(store.as_ref(), true, |_| {}).await.unwrap();
    assert_eq!((r.problem, r.checked, r.events_checked), (None, 2, 2));
}

#[tokio::test]
async fn a_refused_write_leaves_no_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (_loc, store) = open(&dir).await;
    let mut w = upsert("A/1", "user:ana", &["dispatcher"], "req-1");
    w.target = Target::Id("ord_missing".into());
    assert!(store.execute(w).await.is_err());
    assert_eq!(store.audit_head().await.unwrap().0, 0);
}

#[tokio::test]
async fn concurrent_writers_and_appends_keep_one_gap_free_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (_loc, store) = open(&dir).await;
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            if i.is_multiple_of(10) {
                store.append_audit(vec![draft("policy.changed", "policy")]).await.map(|_| ())
            } else {
                store.execute(upsert(&format!("C/{i}"), "token:erp", &["integration"], "r")).await.map(|_| ())
            }
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let entries = all(store.as_ref()).await;
    assert_eq!(entries.len(), 20 + 180 * 2);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
    }
    let r = verify_chain(store.as_ref(), true, |_| {}).await.unwrap();
    assert_eq!(r.problem, None);
    assert_eq!(r.events_checked, 360);
}

#[tokio::test]
async fn filters_and_keyset_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (_loc, store) = seeded(&dir).await;
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery { limit: 100, ..Default::default() };
        f(&mut q);
        q
    };
    let by_req = store.audit_entries(&q(|q| q.request_id = Some("req-2".into()))).await.unwrap();
    assert_eq!(by_req.len(), 2);
    let policy = store.audit_entries(&q(|q| q.action = Some("policy.changed".into()))).await.unwrap();
    assert_eq!(policy.len(), 1);
    assert_eq!(policy[0].seq, 7);
    let order = by_req[0].draft.subject.split('@').next().unwrap().to_string();
    let mut prefix = AuditQuery { limit: 100, subject: Some(format!("{order}@*")), ..Default::default() };
    assert_eq!(store.audit_entries(&prefix).await.unwrap().len(), 2);
    // `_` in a prefix is literal, not a wildcard.
    prefix.subject = Some("order:ord_@*".into());
    assert!(store.audit_entries(&prefix).await.unwrap().is_empty());
    let ana = store.audit_entries(&q(|q| q.actor = Some("user:ana".into()))).await.unwrap();
    assert_eq!(ana.len(), 6);
    let page1 = store.audit_entries(&AuditQuery { limit: 4, ..Default::default() }).await.unwrap();
    let page2 = store
        .audit_entries(&AuditQuery { limit: 4, after_seq: Some(page1[3].seq), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(page1.iter().chain(&page2).map(|e| e.seq).collect::<Vec<_>>(), (1..=7).collect::<Vec<_>>());
    let none = store.audit_entries(&q(|q| q.since = Some(now() + chrono::Duration::days(1)))).await.unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn a_modified_entry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (loc, store) = seeded(&dir).await;
    assert_eq!(verdict(store.as_ref()).await, None);
    loc.exec("UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 3").await.unwrap();
    let v = verdict(store.as_ref()).await.unwrap();
    assert!(v.starts_with("entry 3 was modified"), "{v}");
}

#[tokio::test]
async fn a_deleted_entry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (loc, store) = seeded(&dir).await;
    loc.exec("DELETE FROM audit_log WHERE seq = 4").await.unwrap();
    assert_eq!(verdict(store.as_ref()).await.as_deref(), Some("entry 4 was removed"));
}

#[tokio::test]
async fn a_deleted_last_entry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (loc, store) = seeded(&dir).await;
    loc.exec("DELETE FROM audit_log WHERE seq = 7").await.unwrap();
    let v = verdict(store.as_ref()).await.unwrap();
    assert!(v.starts_with("entries 7 to 7 were removed from the end"), "{v}");
}

#[tokio::test]
async fn reordered_entries_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (loc, store) = seeded(&dir).await;
    loc.exec(
        "UPDATE audit_log SET seq = -1 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 5; \
         UPDATE audit_log SET seq = 5 WHERE seq = -1",
    )
    .await
    .unwrap();
    let v = verdict(store.as_ref()).await.unwrap();
    assert_eq!(v, "entry 2 was reordered (it was written after entry 4)");
}

#[tokio::test]
async fn a_changed_event_is_named_against_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (loc, store) = seeded(&dir).await;
    let first = all(store.as_ref()).await.remove(0);
    let (order, _) = first.draft.subject.strip_prefix("order:").unwrap().split_once('@').unwrap();
    loc.exec(&format!(
        "UPDATE events SET data = replace(data, 'odoo', 'oDoo') WHERE order_id = '{order}' AND version = 1"
    ))
    .await
    .unwrap();
    let v = verdict(store.as_ref()).await.unwrap();
    assert_eq!(v, format!("event {order} version 1 was changed after audit entry 1 recorded it"));
    // Without the event check the chain itself is intact.
    assert_eq!(verify_chain(store.as_ref(), false, |_| {}).await.unwrap().problem, None);
}

#[tokio::test]
async fn identity_changes_are_stored_with_their_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (_loc, store) = open(&dir).await;
    let u = UserRecord {
        id: "usr_1".into(),
        name: "ana".into(),
        roles: vec!["dispatcher".into()],
        password_hash: None,
        created_at: now(),
        disabled_at: None,
    };
    store.create_user(&u, draft("user.created", "user:ana")).await.unwrap();
    let again =
        store.create_user(&UserRecord { id: "usr_2".into(), ..u.clone() }, draft("user.created", "user:ana")).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(store.user_by_name("ana").await.unwrap().unwrap(), u);
    let disabled = UserRecord { disabled_at: Some(now()), roles: vec!["auditor".into()], ..u.clone() };
    store.update_user(&disabled, draft("user.disabled", "user:ana")).await.unwrap();
    assert_eq!(store.user_by_id("usr_1").await.unwrap().unwrap(), disabled);
    assert_eq!(store.users().await.unwrap().len(), 1);

    let t = TokenRecord {
        id: "tok_1".into(),
        name: "ana-laptop".into(),
        prefix: "abc123".into(),
        secret_hash: "h".into(),
        roles: vec!["dispatcher".into()],
        created_at: now(),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        user_id: Some("usr_1".into()),
    };
    store.create_token(&t, draft("token.created", "token:tok_1")).await.unwrap();
    assert_eq!(store.token_by_prefix("abc123").await.unwrap().unwrap(), t);
    assert!(store.revoke_token("tok_1", now(), draft("token.revoked", "token:tok_1")).await.unwrap());
    assert!(!store.revoke_token("tok_1", now(), draft("token.revoked", "token:tok_1")).await.unwrap());
    assert!(store.tokens().await.unwrap()[0].revoked_at.is_some());

    let s = SessionRecord {
        id_hash: "sh".into(),
        user_id: "usr_1".into(),
        csrf: "c".into(),
        created_at: now(),
        expires_at: now() + chrono::Duration::hours(1),
    };
    store.create_session(&s, draft("console.signed_in", "user:ana")).await.unwrap();
    assert_eq!(store.session("sh").await.unwrap().unwrap(), s);
    store.delete_session("sh", draft("console.signed_out", "user:ana")).await.unwrap();
    assert!(store.session("sh").await.unwrap().is_none());

    let sec =
        SealedSecret { name: "webhook:odoo".into(), sealed: "dsv1:1:xx".into(), key_version: 1, updated_at: now() };
    store.put_secret(&sec, draft("secret.set", "secret:webhook:odoo")).await.unwrap();
    let sec2 = SealedSecret { sealed: "dsv1:2:yy".into(), key_version: 2, ..sec.clone() };
    store.put_secret(&sec2, draft("secret.resealed", "secret:webhook:odoo")).await.unwrap();
    assert_eq!(store.secret("webhook:odoo").await.unwrap().unwrap(), sec2);
    assert_eq!(store.secrets().await.unwrap().len(), 1);

    // Every successful change above has exactly one entry (the refused ones none).
    let actions: Vec<String> = all(store.as_ref()).await.into_iter().map(|e| e.draft.action).collect();
    assert_eq!(
        actions,
        [
            "user.created",
            "user.disabled",
            "token.created",
            "token.revoked",
            "console.signed_in",
            "console.signed_out",
            "secret.set",
            "secret.resealed"
        ]
    );
    assert_eq!(verdict(store.as_ref()).await, None);
}

/// Two nodes (two stores on one database) writing at once still make one gap-free chain: on
/// PostgreSQL the head row lock orders them; on SQLite the database lock does.
#[tokio::test]
async fn two_nodes_writing_at_once_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (loc, a) = open(&dir).await;
    let b = loc.open().await;
    let mut tasks = Vec::new();
    for i in 0..120u32 {
        let node = if i.is_multiple_of(2) { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            node.execute(upsert(&format!("N/{i}"), "token:erp", &["integration"], "r")).await.map(|_| ())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let entries = all(a.as_ref()).await;
    assert_eq!(entries.len(), 240);
    assert_eq!(entries.last().unwrap().seq, 240);
    let r = verify_chain(b.as_ref(), true, |_| {}).await.unwrap();
    assert_eq!((r.problem, r.events_checked), (None, 240));
}
