//! The audit log: key lifecycle events and state-changing requests.
//!
//! The two kinds of entry travel differently:
//!
//! - **Lifecycle entries** (a key created, revoked, rotated, or its scopes changed) are
//!   written by the [`KeyStore`](crate::store::KeyStore) itself, atomically with the
//!   change (in the same transaction on the SQL stores, under the same lock in the
//!   [`MemoryStore`](crate::store::MemoryStore)): when
//!   [`KeyManager`](crate::manage::KeyManager) reports success the entry is durable, and
//!   when the entry cannot be written the change is not made. They never pass through
//!   the channel below, so they are never dropped.
//! - **Request entries** are written off the request path: [`Auditor::record`] puts an
//!   entry on a bounded channel and returns at once; a background task writes batches
//!   to the [`AuditSink`]. When the channel is full the entry is dropped and counted
//!   ([`Auditor::dropped`], and the `tower_api_key_audit_dropped_total` metric); a batch
//!   the sink fails to write is counted too ([`Auditor::failed_batches`], and
//!   `tower_api_key_audit_failed_total` counts its entries). A slow sink never blocks a
//!   request.
//!
//! Reads are never audited: the layer records only `POST`, `PUT`, `PATCH` and `DELETE`
//! (anything but `GET`, `HEAD` and `OPTIONS`).
//!
//! ```
//! use tower_api_key::audit::{AuditAction, AuditEntry, Auditor, MemorySink};
//! use tower_api_key::key::KeyId;
//! use tower_api_key::Owner;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_api_key::ConfigError> {
//! let sink = MemorySink::new();
//! let auditor = Auditor::spawn(sink.clone(), 1024);
//! let key = KeyId::new("abc")?;
//! auditor.record(AuditEntry::new(AuditAction::KeyRevoked, key, Owner::organization("acme"), time::OffsetDateTime::now_utc()));
//! auditor.flush().await;
//! assert_eq!(sink.entries_for_key(&key).len(), 1);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot};

use crate::key::{Environment, KeyId};
pub use crate::store::audit_entry::{AuditAction, AuditActor, AuditEntry, AuditQuery, AuditSink};
use crate::store::{Owner, StoreError};

/// Writes entries as `tracing` events (target `tower_api_key::audit`), the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingSink;

impl AuditSink for TracingSink {
    async fn write(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        for e in entries {
            tracing::info!(
                target: "tower_api_key::audit",
                action = e.action.as_str(),
                api_key_id = e.api_key_id.as_str(),
                prefix = e.prefix.as_deref(),
                environment = e.environment.as_ref().map(Environment::as_str),
                actor = ?e.actor,
                owner = e.owner.id(),
                method = e.method.as_deref(),
                path = e.path.as_deref(),
                status = e.status,
                request_id = e.request_id.as_deref(),
                "audit"
            );
        }
        Ok(())
    }
}

/// An in-memory sink for tests and the demo, queryable by owner and key.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    inner: Arc<Mutex<Vec<AuditEntry>>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<AuditEntry>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> Vec<AuditEntry> {
        self.lock().clone()
    }

    /// Entries about one key, oldest first.
    pub fn entries_for_key(&self, key: &KeyId) -> Vec<AuditEntry> {
        self.lock()
            .iter()
            .filter(|e| &e.api_key_id == key)
            .cloned()
            .collect()
    }

    /// Entries of one owner, newest first, optionally only about one key.
    pub fn query(&self, owner: &Owner, key: Option<&KeyId>) -> Vec<AuditEntry> {
        self.lock()
            .iter()
            .rev()
            .filter(|e| &e.owner == owner && key.is_none_or(|k| &e.api_key_id == k))
            .cloned()
            .collect()
    }
}

impl AuditSink for MemorySink {
    async fn write(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        let mut stored = self.lock();
        for mut entry in entries {
            entry.id = stored.len() as u64 + 1;
            stored.push(entry);
        }
        Ok(())
    }
}

enum Message {
    Entry(Box<AuditEntry>),
    Flush(oneshot::Sender<()>),
}

/// The handle that records audit entries without blocking. Clones share the channel.
#[derive(Clone)]
pub struct Auditor {
    tx: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Auditor {
    /// Starts the background writer on the current tokio runtime, with a channel of
    /// `capacity` entries.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or when `capacity` is 0.
    pub fn spawn<K: AuditSink>(sink: K, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity);
        let failed = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_loop(sink, rx, Arc::clone(&failed)));
        Self {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            failed,
        }
    }

    /// Queues an entry. Never waits: when the channel is full the entry is dropped and
    /// counted.
    pub fn record(&self, entry: AuditEntry) {
        if self.tx.try_send(Message::Entry(Box::new(entry))).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("tower_api_key_audit_dropped_total").increment(1);
        }
    }

    /// Waits until every entry queued before this call has been handed to the sink.
    /// Use it at shutdown, and before reading a sink that must be up to date.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Entries dropped because the channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Batches the sink failed to write.
    pub fn failed_batches(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Auditor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auditor")
            .field("dropped", &self.dropped())
            .field("failed_batches", &self.failed_batches())
            .finish_non_exhaustive()
    }
}

async fn write_loop<K: AuditSink>(
    sink: K,
    mut rx: mpsc::Receiver<Message>,
    failed: Arc<AtomicU64>,
) {
    const BATCH: usize = 256;
    let mut buffer = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut buffer, BATCH).await > 0 {
        let mut entries = Vec::with_capacity(buffer.len());
        let mut flushes = Vec::new();
        for message in buffer.drain(..) {
            match message {
                Message::Entry(entry) => entries.push(*entry),
                Message::Flush(done) => flushes.push(done),
            }
        }
        if !entries.is_empty() {
            let count = entries.len() as u64;
            if let Err(error) = sink.write(entries).await {
                failed.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("tower_api_key_audit_failed_total").increment(count);
                tracing::error!(
                    target: "tower_api_key::audit",
                    %error,
                    entries = count,
                    "audit batch could not be written; its request entries are lost"
                );
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// `true` for methods the audit log records (anything that can change state).
pub(crate) fn is_state_changing(method: &http::Method) -> bool {
    !matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn entry(n: u8) -> AuditEntry {
        AuditEntry::new(
            AuditAction::Request,
            KeyId::new(&format!("k{n}")).unwrap(),
            Owner::organization("acme"),
            OffsetDateTime::UNIX_EPOCH,
        )
    }

    #[tokio::test]
    async fn entries_arrive_in_order_after_a_flush() {
        let sink = MemorySink::new();
        let auditor = Auditor::spawn(sink.clone(), 16);
        for n in 0..10 {
            auditor.record(entry(n));
        }
        auditor.flush().await;
        let ids: Vec<u64> = sink.entries().iter().map(|e| e.id).collect();
        assert_eq!(ids, (1..=10).collect::<Vec<_>>());
        assert_eq!(
            sink.query(&Owner::organization("acme"), None)[0]
                .api_key_id
                .as_str(),
            "k9"
        );
    }

    #[derive(Clone)]
    struct Stuck {
        gate: Arc<tokio::sync::Semaphore>,
        entered: Arc<tokio::sync::Notify>,
    }

    impl AuditSink for Stuck {
        async fn write(&self, _: Vec<AuditEntry>) -> Result<(), StoreError> {
            self.entered.notify_one();
            let _permit = self.gate.acquire().await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_full_channel_drops_and_counts_instead_of_blocking() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let entered = Arc::new(tokio::sync::Notify::new());
        let sink = Stuck {
            gate: Arc::clone(&gate),
            entered: Arc::clone(&entered),
        };
        let auditor = Auditor::spawn(sink, 4);
        auditor.record(entry(0));
        // The writer took the first entry and is stuck in the sink.
        entered.notified().await;
        for n in 1..=10 {
            auditor.record(entry(n));
        }
        assert_eq!(auditor.dropped(), 6);
        gate.add_permits(100);
        auditor.flush().await;
    }

    #[derive(Clone)]
    struct Failing;

    impl AuditSink for Failing {
        async fn write(&self, _: Vec<AuditEntry>) -> Result<(), StoreError> {
            Err(StoreError::unavailable(std::io::Error::other("disk full")))
        }
    }

    #[tokio::test]
    async fn a_failed_batch_is_counted_not_retried_forever() {
        let auditor = Auditor::spawn(Failing, 16);
        auditor.record(entry(1));
        auditor.flush().await;
        assert_eq!(auditor.failed_batches(), 1);
        assert_eq!(auditor.dropped(), 0);
    }

    #[test]
    fn times_are_kept_to_the_microsecond() {
        let at = time::macros::datetime!(2026-01-01 00:00:00.123456789 UTC);
        let e = AuditEntry::new(
            AuditAction::Request,
            KeyId::new("k").unwrap(),
            Owner::organization("acme"),
            at,
        );
        assert_eq!(
            e.occurred_at,
            time::macros::datetime!(2026-01-01 00:00:00.123456 UTC)
        );
    }

    #[test]
    fn queries_select_by_owner_key_and_environment() {
        let mut live = entry(1);
        live.environment = Some(Environment::live());
        let query = AuditQuery::new(Owner::organization("acme"));
        assert!(query.matches(&live));
        assert!(query.clone().for_key(live.api_key_id).matches(&live));
        assert!(!query
            .clone()
            .for_key(KeyId::new("other").unwrap())
            .matches(&live));
        assert!(!query
            .clone()
            .in_environment(Environment::test())
            .matches(&live));
        assert!(!AuditQuery::new(Owner::user("acme")).matches(&live));
        assert_eq!(query.with_limit(50_000).limit(), AuditQuery::MAX_LIMIT);
    }

    #[test]
    fn reads_are_not_state_changing() {
        for m in [http::Method::GET, http::Method::HEAD, http::Method::OPTIONS] {
            assert!(!is_state_changing(&m));
        }
        for m in [
            http::Method::POST,
            http::Method::PUT,
            http::Method::PATCH,
            http::Method::DELETE,
        ] {
            assert!(is_state_changing(&m));
        }
    }
}
