//! Wake-ups of the job workers, per job kind: a commit that enqueued `book_shipment` jobs
//! wakes the booking workers and no others. Every woken worker asks the database whether
//! anything of its kinds is due; when every commit woke every worker of a node, those questions
//! took half of PostgreSQL's write throughput.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct JobSignals {
    kinds: Mutex<HashMap<String, Arc<Notify>>>,
}

impl JobSignals {
    fn signal(&self, kind: &str) -> Arc<Notify> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        kinds.entry(kind.to_string()).or_default().clone()
    }

    /// Wakes the workers waiting for any of these kinds.
    pub(crate) fn notify<'a>(&self, enqueued: impl IntoIterator<Item = &'a str>) {
        let kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        for kind in enqueued {
            if let Some(n) = kinds.get(kind) {
                n.notify_waiters();
            }
        }
    }

    /// Wakes every waiting worker (for a notification that does not say its kinds).
    pub(crate) fn notify_all(&self) {
        for n in self.kinds.lock().unwrap_or_else(|p| p.into_inner()).values() {
            n.notify_waiters();
        }
    }

    /// Waits until a job of one of `kinds` may have been enqueued, or `timeout`.
    pub(crate) async fn wait(&self, kinds: &[&str], timeout: Duration) {
        let signals: Vec<Arc<Notify>> = kinds.iter().map(|k| self.signal(k)).collect();
        if signals.is_empty() {
            tokio::time::sleep(timeout).await;
            return;
        }
        let any = futures::future::select_all(signals.iter().map(|n| Box::pin(n.notified())));
        let _ = tokio::time::timeout(timeout, any).await;
    }
}

/// The payload of a PostgreSQL job notification: the enqueued kinds, comma-separated.
pub(crate) fn payload<'a>(kinds: impl IntoIterator<Item = &'a str>) -> String {
    let mut kinds: Vec<&str> = kinds.into_iter().collect();
    kinds.sort_unstable();
    kinds.dedup();
    kinds.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_worker_wakes_for_its_own_kinds_only() {
        let signals = Arc::new(JobSignals::default());
        let wait = |kinds: &'static [&'static str]| {
            let s = signals.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                s.wait(kinds, Duration::from_secs(30)).await;
                started.elapsed()
            })
        };
        let booking = wait(&["book_shipment"]);
        let outbound = wait(&["publish_event", "deliver_webhook"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        signals.notify(["deliver_webhook"]);
        let woken = outbound.await.unwrap();
        assert!(woken < Duration::from_secs(10), "woken by its kind ({woken:?})");
        assert!(!booking.is_finished(), "another kind's worker sleeps on");
        signals.notify_all();
        assert!(booking.await.unwrap() < Duration::from_secs(10));
    }

    #[test]
    fn the_payload_names_each_kind_once() {
        assert_eq!(payload(["b", "a", "b"]), "a,b");
        assert_eq!(payload([]), "");
    }
}
