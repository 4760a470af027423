//! The intelligence tables (SQLite, or PostgreSQL when TEST_POSTGRES_URL is set): history
//! upserts and time-ordered reads, model versions with one active model at a time.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use dispatch_store::testing::Location;
use dispatch_store::{HistoryRow, ModelRow, Store};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap()
}

async fn open(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    Location::fresh(dir.path()).await.open().await
}

fn row(id: &str, minutes: i64, late: bool) -> HistoryRow {
    HistoryRow {
        order_id: id.into(),
        warehouse: "AMS".into(),
        released_at: now() + Duration::minutes(minutes),
        departed_late: late,
        record: format!("{{\"order_id\":\"{id}\",\"late\":{late}}}"),
    }
}

#[tokio::test]
async fn history_is_upserted_by_order_and_read_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    assert_eq!(store.history_count().await.unwrap(), 0);
    let rows: Vec<HistoryRow> = (0..2500).map(|i| row(&format!("o-{i}"), 2500 - i, i % 7 == 0)).collect();
    store.insert_history(&rows).await.unwrap();
    assert_eq!(store.history_count().await.unwrap(), 2500);
    // Re-importing the same order replaces it.
    store.insert_history(&[row("o-5", -10, true)]).await.unwrap();
    assert_eq!(store.history_count().await.unwrap(), 2500);
    let all = store.history(None).await.unwrap();
    assert_eq!(all.len(), 2500);
    assert_eq!(all[0], "{\"order_id\":\"o-5\",\"late\":true}");
    assert_eq!(all[1], "{\"order_id\":\"o-2499\",\"late\":true}");
    let recent = store.history(Some(now() + Duration::minutes(2490))).await.unwrap();
    assert_eq!(recent.len(), 10);
    store.close().await;
}

fn model(version: &str, minutes: i64) -> ModelRow {
    ModelRow {
        version: version.into(),
        created_at: now() + Duration::minutes(minutes),
        status: "candidate".into(),
        activated_at: None,
        summary: format!("{{\"version\":\"{version}\"}}"),
    }
}

#[tokio::test]
async fn one_model_is_active_and_promotion_retires_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    assert!(store.active_model().await.unwrap().is_none());
    store.insert_model(&model("m1", 0), b"artifact-1").await.unwrap();
    store.insert_model(&model("m2", 5), &[0u8, 255, 7]).await.unwrap();
    assert!(store.insert_model(&model("m1", 9), b"again").await.is_err(), "versions are unique");
    let list = store.models().await.unwrap();
    assert_eq!(list.iter().map(|m| m.version.as_str()).collect::<Vec<_>>(), vec!["m2", "m1"]);
    assert!(list.iter().all(|m| m.status == "candidate"));
    assert_eq!(store.model_artifact("m2").await.unwrap(), Some(vec![0u8, 255, 7]));
    assert_eq!(store.model_artifact("nope").await.unwrap(), None);

    assert!(!store.activate_model("nope", now()).await.unwrap());
    assert!(store.activate_model("m1", now()).await.unwrap());
    let (active, bytes) = store.active_model().await.unwrap().unwrap();
    assert_eq!((active.version.as_str(), bytes.as_slice()), ("m1", b"artifact-1".as_slice()));
    assert_eq!(active.activated_at, Some(now()));
    assert!(store.activate_model("m2", now() + Duration::hours(1)).await.unwrap());
    let list = store.models().await.unwrap();
    let status = |v: &str| list.iter().find(|m| m.version == v).unwrap().status.clone();
    assert_eq!((status("m1"), status("m2")), ("retired".to_string(), "active".to_string()));
    // Rolling back is activating the earlier one again.
    assert!(store.activate_model("m1", now() + Duration::hours(2)).await.unwrap());
    assert_eq!(store.active_model().await.unwrap().unwrap().0.version, "m1");
    store.close().await;
}
