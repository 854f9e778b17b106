use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;

use super::write_behind::{flush_every, write_on_drop, Flush};
use super::{ManagedKeyStore, StoreError};
use crate::clock::from_unix_nanos;
use crate::key::KeyId;

type Batch = Vec<(KeyId, OffsetDateTime)>;
type Writer = Arc<
    dyn Fn(Batch) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>> + Send + Sync,
>;

/// A write-behind buffer for `last_used_at`.
///
/// The request path only records the time in memory ([`LastUsed::touch`]); a
/// background task writes every changed key in one [`ManagedKeyStore::touch_last_used`] call
/// per interval. A key list therefore shows a value at most one interval old, and no
/// request ever waits for a store write.
///
/// Call [`LastUsed::flush`] at graceful shutdown. Dropping the last handle also
/// writes what is pending, on the current tokio runtime, as a last resort.
///
/// ```
/// use std::time::Duration;
/// use tower_api_key::store::{LastUsed, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let last_used = LastUsed::spawn(MemoryStore::new(), Duration::from_secs(5));
/// # let _ = last_used;
/// # }
/// ```
#[derive(Clone)]
pub struct LastUsed {
    shared: Arc<Shared>,
}

struct Shared {
    /// The latest use of each key, in nanoseconds since the Unix epoch (the request
    /// path reads the clock that way; dates are built only when a batch is written).
    pending: Mutex<HashMap<KeyId, i128, ahash::RandomState>>,
    writer: Writer,
    interval: Duration,
}

impl LastUsed {
    /// Starts the buffer and its flush task (every `interval`) on the current tokio
    /// runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or when `interval` is zero.
    pub fn spawn<K: ManagedKeyStore>(store: K, interval: Duration) -> Self {
        assert!(
            !interval.is_zero(),
            "the last-used flush interval must be non-zero"
        );
        let writer: Writer = Arc::new(move |batch: Batch| {
            let store = store.clone();
            Box::pin(async move { store.touch_last_used(&batch).await })
        });
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::default()),
            writer,
            interval,
        });
        tokio::spawn(flush_every(Arc::downgrade(&shared), interval, "last-used"));
        Self { shared }
    }

    /// Records that `id` was used at `at`. Cheap: one uncontended lock and a map
    /// insert.
    pub fn touch(&self, id: KeyId, at: OffsetDateTime) {
        self.touch_unix_nanos(id, at.unix_timestamp_nanos());
    }

    /// [`LastUsed::touch`] with the time in nanoseconds since the Unix epoch.
    pub(crate) fn touch_unix_nanos(&self, id: KeyId, at: i128) {
        let mut pending = self.shared.lock();
        let slot = pending.entry(id).or_insert(at);
        if *slot < at {
            *slot = at;
        }
    }

    /// Writes everything pending now. On failure the batch is kept for the next try.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.shared.flush().await
    }

    /// The number of keys waiting to be written.
    pub fn pending(&self) -> usize {
        self.shared.lock().len()
    }

    /// The flush interval.
    pub fn interval(&self) -> Duration {
        self.shared.interval
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, i128, ahash::RandomState>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes everything pending, as the batch to write.
    fn take_batch(&self) -> Batch {
        std::mem::take(&mut *self.lock())
            .into_iter()
            .map(|(id, at)| (id, from_unix_nanos(at)))
            .collect()
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let batch = self.take_batch();
        if batch.is_empty() {
            return Ok(());
        }
        let result = (self.writer)(batch.clone()).await;
        if result.is_err() {
            let mut pending = self.lock();
            for (id, at) in batch {
                let at = at.unix_timestamp_nanos();
                let slot = pending.entry(id).or_insert(at);
                if *slot < at {
                    *slot = at;
                }
            }
        }
        result
    }
}

impl Flush for Shared {
    fn flush(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        Self::flush(self)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let batch = self.take_batch();
        if !batch.is_empty() {
            write_on_drop((self.writer)(batch), "last-used");
        }
    }
}

impl fmt::Debug for LastUsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LastUsed")
            .field("pending", &self.pending())
            .field("interval", &self.shared.interval)
            .finish()
    }
}
