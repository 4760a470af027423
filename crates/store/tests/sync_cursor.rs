//! The cursor of a pull sync (the Odoo connector's): absent until written, then the last value
//! written, per source. Runs on PostgreSQL too with TEST_POSTGRES_URL.

use chrono::{TimeZone, Utc};

#[tokio::test]
async fn sync_cursors_are_kept_per_source() {
    let dir = tempfile::tempdir().unwrap();
    let loc = dispatch_store::testing::Location::fresh(dir.path()).await;
    let store = loc.open().await;
    let at = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
    assert_eq!(store.sync_cursor("odoo").await.unwrap(), None);
    store.set_sync_cursor("odoo", "2026-11-27 09:59:58|42", at).await.unwrap();
    store.set_sync_cursor("other", "x", at).await.unwrap();
    store.set_sync_cursor("odoo", "2026-11-27 10:00:01|7", at).await.unwrap();
    assert_eq!(store.sync_cursor("odoo").await.unwrap().as_deref(), Some("2026-11-27 10:00:01|7"));
    assert_eq!(store.sync_cursor("other").await.unwrap().as_deref(), Some("x"));
    store.close().await;
    // Durable: a reopened store has it.
    let again = loc.open().await;
    assert_eq!(again.sync_cursor("odoo").await.unwrap().as_deref(), Some("2026-11-27 10:00:01|7"));
    again.close().await;
}
