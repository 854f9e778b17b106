use std::any::Any;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{watch, Semaphore};

use super::audit_entry::{AuditEntry, AuditQuery};
use super::cached_record::{CachedRecord, Interner};
use super::keyring::{Keyring, TagCheck};
use super::{
    Applied, Change, KeyPage, KeyQuery, KeyRecord, KeyStore, ManagedKeyStore, Owner, StoreError,
    UsageBucket,
};
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::error::ConfigError;
use crate::key::{Digest, KeyId, KeyTag, TagKey};

/// A bounded, single-flight cache of key records in front of any [`KeyStore`].
///
/// # What is cached
///
/// Records, never verdicts: expiry, revocation and rotation grace are evaluated
/// against the clock on every request, so a key that expires is refused on its first
/// request after expiry even when its record comes from the cache. Unknown ids are
/// cached too, as negative entries with a shorter TTL, so an unknown id that repeats
/// does not reach the store again. Store errors are never cached.
///
/// Negative entries live in a cache of their own, smaller than the positive one
/// ([`CachedStoreBuilder::with_max_negative_entries`]): a flood of unknown ids evicts
/// other unknown ids, never a known key's record.
///
/// **A forged key does reach the store once.** The checksum is public, so anyone can
/// mint well-formed keys with ids nobody ever issued; each distinct one costs a
/// lookup. What bounds that cost: the per-client budget of lookups that end in
/// "unknown key" ([`KeyVerifier::with_unknown_key_budget`](crate::parts::KeyVerifier::with_unknown_key_budget)),
/// the cap on concurrent lookups ([`CachedStoreBuilder::with_max_concurrent_lookups`]:
/// past it a miss fails at once with [`StoreError::Unavailable`], a 503, instead of
/// queuing for a connection) and the lookup timeout
/// ([`CachedStoreBuilder::with_lookup_timeout`]).
///
/// # Stale if error
///
/// While the store fails, times out or the concurrency cap is reached, a record whose
/// TTL has run out is still served for [`CachedStoreBuilder::with_stale_if_error`]
/// (5 minutes by default; zero disables it), so keys used recently keep working
/// through an outage. Revocation through this cache and [`CachedStore::invalidate`]
/// (the PostgreSQL store's LISTEN/NOTIFY) still drop the record at once, and expiry
/// and revocation times in the record are still checked on every request.
///
/// **A change this cache has seen always wins over stale-if-error.** Once a key id
/// has been invalidated (by a change through this cache, [`CachedStore::invalidate`],
/// [`CachedStore::invalidate_record`], or [`CachedStore::invalidate_digest`] of a
/// digest it holds a record for), no record fetched before that invalidation answers
/// again, however it was cached (by id, or by digest for an imported key) and whatever
/// the TTLs: a revoked key is refused, a grace-0 rotation stays rotated and a scope
/// reduction stays reduced, even when the store is down. Each invalidation is
/// remembered for the TTL plus the stale-if-error window, so it holds even where the
/// entry could not be found and dropped (an index entry evicted for capacity). At most
/// 100,000 invalidations (and never more than
/// [`with_max_entries`](CachedStoreBuilder::with_max_entries)) are remembered; past
/// that the oldest is forgotten and, failing closed, every record fetched before it
/// loses stale-if-error. Checking costs nothing on a cache hit by id; a hit by digest
/// reads one atomic, and takes a lock only once per record after each invalidation.
///
/// # Revocation
///
/// Every change made through this type ([`ManagedKeyStore::apply`], and the `insert`,
/// `update` and `revoke` built on it) invalidates the key before it returns, so the
/// next request through the same `CachedStore` sees the change.
///
/// A lookup that was already in flight when the key was invalidated can never write
/// the old record back: fills are registered under a lock, invalidation removes the
/// registration, and a fill inserts its result only while still registered, under the
/// same lock. Requests that start after the invalidation never join the old fill.
///
/// **Worst-case revocation window.** On the instance that performed the mutation:
/// none, the next request is refused. On another instance sharing the same store:
/// the positive TTL ([`CachedStoreBuilder::with_ttl`], 30 s by default), unless that
/// instance is told through [`CachedStore::invalidate`] (the PostgreSQL store's
/// LISTEN/NOTIFY does this), which brings it down to the notification latency.
/// When that other instance cannot reach the store either (a network partition, so
/// it hears no notification and cannot refresh), it may go on using its cached
/// record for the positive TTL plus the stale-if-error window: 30 s + 300 s with the
/// defaults, counted from the record's last successful fetch. Set
/// [`CachedStoreBuilder::with_stale_if_error`] to zero to bound it by the TTL alone.
///
/// # Freshness and the clock
///
/// Entry age is measured with the injected [`Clock`], so tests move time instead of
/// sleeping. moka reclaims every entry's memory after the positive TTL; a negative
/// entry is already stale after the negative TTL, and the next lookup replaces it.
///
/// # Bounds
///
/// The cache is bounded both in entries and in bytes: each entry weighs at least
/// `max_bytes / max_entries`, so neither bound can be exceeded.
///
/// # Why `moka::sync::Cache`
///
/// Single-flight is implemented here rather than with `moka::future::Cache::try_get_with`
/// for two reasons. moka inserts a loader's result when the loader returns, so a
/// lookup that read a record before a revoke would still insert it afterwards, and a
/// request arriving after the revoke would join that stale load. Guarding against both
/// needs the insert and the invalidation to happen under one lock, which the
/// synchronous cache allows (its `insert` and `invalidate` are not `async`). The cache
/// hit itself is then a plain synchronous lookup, with no future to poll.
pub struct CachedStore<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for CachedStore<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<S> {
    store: S,
    /// Found records.
    cache: moka::sync::Cache<CacheKey, Entry, ahash::RandomState>,
    /// Unknown ids and digests, with the time (as [`Entry::fetched_at`]) the store
    /// said so. Apart from `cache`, so unknown ids never evict known records.
    negatives: moka::sync::Cache<CacheKey, i64, ahash::RandomState>,
    /// The secrets that tag native keys, read from the store when first needed.
    keyring: Keyring,
    /// What lives exactly as long as this cache (the front door's claim on its store).
    held: OnceLock<Arc<dyn Any + Send + Sync>>,
    /// Digests of imported keys whose record is cached under their digest, so that
    /// invalidating an id also drops the digest entry. Kept as long as the records.
    digests: moka::sync::Cache<KeyId, [u8; 32], ahash::RandomState>,
    /// The key ids invalidated lately, so that no record fetched before its key's
    /// invalidation answers again, even where the entry could not be found and dropped.
    invalidations: Invalidations,
    fills: Mutex<HashMap<CacheKey, Arc<Fill>>>,
    /// One copy of each owner id, policy name and scope list among the cached records.
    interner: Mutex<Interner>,
    clock: SharedClock,
    positive_ttl: Duration,
    negative_ttl: Duration,
    /// The TTLs in nanoseconds, for the request path's integer comparison.
    positive_ttl_nanos: i128,
    negative_ttl_nanos: i128,
    /// How long past its TTL a record may answer while the store cannot.
    stale_if_error: Duration,
    stale_if_error_nanos: i128,
    /// Permits for store lookups in flight (cache fills).
    lookups: Semaphore,
    max_lookups: usize,
    lookup_timeout: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CacheKey {
    Id(KeyId),
    Digest([u8; 32]),
}

#[derive(Clone)]
struct Entry {
    /// `None` for an unknown key (kept in the negative cache as `fetched_at` alone).
    record: Option<Arc<CachedRecord>>,
    /// Nanoseconds since the Unix epoch, on the cache's clock; `i64::MIN` (always
    /// stale) for a reading outside 1677–2262. An `i64` rather than an `i128`, whose
    /// 16-byte alignment would pad every cache entry.
    fetched_at: i64,
}

type FillResult = Result<Entry, StoreError>;

/// Why a gated lookup gave no answer.
pub(crate) enum Gated<E> {
    /// The store failed (or was not asked: the cap, the timeout), and no stale record
    /// could answer.
    Store(StoreError),
    /// The gate refused the lookup.
    Refused(E),
}

/// A fresh cache answer.
pub(crate) enum Cached {
    /// The record.
    Found(Arc<CachedRecord>),
    /// A negative entry: the store did not know the key.
    Unknown,
}

struct Fill {
    tx: watch::Sender<Option<FillResult>>,
}

/// The most key invalidations remembered (see [`Invalidations`]).
const MAX_INVALIDATIONS: u64 = 100_000;

/// The key ids this cache has seen invalidated, so that no record fetched before its
/// key's invalidation answers again, whichever key it is cached under.
///
/// Invalidations are numbered (epochs) under the fills lock, the lock that also
/// registers fills; a record carries the epoch at which its fill was registered, and is
/// superseded by a later invalidation of its key. Numbers rather than clock readings,
/// so that a record fetched just after an invalidation, at the same clock reading, is
/// not taken for an older one.
///
/// Each invalidation is kept for the positive TTL plus the stale-if-error window (by
/// then any record fetched before it is too old to answer), and at most `cap` of them.
/// A forgotten invalidation is folded into a floor: every record whose fill started
/// before it is superseded. So forgetting never lets an old record back, whatever the
/// clock does; at worst it costs records older than the window (already unusable) or,
/// past the cap, older records their stale-if-error.
struct Invalidations {
    /// The number of invalidations so far; changed only under `log`'s lock.
    epoch: AtomicU64,
    log: Mutex<InvalidationLog>,
    /// The positive TTL plus the stale-if-error window, in nanoseconds.
    window: i128,
    /// The most invalidations kept.
    cap: usize,
}

#[derive(Default)]
struct InvalidationLog {
    /// Key id to the epoch of its latest invalidation.
    by_id: HashMap<KeyId, u64, ahash::RandomState>,
    /// `(forget at, key id, epoch)`, oldest first.
    order: VecDeque<(i128, KeyId, u64)>,
    /// Records whose fill started before this epoch are all superseded: the
    /// invalidations forgotten are folded into it.
    floor: u64,
}

impl Invalidations {
    fn new(window: i128, cap: u64) -> Self {
        Self {
            epoch: AtomicU64::new(0),
            log: Mutex::new(InvalidationLog::default()),
            window,
            cap: usize::try_from(cap).unwrap_or(usize::MAX).max(1),
        }
    }

    /// The current epoch, which a fill registered now carries.
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, InvalidationLog> {
        // Each update below leaves the log consistent (only an allocation can panic).
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Supersedes every record of `id` whose fill was registered before now (`now`:
    /// the clock reading, in nanoseconds since the Unix epoch). Called under the
    /// fills lock.
    fn invalidate(&self, id: KeyId, now: i128) {
        let mut log = self.lock();
        while log.order.len() >= self.cap
            || log.order.front().is_some_and(|(until, ..)| *until <= now)
        {
            log.forget_oldest();
        }
        let epoch = self.epoch.load(Ordering::Relaxed) + 1;
        log.order
            .push_back((now.saturating_add(self.window), id, epoch));
        log.by_id.insert(id, epoch);
        self.epoch.store(epoch, Ordering::Release);
    }

    /// Whether this cache has seen `record`'s key invalidated since the record's fill
    /// started. One atomic read, unless some key was invalidated since the record was
    /// last checked.
    fn superseded(&self, record: &CachedRecord) -> bool {
        if record.checked.load(Ordering::Relaxed) == self.epoch() {
            return false;
        }
        let log = self.lock();
        let superseded = record.epoch < log.floor
            || log
                .by_id
                .get(record.id())
                .is_some_and(|&epoch| epoch > record.epoch);
        if !superseded {
            record
                .checked
                .fetch_max(self.epoch.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        superseded
    }

    /// The number of invalidations remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().order.len()
    }
}

impl InvalidationLog {
    /// Forgets the oldest invalidation, folding it into the floor.
    fn forget_oldest(&mut self) {
        if let Some((_, id, epoch)) = self.order.pop_front() {
            if self.by_id.get(&id) == Some(&epoch) {
                self.by_id.remove(&id);
            }
            self.floor = self.floor.max(epoch);
        }
    }
}

/// Builds a [`CachedStore`]; see [`CachedStore::builder`].
#[must_use]
pub struct CachedStoreBuilder<S> {
    store: S,
    positive_ttl: Duration,
    negative_ttl: Duration,
    max_entries: u64,
    max_bytes: u64,
    max_negative_entries: u64,
    max_lookups: usize,
    lookup_timeout: Duration,
    stale_if_error: Duration,
    clock: SharedClock,
    tag_key: Option<TagKey>,
}

impl<S: fmt::Debug> fmt::Debug for CachedStoreBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStoreBuilder")
            .field("store", &self.store)
            .field("positive_ttl", &self.positive_ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .field("max_negative_entries", &self.max_negative_entries)
            .field("max_lookups", &self.max_lookups)
            .field("lookup_timeout", &self.lookup_timeout)
            .field("stale_if_error", &self.stale_if_error)
            .field("tag_key", &self.tag_key)
            .finish_non_exhaustive()
    }
}

/// The default positive TTL: 30 seconds.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// The default negative TTL: 5 seconds.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// The default cap on concurrent store lookups: 8, well under a typical pool of 10.
pub const DEFAULT_MAX_LOOKUPS: usize = 8;
/// The default lookup timeout: 3 seconds.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// The default stale-if-error window: 5 minutes.
pub const DEFAULT_STALE_IF_ERROR: Duration = Duration::from_secs(300);
/// The default bound on negative entries: 100,000.
pub const DEFAULT_MAX_NEGATIVE_ENTRIES: u64 = 100_000;

/// The counter of cache misses answered with a record past its TTL because the store
/// failed, timed out or the lookup cap was reached (stale-if-error).
pub const STALE_ANSWERS_METRIC: &str = "tower_api_key_stale_answers_total";

/// The counter of store lookups not made or not finished, labelled `reason`:
/// `overloaded` (the cap on concurrent lookups was reached) or `timeout`.
pub const LOOKUPS_REFUSED_METRIC: &str = "tower_api_key_lookups_refused_total";

impl<S> CachedStoreBuilder<S> {
    /// How long a found record is served from the cache (default 30 s). This bounds
    /// how long another instance may keep using a key revoked elsewhere when no
    /// invalidation reaches it.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.positive_ttl = ttl;
        self
    }

    /// How long an unknown id is remembered as unknown (default 5 s). Creating or
    /// importing the key drops the negative entry at once.
    pub fn with_negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// The most entries held (default 1,000,000).
    pub fn with_max_entries(mut self, entries: u64) -> Self {
        self.max_entries = entries;
        self
    }

    /// The most bytes held, estimated per record (default 256 MiB).
    pub fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// The most negative entries (unknown ids) held (default 100,000, and never more
    /// than [`with_max_entries`](Self::with_max_entries)). They are kept apart from
    /// found records, so a flood of unknown ids evicts only other unknown ids.
    pub fn with_max_negative_entries(mut self, entries: u64) -> Self {
        self.max_negative_entries = entries;
        self
    }

    /// The most store lookups in flight at once for cache misses (default 8; keep it
    /// well under the store's connection pool). A miss past the cap fails at once with
    /// [`StoreError::Unavailable`] (a 503 with `Retry-After` from the layer) instead of
    /// queuing, unless stale-if-error can answer it. Requests for an id already being
    /// looked up wait for that lookup and take no permit.
    pub fn with_max_concurrent_lookups(mut self, lookups: usize) -> Self {
        self.max_lookups = lookups;
        self
    }

    /// How long a store lookup may take (default 3 s). Past it the lookup is dropped
    /// and fails with [`StoreError::Unavailable`] (a 503), unless stale-if-error can
    /// answer. Measured with tokio's timer.
    pub fn with_lookup_timeout(mut self, timeout: Duration) -> Self {
        self.lookup_timeout = timeout;
        self
    }

    /// How long past its TTL a found record may still be used while the store errors,
    /// times out or the lookup cap is reached (default 5 minutes; zero disables it).
    /// Revocation through this cache and [`CachedStore::invalidate`] still drop the
    /// record at once, and no record fetched before a change this cache has seen
    /// answers from the window; expiry and revocation times in the record are still
    /// checked.
    /// See the worst case in the [type docs](CachedStore).
    pub fn with_stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = window;
        self
    }

    /// The clock that measures entry age (the system clock by default).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The secret that tags native keys, for a store that keeps none itself (an
    /// application's own read-only store: [`KeyStore::tag_keys`] is empty unless
    /// implemented). It replaces the store's secrets. Give every instance the same one
    /// (from the application's secret configuration), and mint keys with
    /// [`KeyFormat::generate_tagged`](crate::key::KeyFormat::generate_tagged) under it.
    /// Without any tag secret, keys are minted untagged and each unknown one costs a
    /// lookup, charged to the [unknown-key budget](crate::budget).
    pub fn with_tag_key(mut self, key: TagKey) -> Self {
        self.tag_key = Some(key);
        self
    }

    /// The store the cache will wrap.
    pub(crate) fn store_ref(&self) -> &S {
        &self.store
    }

    /// Builds the cache.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when a TTL is zero or longer than a day, the negative TTL is
    /// longer than the positive one, a bound is zero, the lookup cap is zero or above
    /// 1,000,000, the lookup timeout is zero or longer than a minute, or the
    /// stale-if-error window is longer than a day.
    pub fn build(self) -> Result<CachedStore<S>, ConfigError> {
        const DAY: Duration = Duration::from_secs(86_400);
        if !(1..=1_000_000).contains(&self.max_lookups) {
            return Err(ConfigError::new(format!(
                "the cap on concurrent key lookups ({}) must be between 1 and 1000000",
                self.max_lookups
            )));
        }
        if self.lookup_timeout.is_zero() || self.lookup_timeout > Duration::from_secs(60) {
            return Err(ConfigError::new(format!(
                "key lookup timeout {:?} must be between 1 ns and one minute",
                self.lookup_timeout
            )));
        }
        if self.stale_if_error > DAY {
            return Err(ConfigError::new(format!(
                "stale-if-error window {:?} must be at most one day",
                self.stale_if_error
            )));
        }
        if self.positive_ttl.is_zero() || self.positive_ttl > DAY {
            return Err(ConfigError::new(format!(
                "cache TTL {:?} must be between 1 ns and one day",
                self.positive_ttl
            )));
        }
        if self.negative_ttl.is_zero() || self.negative_ttl > self.positive_ttl {
            return Err(ConfigError::new(format!(
                "negative cache TTL {:?} must be non-zero and at most the positive TTL {:?}",
                self.negative_ttl, self.positive_ttl
            )));
        }
        if self.max_entries == 0 || self.max_bytes == 0 || self.max_negative_entries == 0 {
            return Err(ConfigError::new("cache bounds must be non-zero"));
        }
        let min_weight = (self.max_bytes / self.max_entries).max(1);
        let min_weight = u32::try_from(min_weight).unwrap_or(u32::MAX);
        let (positive_ttl, negative_ttl) = (self.positive_ttl, self.negative_ttl);
        let cache = moka::sync::Cache::builder()
            .max_capacity(self.max_bytes)
            .weigher(move |_key: &CacheKey, entry: &Entry| {
                let bytes = std::mem::size_of::<(CacheKey, Entry)>()
                    + entry.record.as_ref().map_or(0, |r| r.approx_size());
                u32::try_from(bytes).unwrap_or(u32::MAX).max(min_weight)
            })
            // One TTL for every entry: moka then keeps a write-order queue rather than
            // a timer wheel, which reads would have to update. An entry is stale after
            // the positive TTL all the same (`fresh` checks every read); moka keeps it
            // through the stale-if-error window so an outage can still use it.
            .time_to_live(positive_ttl + self.stale_if_error)
            .build_with_hasher(ahash::RandomState::new());
        let negatives = moka::sync::Cache::builder()
            .max_capacity(self.max_negative_entries.min(self.max_entries))
            .time_to_live(negative_ttl)
            .build_with_hasher(ahash::RandomState::new());
        // As long as the records, so that invalidating an id finds its digest entry
        // for as long as that entry can answer.
        let digests = moka::sync::Cache::builder()
            .max_capacity(self.max_entries)
            .time_to_live(positive_ttl + self.stale_if_error)
            .build_with_hasher(ahash::RandomState::new());
        Ok(CachedStore {
            inner: Arc::new(Inner {
                store: self.store,
                cache,
                negatives,
                keyring: Keyring::new(self.tag_key),
                held: OnceLock::new(),
                digests,
                invalidations: Invalidations::new(
                    nanos(positive_ttl).saturating_add(nanos(self.stale_if_error)),
                    self.max_entries.min(MAX_INVALIDATIONS),
                ),
                fills: Mutex::new(HashMap::new()),
                interner: Mutex::new(Interner::default()),
                clock: self.clock,
                positive_ttl,
                negative_ttl,
                positive_ttl_nanos: nanos(positive_ttl),
                negative_ttl_nanos: nanos(negative_ttl),
                stale_if_error: self.stale_if_error,
                stale_if_error_nanos: nanos(self.stale_if_error),
                lookups: Semaphore::new(self.max_lookups),
                max_lookups: self.max_lookups,
                lookup_timeout: self.lookup_timeout,
            }),
        })
    }
}

fn nanos(d: Duration) -> i128 {
    d.as_nanos().try_into().unwrap_or(i128::MAX)
}

impl<S> CachedStore<S> {
    /// A builder with the defaults: 30 s positive TTL, 5 s negative TTL, at most
    /// 1,000,000 entries and 256 MiB (of which at most 100,000 negative entries), at
    /// most 8 store lookups at once, each within 3 s, records served up to 5 minutes
    /// past their TTL while the store fails, the system clock.
    pub fn builder(store: S) -> CachedStoreBuilder<S> {
        CachedStoreBuilder {
            store,
            positive_ttl: DEFAULT_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            max_entries: 1_000_000,
            max_bytes: 256 * 1024 * 1024,
            max_negative_entries: DEFAULT_MAX_NEGATIVE_ENTRIES,
            max_lookups: DEFAULT_MAX_LOOKUPS,
            lookup_timeout: DEFAULT_LOOKUP_TIMEOUT,
            stale_if_error: DEFAULT_STALE_IF_ERROR,
            clock: Arc::new(SystemClock),
            tag_key: None,
        }
    }

    /// The store behind the cache.
    pub fn get_ref(&self) -> &S {
        &self.inner.store
    }

    /// The clock the cache measures age with.
    pub fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }

    /// [`CachedStore::clock`], shared.
    pub(crate) fn shared_clock(&self) -> SharedClock {
        Arc::clone(&self.inner.clock)
    }

    /// Drops everything cached for `id` and stops any lookup in flight for it from
    /// filling the cache. Call it when a key changed behind this cache's back (another
    /// instance revoked it). No record of the key fetched before this call answers
    /// again, not even from the stale-if-error window.
    pub fn invalidate(&self, id: &KeyId) {
        let mut fills = self.inner.lock_fills();
        self.inner.invalidate_id_locked(&mut fills, *id);
    }

    /// Drops the entry cached under `digest` (an imported key's lookup), positive or
    /// negative, and stops a lookup in flight for it from filling the cache. When that
    /// entry held a record, its key id is invalidated too, as by
    /// [`invalidate`](Self::invalidate).
    pub fn invalidate_digest(&self, digest: &Digest) {
        let mut fills = self.inner.lock_fills();
        let key = CacheKey::Digest(*digest.as_bytes());
        let cached = self.inner.cache.get(&key).and_then(|entry| entry.record);
        self.inner.invalidate_locked(&mut fills, key);
        if let Some(record) = cached {
            self.inner.invalidate_id_locked(&mut fills, *record.id());
        }
    }

    /// Drops everything cached for this record, by id and by digest. No record of its
    /// key fetched before this call answers again, not even from the stale-if-error
    /// window.
    pub fn invalidate_record(&self, record: &KeyRecord) {
        let mut fills = self.inner.lock_fills();
        self.inner.supersede_locked(record.id);
        self.inner.drop_record_locked(&mut fills, record);
    }

    /// Drops the whole cache, for example after a missed notification.
    pub fn invalidate_all(&self) {
        let mut fills = self.inner.lock_fills();
        fills.clear();
        self.inner.cache.invalidate_all();
        self.inner.negatives.invalidate_all();
        self.inner.digests.invalidate_all();
    }

    /// The number of entries currently cached, positive and negative. Pending
    /// maintenance is run first, so the count is exact.
    pub fn entry_count(&self) -> u64 {
        self.inner.cache.run_pending_tasks();
        self.inner.negatives.run_pending_tasks();
        self.inner.cache.entry_count() + self.inner.negatives.entry_count()
    }

    /// The number of negative entries (unknown ids and digests) currently cached.
    pub fn negative_entry_count(&self) -> u64 {
        self.inner.negatives.run_pending_tasks();
        self.inner.negatives.entry_count()
    }

    /// Store lookups in flight now (each holds one of the
    /// [`with_max_concurrent_lookups`](CachedStoreBuilder::with_max_concurrent_lookups)
    /// permits).
    pub fn lookups_in_flight(&self) -> usize {
        self.inner.max_lookups - self.inner.lookups.available_permits()
    }

    /// Keeps `value` alive as long as this cache (any clone of it) lives; the first
    /// value given stays.
    pub(crate) fn hold(&self, value: Arc<dyn Any + Send + Sync>) {
        let _ = self.inner.held.set(value);
    }

    /// Whether a record for `key` is held, fresh or past its TTL (a lookup for it
    /// refreshes a real key).
    pub(crate) fn holds(&self, key: &CacheKey) -> bool {
        self.inner.cache.contains_key(key)
    }
}

impl<S: KeyStore> CachedStore<S> {
    /// Checks a presented key's tag against the tag secrets (read from the store when
    /// first needed; see [`KeyStore::tag_keys`]).
    pub(crate) async fn check_tag(&self, tag: &KeyTag) -> TagCheck {
        let inner = &*self.inner;
        inner
            .keyring
            .check(&inner.store, tag, inner.clock.now_unix_nanos())
            .await
    }

    /// The secret that tags new keys: the newest one, or `None` when there is none
    /// (keys are then minted untagged).
    ///
    /// # Errors
    ///
    /// The store's error when the secrets have not been read yet and cannot be.
    pub async fn minting_tag_key(&self) -> Result<Option<TagKey>, StoreError> {
        let inner = &*self.inner;
        let keys = inner
            .keyring
            .keys(&inner.store, inner.clock.now_unix_nanos())
            .await?;
        Ok(keys.last().cloned())
    }

    /// Reads the tag secrets from the store again: after a rotation of the secret
    /// (`rotate_tag_key` on the SQL stores and [`MemoryStore`](super::MemoryStore)),
    /// so that this instance tags new keys with the new one at once. (Verifying keys
    /// tagged under a secret not read yet reloads by itself.)
    ///
    /// # Errors
    ///
    /// The store's error; the secrets read before are kept.
    pub async fn reload_tag_keys(&self) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let now = inner.clock.now_unix_nanos();
        let seen = Some(now);
        inner
            .keyring
            .reload(&inner.store, now, seen)
            .await
            .map(drop)
    }
}

impl<S> Inner<S> {
    fn lock_fills(&self) -> MutexGuard<'_, HashMap<CacheKey, Arc<Fill>>> {
        // Nothing under this lock can panic half-way through an update.
        self.fills.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn invalidate_locked(&self, fills: &mut HashMap<CacheKey, Arc<Fill>>, key: CacheKey) {
        fills.remove(&key);
        self.cache.invalidate(&key);
        self.negatives.invalidate(&key);
    }

    /// Supersedes every record of `id` fetched so far, however it is cached. Called
    /// under the fills lock, which orders it with the registration of fills.
    fn supersede_locked(&self, id: KeyId) {
        self.invalidations
            .invalidate(id, self.clock.now_unix_nanos());
    }

    /// [`CachedStore::invalidate`], under the fills lock.
    fn invalidate_id_locked(&self, fills: &mut HashMap<CacheKey, Arc<Fill>>, id: KeyId) {
        self.supersede_locked(id);
        self.invalidate_locked(fills, CacheKey::Id(id));
        match self.digests.remove(&id) {
            Some(digest) => self.invalidate_locked(fills, CacheKey::Digest(digest)),
            // The key may be an imported one whose digest lookup is in flight and not
            // yet indexed: stop every digest fill rather than risk one. (A digest
            // entry whose index entry is gone stays, superseded.)
            None => fills.retain(|key, _| !matches!(key, CacheKey::Digest(_))),
        }
    }

    /// Drops what is cached under the record's id and digest, positive or negative,
    /// without superseding anything: for a record just created.
    fn drop_record_locked(&self, fills: &mut HashMap<CacheKey, Arc<Fill>>, record: &KeyRecord) {
        self.invalidate_locked(fills, CacheKey::Id(record.id));
        self.invalidate_locked(fills, CacheKey::Digest(*record.digest.as_bytes()));
        self.digests.invalidate(&record.id);
    }

    /// A fresh answer for `key` at `now` (nanoseconds since the Unix epoch): the
    /// record, `Some(None)` for a fresh negative entry, or `None` on a miss. (The
    /// nesting is the lookup's own answer, `Option<record>`, inside a cache answer.)
    #[allow(clippy::option_option)]
    fn fresh(&self, key: &CacheKey, now: i128) -> Option<Option<Arc<CachedRecord>>> {
        if let Some(entry) = self.cache.get(key) {
            if now - i128::from(entry.fetched_at) < self.positive_ttl_nanos {
                // An entry by id is dropped by its key's invalidation; one by digest
                // may have lost its index entry and outlived it. (Nothing more is read
                // on the path of a hit by id.)
                if let (CacheKey::Digest(_), Some(record)) = (key, &entry.record) {
                    if self.invalidations.superseded(record) {
                        return None;
                    }
                }
                return Some(entry.record);
            }
        }
        let fetched_at = self.negatives.get(key)?;
        (now - i128::from(fetched_at) < self.negative_ttl_nanos).then_some(None)
    }

    /// The answer to a lookup that failed with `error`: a record past its TTL but
    /// within the stale-if-error window and fetched after its key's latest
    /// invalidation, or the error.
    fn stale_or(
        &self,
        key: &CacheKey,
        error: StoreError,
    ) -> Result<Option<Arc<CachedRecord>>, StoreError> {
        if self.stale_if_error_nanos > 0 {
            if let Some(Entry {
                record: Some(record),
                fetched_at,
            }) = self.cache.get(key)
            {
                let age = self.clock.now_unix_nanos() - i128::from(fetched_at);
                if age < self.positive_ttl_nanos + self.stale_if_error_nanos
                    && !self.invalidations.superseded(&record)
                {
                    tracing::debug!(
                        target: "tower_api_key",
                        key_id = record.id().as_str(),
                        %error,
                        "key store unavailable; answering from a stale cache entry"
                    );
                    metrics::counter!(STALE_ANSWERS_METRIC).increment(1);
                    return Ok(Some(record));
                }
            }
        }
        Err(error)
    }
}

/// Why a lookup was not made or not finished, wrapped in [`StoreError::Unavailable`].
#[derive(Debug, thiserror::Error)]
enum LookupRefused {
    #[error("too many key lookups in flight (the cap is {0})")]
    Overloaded(usize),
    #[error("the key lookup took longer than {0:?}")]
    TimedOut(Duration),
}

impl<S: KeyStore> CachedStore<S> {
    /// Looks a key up by id, through the cache.
    ///
    /// # Errors
    ///
    /// The store's error when the record is not cached and the store fails.
    pub async fn lookup_id(&self, id: &KeyId) -> Result<Option<Arc<CachedRecord>>, StoreError> {
        self.lookup(CacheKey::Id(*id)).await
    }

    /// Looks a key up by digest, through the cache.
    ///
    /// # Errors
    ///
    /// The store's error when the record is not cached and the store fails.
    pub async fn lookup_digest(
        &self,
        digest: &Digest,
    ) -> Result<Option<Arc<CachedRecord>>, StoreError> {
        self.lookup(CacheKey::Digest(*digest.as_bytes())).await
    }

    /// A fresh cached answer for `key`, without touching the store: `None` on a miss.
    /// `now` is in nanoseconds since the Unix epoch, on the cache's clock.
    pub(crate) fn peek(&self, key: &CacheKey, now: i128) -> Option<Cached> {
        let found = self.inner.fresh(key, now)?;
        Some(found.map_or(Cached::Unknown, Cached::Found))
    }

    pub(crate) async fn lookup(
        &self,
        key: CacheKey,
    ) -> Result<Option<Arc<CachedRecord>>, StoreError> {
        match self
            .lookup_gated(key, || Ok::<(), std::convert::Infallible>(()))
            .await
        {
            Ok((found, _)) => Ok(found),
            Err(Gated::Store(error)) => Err(error),
            Err(Gated::Refused(never)) => match never {},
        }
    }

    /// [`lookup`](Self::lookup), calling `gate` only when this request would make a
    /// store lookup itself (not for a cache hit, nor when it joins a lookup in flight
    /// for the same key). `gate` refusing means no lookup; its token is handed back
    /// with the answer of the lookup it let through.
    pub(crate) async fn lookup_gated<G, E>(
        &self,
        key: CacheKey,
        gate: impl FnOnce() -> Result<G, E>,
    ) -> Result<(Option<Arc<CachedRecord>>, Option<G>), Gated<E>> {
        let mut gate = Some(gate);
        let inner = &*self.inner;
        let now = inner.clock.now_unix_nanos();
        if let Some(found) = inner.fresh(&key, now) {
            return Ok((found, None));
        }
        loop {
            let (mut rx, fill) = {
                let mut fills = inner.lock_fills();
                if let Some(fill) = fills.get(&key) {
                    (fill.tx.subscribe(), None)
                } else {
                    // Re-check under the lock: a fill may have completed since the
                    // first look, and its insert happened under this lock.
                    if let Some(found) = inner.fresh(&key, now) {
                        return Ok((found, None));
                    }
                    let token = match gate.take().map(|gate| gate()) {
                        Some(Err(refused)) => return Err(Gated::Refused(refused)),
                        Some(Ok(token)) => Some(token),
                        None => None,
                    };
                    // Past the cap, fail now rather than queue for a connection.
                    let Ok(permit) = inner.lookups.try_acquire() else {
                        drop(fills);
                        metrics::counter!(LOOKUPS_REFUSED_METRIC, "reason" => "overloaded")
                            .increment(1);
                        let refused = LookupRefused::Overloaded(inner.max_lookups);
                        return inner
                            .stale_or(&key, StoreError::unavailable(refused))
                            .map(|found| (found, None))
                            .map_err(Gated::Store);
                    };
                    let (tx, rx) = watch::channel(None);
                    let fill = Arc::new(Fill { tx });
                    fills.insert(key, Arc::clone(&fill));
                    // Read under the lock that orders fills with invalidations.
                    let epoch = inner.invalidations.epoch();
                    (rx, Some((fill, permit, token, epoch)))
                }
            };
            if let Some((fill, permit, token, epoch)) = fill {
                let guard = FillGuard {
                    inner,
                    key,
                    fill: Some(fill),
                };
                let result = tokio::time::timeout(inner.lookup_timeout, inner.fetch(key, epoch))
                    .await
                    .unwrap_or_else(|_| {
                        metrics::counter!(LOOKUPS_REFUSED_METRIC, "reason" => "timeout")
                            .increment(1);
                        Err(StoreError::unavailable(LookupRefused::TimedOut(
                            inner.lookup_timeout,
                        )))
                    });
                drop(permit);
                guard.complete(result.clone());
                return match result {
                    Ok(entry) => Ok((entry.record, token)),
                    Err(error) => inner
                        .stale_or(&key, error)
                        .map(|found| (found, None))
                        .map_err(Gated::Store),
                };
            }
            // Another request is fetching: wait for it. If its future was dropped
            // before it finished, the channel closes and this request takes over.
            let settled = rx
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|v| v.clone());
            if let Some(result) = settled {
                return match result {
                    Ok(entry) => Ok((entry.record, None)),
                    Err(error) => inner
                        .stale_or(&key, error)
                        .map(|found| (found, None))
                        .map_err(Gated::Store),
                };
            }
        }
    }
}

impl<S: KeyStore> Inner<S> {
    /// Reads `key` from the store, for a fill registered at `epoch`.
    async fn fetch(&self, key: CacheKey, epoch: u64) -> FillResult {
        let found = match &key {
            CacheKey::Id(id) => self.store.get(id).await?,
            CacheKey::Digest(digest) => {
                let digest = Digest::from_bytes(*digest);
                self.store
                    .get_by_digest(&digest)
                    .await?
                    .filter(|r| r.digest.ct_eq(&digest))
            }
        };
        // A store may hand back a record that does not match what was asked for
        // (a bug, a corrupt row); never cache it under the wrong key.
        let found = found.filter(|r| match &key {
            CacheKey::Id(id) => r.id == *id,
            CacheKey::Digest(_) => true,
        });
        Ok(Entry {
            record: found.map(|record| {
                // Only a panic inside `intern` could poison it, leaving at worst a
                // value unshared.
                let mut interner = self.interner.lock().unwrap_or_else(PoisonError::into_inner);
                Arc::new(CachedRecord::new(record, Some(&mut interner), epoch))
            }),
            fetched_at: i64::try_from(self.clock.now_unix_nanos()).unwrap_or(i64::MIN),
        })
    }
}

/// Owns one registered fill. Completing it inserts the result (if the fill was not
/// invalidated meanwhile) and wakes the waiters; dropping it unfinished unregisters it
/// so a waiter can take over.
struct FillGuard<'a, S> {
    inner: &'a Inner<S>,
    key: CacheKey,
    fill: Option<Arc<Fill>>,
}

impl<S> FillGuard<'_, S> {
    fn complete(mut self, result: FillResult) {
        let Some(fill) = self.fill.take() else { return };
        {
            let mut fills = self.inner.lock_fills();
            let current = fills
                .get(&self.key)
                .is_some_and(|registered| Arc::ptr_eq(registered, &fill));
            if current {
                fills.remove(&self.key);
                if let Ok(entry) = &result {
                    match &entry.record {
                        Some(record) => {
                            if let CacheKey::Digest(digest) = &self.key {
                                self.inner.digests.insert(*record.id(), *digest);
                            }
                            self.inner.negatives.invalidate(&self.key);
                            self.inner.cache.insert(self.key, entry.clone());
                        }
                        None => {
                            // The key is gone: no stale copy may answer for it.
                            self.inner.cache.invalidate(&self.key);
                            self.inner.negatives.insert(self.key, entry.fetched_at);
                        }
                    }
                }
            }
        }
        fill.tx.send_replace(Some(result));
    }
}

impl<S> Drop for FillGuard<'_, S> {
    fn drop(&mut self) {
        if let Some(fill) = self.fill.take() {
            let mut fills = self.inner.lock_fills();
            if fills
                .get(&self.key)
                .is_some_and(|registered| Arc::ptr_eq(registered, &fill))
            {
                fills.remove(&self.key);
            }
        }
    }
}

impl<S: KeyStore> KeyStore for CachedStore<S> {
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.lookup_id(id).await?.map(|r| r.to_record()))
    }

    async fn get_by_digest(&self, digest: &Digest) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.lookup_digest(digest).await?.map(|r| r.to_record()))
    }
}

impl<S: ManagedKeyStore> ManagedKeyStore for CachedStore<S> {
    /// Passed to the store; whatever the outcome, every key the change names is
    /// dropped from the cache before this returns (a failed call may still have
    /// committed), so the next request through this cache sees the change. A key
    /// changed (updated, revoked, rotated, re-scoped) is invalidated as by
    /// [`CachedStore::invalidate`]: no record of it fetched before answers again, not
    /// even from the stale-if-error window.
    async fn apply(&self, change: Change<'_>, audit: &[AuditEntry]) -> Result<Applied, StoreError> {
        let result = self.inner.store.apply(change, audit).await;
        {
            let mut fills = self.inner.lock_fills();
            let inner = &*self.inner;
            match change {
                // A new key: drops a negative entry for the id or the digest.
                Change::Insert { record, .. } => inner.drop_record_locked(&mut fills, record),
                Change::Update(record) => {
                    inner.supersede_locked(record.id);
                    inner.drop_record_locked(&mut fills, record);
                }
                Change::Rotate { id, successor, .. } => {
                    inner.drop_record_locked(&mut fills, successor);
                    inner.invalidate_id_locked(&mut fills, *id);
                }
                Change::Revoke { id, .. }
                | Change::SetScopes { id, .. }
                | Change::Rename { id, .. } => {
                    inner.invalidate_id_locked(&mut fills, *id);
                }
            }
        }
        result
    }

    async fn list_by_owner(&self, owner: &Owner) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.store.list_by_owner(owner).await
    }

    /// Passed straight to the store. Cached records keep their older `last_used_at`
    /// (nothing on the request path reads it), so the cache stays warm.
    async fn touch_last_used(&self, batch: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        self.inner.store.touch_last_used(batch).await
    }

    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.store.audit_log(query).await
    }

    async fn list_page(&self, query: &KeyQuery) -> Result<KeyPage, StoreError> {
        self.inner.store.list_page(query).await
    }

    async fn add_usage(&self, batch: &[UsageBucket]) -> Result<(), StoreError> {
        self.inner.store.add_usage(batch).await
    }

    async fn usage(
        &self,
        key: &KeyId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        self.inner.store.usage(key, from, to).await
    }

    async fn prune_usage(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.inner.store.prune_usage(before).await
    }
}

impl<S: fmt::Debug> fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("store", &self.inner.store)
            .field("entries", &self.inner.cache.entry_count())
            .field("negative_entries", &self.inner.negatives.entry_count())
            .field("positive_ttl", &self.inner.positive_ttl)
            .field("negative_ttl", &self.inner.negative_ttl)
            .field("stale_if_error", &self.inner.stale_if_error)
            .field("max_lookups", &self.inner.max_lookups)
            .field("lookup_timeout", &self.inner.lookup_timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::MemoryStore;

    #[test]
    fn the_fast_status_agrees_with_the_record_at_every_boundary() {
        // Today, before 1970, and past 2262 (outside nanoseconds in an `i64`).
        for days in [20_000, -5_000, 110_000] {
            agrees_at_every_boundary(OffsetDateTime::UNIX_EPOCH + time::Duration::days(days));
        }
    }

    fn agrees_at_every_boundary(t0: OffsetDateTime) {
        let secs = time::Duration::seconds;
        let base = KeyRecord::imported(
            KeyId::new("status1").unwrap(),
            Digest::of("k"),
            "p",
            "n",
            Owner::organization("acme"),
            vec![],
            t0,
        );
        let mut expiring = base.clone();
        expiring.expires_at = Some(t0 + secs(10));
        let mut revoked = expiring.clone();
        revoked.revoked_at = Some(t0 + secs(5));
        let mut rotated = base.clone();
        rotated.rotation = Some(super::super::Rotation {
            superseded_by: KeyId::new("status2").unwrap(),
            valid_until: t0 + secs(7),
        });
        let mut rotated_and_expiring = rotated.clone();
        rotated_and_expiring.expires_at = Some(t0 + secs(3));
        for record in [base, expiring, revoked, rotated, rotated_and_expiring] {
            let cached = CachedRecord::new(record.clone(), None, 0);
            for offset in [-1, 0, 1] {
                for at in [0, 3, 5, 7, 10, 20] {
                    let now = t0 + secs(at) + time::Duration::nanoseconds(offset);
                    assert_eq!(
                        cached.status_at_unix_nanos(now.unix_timestamp_nanos()),
                        record.status_at(now),
                        "{record:?} at {now}"
                    );
                }
            }
        }
    }

    #[test]
    fn abuse_bounds_are_validated_at_build_time() {
        let builder = || CachedStore::builder(MemoryStore::new());
        assert!(builder().build().is_ok());
        for bad in [
            builder().with_max_concurrent_lookups(0),
            builder().with_max_concurrent_lookups(1_000_001),
            builder().with_lookup_timeout(Duration::ZERO),
            builder().with_lookup_timeout(Duration::from_secs(61)),
            builder().with_stale_if_error(Duration::from_secs(86_401)),
            builder().with_max_negative_entries(0),
        ] {
            assert!(bad.build().is_err());
        }
        assert!(builder()
            .with_stale_if_error(Duration::ZERO)
            .with_max_concurrent_lookups(1)
            .build()
            .is_ok());
    }

    /// A cache over a memory store holding one imported key, looked up by digest, with
    /// at most one store lookup at once.
    async fn with_imported_key(
        configure: impl FnOnce(CachedStoreBuilder<MemoryStore>) -> CachedStoreBuilder<MemoryStore>,
    ) -> (CachedStore<MemoryStore>, ManualClock, KeyRecord) {
        let clock = ManualClock::default();
        let cache = configure(
            CachedStore::builder(MemoryStore::new())
                .with_clock(clock.clone())
                .with_max_concurrent_lookups(1),
        )
        .build()
        .unwrap();
        let record = KeyRecord::imported(
            KeyId::generate().unwrap(),
            Digest::of(&format!("legacy_{}", KeyId::generate().unwrap())),
            "legacy_",
            "n",
            Owner::organization("acme"),
            vec!["reports:write".into()],
            clock.now(),
        );
        cache.insert(&record).await.unwrap();
        let found = cache.lookup_digest(&record.digest).await.unwrap().unwrap();
        assert_eq!(*found.id(), record.id);
        (cache, clock, record)
    }

    /// As moka may do to the index under capacity pressure (or refuse to admit it).
    fn evict_index_entry(cache: &CachedStore<MemoryStore>, id: &KeyId) {
        cache.inner.digests.invalidate(id);
        cache.inner.digests.run_pending_tasks();
        assert!(!cache.inner.digests.contains_key(id));
    }

    /// The store "down" for every lookup: its only permit is held, so each miss is
    /// refused at once and may be answered from the stale window.
    fn down(cache: &CachedStore<MemoryStore>) -> tokio::sync::SemaphorePermit<'_> {
        cache.inner.lookups.try_acquire().unwrap()
    }

    #[tokio::test]
    async fn a_revoked_key_whose_index_entry_was_evicted_is_never_served_stale() {
        let (cache, clock, record) = with_imported_key(|b| b).await;
        evict_index_entry(&cache, &record.id);
        cache.revoke(&record.id, clock.now()).await.unwrap();
        let _down = down(&cache);
        for _ in 0..2 {
            clock.advance(DEFAULT_TTL);
            assert!(
                cache.lookup_digest(&record.digest).await.is_err(),
                "the record from before the revocation answered from the stale window"
            );
        }
    }

    #[tokio::test]
    async fn a_revoked_key_whose_index_entry_was_evicted_is_read_again_at_once() {
        let (cache, clock, record) = with_imported_key(|b| b).await;
        evict_index_entry(&cache, &record.id);
        cache
            .get_ref()
            .revoke(&record.id, clock.now())
            .await
            .unwrap();
        cache.invalidate(&record.id);
        // Still within the TTL: the entry under the digest is fresh, but superseded.
        let found = cache.lookup_digest(&record.digest).await.unwrap().unwrap();
        assert!(found.revoked_at().is_some(), "{found:?}");
        // What was read after the revocation answers from the stale window.
        let _down = down(&cache);
        clock.advance(DEFAULT_TTL);
        let stale = cache.lookup_digest(&record.digest).await.unwrap().unwrap();
        assert!(stale.revoked_at().is_some(), "{stale:?}");
    }

    #[tokio::test]
    async fn the_digest_index_lives_as_long_as_the_records() {
        // A TTL that real time passes at once: moka measures expiry in real time.
        let ttl = Duration::from_nanos(1);
        let (cache, _, record) =
            with_imported_key(|b| b.with_ttl(ttl).with_negative_ttl(ttl)).await;
        // Purges what has expired.
        cache.inner.digests.run_pending_tasks();
        cache.invalidate(&record.id);
        let key = CacheKey::Digest(*record.digest.as_bytes());
        assert!(
            !cache.inner.cache.contains_key(&key),
            "invalidating the id left the entry under the digest"
        );
    }

    #[tokio::test]
    async fn invalidations_forgotten_past_the_cap_still_supersede() {
        // At most 2 invalidations remembered.
        let (cache, clock, record) = with_imported_key(|b| b.with_max_entries(2)).await;
        evict_index_entry(&cache, &record.id);
        cache.revoke(&record.id, clock.now()).await.unwrap();
        for _ in 0..3 {
            cache.invalidate(&KeyId::generate().unwrap());
        }
        assert_eq!(
            cache.inner.invalidations.len(),
            2,
            "the revocation is forgotten"
        );
        let down_now = down(&cache);
        clock.advance(DEFAULT_TTL);
        assert!(
            cache.lookup_digest(&record.digest).await.is_err(),
            "the record from before the revocation answered from the stale window"
        );
        // A record read after the forgotten invalidation keeps its window.
        drop(down_now);
        let read = cache.lookup_digest(&record.digest).await.unwrap().unwrap();
        assert!(read.revoked_at().is_some());
        let _down = down(&cache);
        clock.advance(DEFAULT_TTL);
        let stale = cache.lookup_digest(&record.digest).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&stale, &read));
    }

    #[tokio::test]
    async fn invalidations_are_forgotten_after_the_ttl_and_the_window() {
        let (cache, clock, record) = with_imported_key(|b| b).await;
        for _ in 0..10 {
            cache.invalidate(&KeyId::generate().unwrap());
        }
        assert_eq!(cache.inner.invalidations.len(), 10);
        clock.advance(DEFAULT_TTL + DEFAULT_STALE_IF_ERROR - Duration::from_nanos(1));
        cache.invalidate(&KeyId::generate().unwrap());
        assert_eq!(cache.inner.invalidations.len(), 11, "all still needed");
        clock.advance(Duration::from_nanos(1));
        cache.invalidate(&KeyId::generate().unwrap());
        assert_eq!(
            cache.inner.invalidations.len(),
            2,
            "the first ten are forgotten"
        );
        // A record read since keeps its stale window.
        assert!(cache.lookup_digest(&record.digest).await.unwrap().is_some());
        let _down = down(&cache);
        clock.advance(DEFAULT_TTL);
        assert!(cache.lookup_digest(&record.digest).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn invalidating_a_digest_drops_a_negative_entry() {
        let store = MemoryStore::new();
        let cache = CachedStore::builder(store.clone())
            .with_clock(ManualClock::default())
            .build()
            .unwrap();
        let digest = Digest::of("foreign-key");
        assert!(cache.lookup_digest(&digest).await.unwrap().is_none());
        // Imported behind the cache's back (by another instance).
        let record = KeyRecord::imported(
            KeyId::new("imported1").unwrap(),
            digest,
            "foreign",
            "n",
            Owner::organization("acme"),
            vec![],
            OffsetDateTime::UNIX_EPOCH,
        );
        store.insert(&record).await.unwrap();
        assert!(
            cache.lookup_digest(&digest).await.unwrap().is_none(),
            "still negatively cached"
        );
        cache.invalidate_digest(&digest);
        let found = cache.lookup_digest(&digest).await.unwrap().unwrap();
        assert_eq!(*found.id(), record.id);
    }
}
