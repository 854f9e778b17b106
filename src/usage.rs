//! Usage per key: every verification counted by key, hour and outcome, and written
//! behind into the store.
//!
//! Turn it on with [`ApiKeyAuthBuilder::usage`](crate::auth::ApiKeyAuthBuilder::usage) (or
//! [`AuthenticateLayer::with_usage`](crate::parts::AuthenticateLayer::with_usage)), read
//! it back with [`KeyManager::usage`](crate::manage::KeyManager::usage).
//!
//! # What is counted
//!
//! Each request authenticated by a key counts once, for that key, in the hour of its
//! authentication (UTC), under one [`UsageOutcome`]: refused for missing scopes, by the
//! rate limit, by the quota, or admitted (let through to the handler, whatever the
//! handler then answered). Requests refused before a key is known (a missing,
//! malformed, unknown, revoked or expired key) count for no key. A request
//! authenticated again further in (a router-wide layer and a guard) counts once.
//!
//! # What it costs
//!
//! The counters live with the key's cached entry: a verification adds one atomic
//! increment and no map lookup. Every flush interval a background task takes the counts
//! and adds them to the store's hourly buckets in one write
//! ([`ManagedKeyStore::add_usage`]), then drops buckets older than the retention.
//!
//! # What can be lost
//!
//! Counts not yet written are lost when the process dies without
//! [`Usage::flush`] (at most one flush interval's worth, plus whatever a failing store
//! kept pending); a failed write is retried with the next flush. Counts survive an
//! eviction, a refill or an invalidation of the key's cached entry: the counters are
//! found again by key id. A request in flight across an hour boundary may count in the
//! next hour, and a response future dropped before it finishes (a client that went
//! away) counts nothing.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use crate::clock::{Clock, SharedClock, SystemClock};
use crate::error::ConfigError;
use crate::key::KeyId;
use crate::store::usage::{hour_start, HOUR_SECONDS};
pub use crate::store::usage::{UsageBucket, UsageCounts, UsageOutcome};
use crate::store::write_behind::{flush_every, write_on_drop, Flush};
use crate::store::{ManagedKeyStore, StoreError};

type Write = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;
type Writer = Arc<dyn Fn(Vec<UsageBucket>) -> Write + Send + Sync>;
type Pruner = Arc<dyn Fn(i64) -> Write + Send + Sync>;

/// The default flush interval: 10 seconds.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// The default retention: 90 days of hourly buckets.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 86_400);

/// Nanoseconds in an hour.
const HOUR_NANOS: i128 = 3_600_000_000_000;

/// Counts verifications per key, hour and outcome, and writes them behind into a
/// [`ManagedKeyStore`]. See the [module docs](self).
///
/// ```
/// use std::time::Duration;
/// use tower_api_key::store::MemoryStore;
/// use tower_api_key::usage::Usage;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_api_key::ConfigError> {
/// let usage = Usage::builder(MemoryStore::new())
///     .with_flush_interval(Duration::from_secs(5))
///     .with_retention(Duration::from_secs(30 * 86_400))
///     .spawn()?;
/// # let _ = usage;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Usage {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    writer: Writer,
    pruner: Pruner,
    clock: SharedClock,
    interval: Duration,
    retention_hours: i64,
}

#[derive(Default)]
struct State {
    /// The counters of every key counted since they were last swept, so that a refilled
    /// cache entry finds its key's counters again.
    counters: HashMap<KeyId, Arc<KeyUsage>, ahash::RandomState>,
    /// Counts taken from the counters and not written yet, by key and hour number.
    pending: HashMap<(KeyId, i64), UsageCounts, ahash::RandomState>,
    /// The hour number of the last pruning.
    pruned: Option<i64>,
}

/// One key's counters for its current hour, kept in its cached entry's slot.
pub(crate) struct KeyUsage {
    id: KeyId,
    /// The hour number the counts belong to.
    hour: AtomicI64,
    counts: [AtomicU64; 4],
    shared: Weak<Shared>,
}

/// Builds a [`Usage`]; see [`Usage::builder`].
#[must_use]
pub struct UsageBuilder<K> {
    store: K,
    interval: Duration,
    retention: Duration,
    clock: SharedClock,
}

impl<K> fmt::Debug for UsageBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageBuilder")
            .field("interval", &self.interval)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl Usage {
    /// A builder writing into `store`, every 10 seconds, keeping 90 days.
    pub fn builder<K: ManagedKeyStore>(store: K) -> UsageBuilder<K> {
        UsageBuilder {
            store,
            interval: DEFAULT_FLUSH_INTERVAL,
            retention: DEFAULT_RETENTION,
            clock: Arc::new(SystemClock),
        }
    }

    /// Counts one verification of `id` at `at` (nanoseconds since the Unix epoch).
    /// For callers outside the front door (a custom transport); the front door counts
    /// its requests itself.
    pub fn count(&self, id: KeyId, at_unix_nanos: i128, outcome: UsageOutcome) {
        let counters = self.counters(id);
        counters.enter_at(at_unix_nanos);
        counters.add(outcome);
    }

    /// The counters of `id`, made on first use.
    pub(crate) fn counters(&self, id: KeyId) -> Arc<KeyUsage> {
        let mut state = self.shared.lock();
        Arc::clone(state.counters.entry(id).or_insert_with(|| {
            Arc::new(KeyUsage {
                id,
                hour: AtomicI64::new(i64::MIN),
                counts: Default::default(),
                shared: Arc::downgrade(&self.shared),
            })
        }))
    }

    /// Writes every count taken so far, then drops buckets past the retention (at most
    /// once an hour). On failure the counts are kept for the next flush.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.shared.flush().await
    }

    /// The number of (key, hour) buckets taken and not yet written, the counters in
    /// use not included.
    pub fn pending(&self) -> usize {
        self.shared.lock().pending.len()
    }

    /// The flush interval.
    pub fn flush_interval(&self) -> Duration {
        self.shared.interval
    }
}

impl<K: ManagedKeyStore> UsageBuilder<K> {
    /// How often counts are written (default 10 s; at most an hour). It bounds what a
    /// crash loses.
    pub fn with_flush_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How long hourly buckets are kept (default 90 days; at least an hour).
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The clock that decides what is past the retention (the system clock by
    /// default). Requests are counted in the hour of their authentication, on the
    /// front door's clock.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// [`UsageBuilder::with_clock`] with a clock already shared.
    pub(crate) fn with_shared_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Starts the counters and their flush task on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the flush interval is zero or longer than an hour, or the
    /// retention is shorter than an hour.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(self) -> Result<Usage, ConfigError> {
        if self.interval.is_zero() || self.interval > Duration::from_secs(3600) {
            return Err(ConfigError::new(format!(
                "usage flush interval {:?} must be between 1 ns and one hour",
                self.interval
            )));
        }
        if self.retention < Duration::from_secs(3600) {
            return Err(ConfigError::new(format!(
                "usage retention {:?} must be at least one hour",
                self.retention
            )));
        }
        let store = self.store;
        let writer: Writer = {
            let store = store.clone();
            Arc::new(move |batch: Vec<UsageBucket>| -> Write {
                let store = store.clone();
                Box::pin(async move { store.add_usage(&batch).await })
            })
        };
        let pruner: Pruner = Arc::new(move |before_hour: i64| -> Write {
            let store = store.clone();
            Box::pin(async move { store.prune_usage(hour_start(before_hour)).await.map(drop) })
        });
        let retention_hours = i64::try_from(self.retention.as_secs() / HOUR_SECONDS.unsigned_abs())
            .unwrap_or(i64::MAX);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            writer,
            pruner,
            clock: self.clock,
            interval: self.interval,
            retention_hours,
        });
        tokio::spawn(flush_every(Arc::downgrade(&shared), self.interval, "usage"));
        Ok(Usage { shared })
    }
}

/// The hour number of an instant in nanoseconds since the Unix epoch.
fn hour_number(at_unix_nanos: i128) -> i64 {
    i64::try_from(at_unix_nanos.div_euclid(HOUR_NANOS)).unwrap_or(i64::MIN)
}

impl KeyUsage {
    /// [`KeyUsage::enter`] the hour of `at` (nanoseconds since the Unix epoch).
    pub(crate) fn enter_at(&self, at_unix_nanos: i128) {
        self.enter(hour_number(at_unix_nanos));
    }

    /// Makes `hour` the counters' hour, setting aside what an earlier hour counted.
    /// Cheap when the hour is already current: one atomic load.
    fn enter(&self, hour: i64) {
        if self.hour.load(Ordering::Acquire) == hour {
            return;
        }
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut state = shared.lock();
        let current = self.hour.load(Ordering::Acquire);
        if current == hour {
            return;
        }
        if current > hour {
            // A request that started in an earlier hour: counted in the current one
            // (the boundary effect the module docs state).
            return;
        }
        self.take_into(&mut state, current);
        self.hour.store(hour, Ordering::Release);
    }

    /// Counts one verification under `outcome` in the current hour.
    pub(crate) fn add(&self, outcome: UsageOutcome) {
        self.counts[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Moves the counts into `state.pending` under `hour`.
    fn take_into(&self, state: &mut State, hour: i64) {
        let counts = UsageCounts::from_array(std::array::from_fn(|i| {
            self.counts[i].swap(0, Ordering::Relaxed)
        }));
        if !counts.is_empty() {
            state
                .pending
                .entry((self.id, hour))
                .or_default()
                .add(&counts);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent (only an allocation can panic).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes every count, and forgets the counters no cached entry holds any more.
    fn take_batch(&self) -> Vec<UsageBucket> {
        let mut state = self.lock();
        let counters: Vec<Arc<KeyUsage>> = state.counters.values().cloned().collect();
        for counter in &counters {
            let hour = counter.hour.load(Ordering::Acquire);
            counter.take_into(&mut state, hour);
        }
        drop(counters);
        // Held by the map alone: its cached entry is gone, and its counts were just taken.
        state
            .counters
            .retain(|_, counter| Arc::strong_count(counter) > 1);
        std::mem::take(&mut state.pending)
            .into_iter()
            .map(|((id, hour), counts)| UsageBucket::at_hour(id, hour, counts))
            .collect()
    }

    /// Puts a batch that could not be written back, for the next flush.
    fn restore(&self, batch: Vec<UsageBucket>) {
        let mut state = self.lock();
        for bucket in batch {
            state
                .pending
                .entry((bucket.key_id, bucket.hour_number()))
                .or_default()
                .add(&bucket.counts);
        }
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let mut batch = self.take_batch();
        if !batch.is_empty() {
            batch.sort_by_key(|b| (b.key_id, b.hour));
            if let Err(error) = (self.writer)(batch.clone()).await {
                self.restore(batch);
                return Err(error);
            }
        }
        let hour = hour_number(self.clock.now_unix_nanos());
        let due = {
            let mut state = self.lock();
            let due = state.pruned != Some(hour);
            state.pruned = Some(hour);
            due
        };
        if due {
            if let Err(error) = (self.pruner)(hour.saturating_sub(self.retention_hours)).await {
                self.lock().pruned = None;
                return Err(error);
            }
        }
        Ok(())
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
            write_on_drop((self.writer)(batch), "usage");
        }
    }
}

impl fmt::Debug for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Usage")
            .field("pending", &self.pending())
            .field("flush_interval", &self.shared.interval)
            .finish_non_exhaustive()
    }
}
