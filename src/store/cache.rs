use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use super::{Applied, Change, KeyRecord, KeyStatus, KeyStore, Owner, StoreError};
use crate::audit::{AuditEntry, AuditQuery};
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::key::{Digest, KeyId};
use crate::scope::{Grants, ScopeModel};
use crate::ConfigError;

/// A bounded, single-flight cache of key records in front of any [`KeyStore`].
///
/// # What is cached
///
/// Records, never verdicts: expiry, revocation and rotation grace are evaluated
/// against the clock on every request, so a key that expires is refused on its first
/// request after expiry even when its record comes from the cache. Unknown ids are
/// cached too, as negative entries with a shorter TTL, so a flood of well-formed but
/// unknown keys does not reach the store. Store errors are never cached.
///
/// # Revocation
///
/// Every change made through this type ([`KeyStore::apply`], and the `insert`,
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
    cache: moka::sync::Cache<CacheKey, Entry, ahash::RandomState>,
    /// Digests of imported keys whose record is cached under their digest, so that
    /// invalidating an id also drops the digest entry.
    digests: moka::sync::Cache<KeyId, [u8; 32], ahash::RandomState>,
    fills: Mutex<HashMap<CacheKey, Arc<Fill>>>,
    clock: SharedClock,
    positive_ttl: Duration,
    negative_ttl: Duration,
    /// The TTLs in nanoseconds, for the request path's integer comparison.
    positive_ttl_nanos: i128,
    negative_ttl_nanos: i128,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CacheKey {
    Id(KeyId),
    Digest([u8; 32]),
}

#[derive(Clone)]
struct Entry {
    record: Option<Arc<CachedRecord>>,
    /// Nanoseconds since the Unix epoch, on the cache's clock; `i64::MIN` (always
    /// stale) for a reading outside 1677–2262. An `i64` rather than an `i128`, whose
    /// 16-byte alignment would pad every cache entry.
    fetched_at: i64,
}

type FillResult = Result<Entry, StoreError>;

/// A record as the cache holds it, with what is derived from it once per fill rather
/// than once per request (its scope grants). Dereferences to the [`KeyRecord`].
pub struct CachedRecord {
    record: KeyRecord,
    grants: OnceLock<Grants>,
    /// Before this instant (nanoseconds since the Unix epoch) the key is plainly
    /// active: not revoked, not expired, not rotated. Checked with one integer
    /// comparison on every request; the full status is worked out only from then on,
    /// or always when the instant falls outside 1677–2262 (`i64::MIN`).
    active_until: i64,
}

impl CachedRecord {
    pub(crate) fn new(record: KeyRecord) -> Self {
        let active_until = if record.rotation.is_some() {
            i64::MIN
        } else {
            [record.revoked_at, record.expires_at]
                .into_iter()
                .flatten()
                .map(OffsetDateTime::unix_timestamp_nanos)
                .min()
                .map_or(i64::MAX, |at| i64::try_from(at).unwrap_or(i64::MIN))
        };
        Self {
            record,
            grants: OnceLock::new(),
            active_until,
        }
    }

    /// The record's status at `now` (nanoseconds since the Unix epoch): the same
    /// answer as [`KeyRecord::status_at`], without building a date while the key is
    /// plainly active.
    pub(crate) fn status_at_unix_nanos(&self, now: i128) -> KeyStatus {
        // A clock before 1970 always takes the full check.
        if (0..i128::from(self.active_until)).contains(&now) {
            KeyStatus::Active
        } else {
            self.record.status_at(crate::clock::from_unix_nanos(now))
        }
    }

    /// The record's grants under `model`, resolved on first use and kept with the
    /// record (a different model resolves afresh).
    pub(crate) fn grants(&self, model: &ScopeModel) -> Cow<'_, Grants> {
        let cached = self
            .grants
            .get_or_init(|| model.grants(&self.record.scopes));
        if cached.belongs_to(model) {
            Cow::Borrowed(cached)
        } else {
            Cow::Owned(model.grants(&self.record.scopes))
        }
    }

    /// The record.
    pub fn record(&self) -> &KeyRecord {
        &self.record
    }
}

impl std::ops::Deref for CachedRecord {
    type Target = KeyRecord;

    fn deref(&self) -> &KeyRecord {
        &self.record
    }
}

impl fmt::Debug for CachedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.record, f)
    }
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

/// Builds a [`CachedStore`]; see [`CachedStore::builder`].
#[must_use]
pub struct CachedStoreBuilder<S> {
    store: S,
    positive_ttl: Duration,
    negative_ttl: Duration,
    max_entries: u64,
    max_bytes: u64,
    clock: SharedClock,
}

impl<S: fmt::Debug> fmt::Debug for CachedStoreBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStoreBuilder")
            .field("store", &self.store)
            .field("positive_ttl", &self.positive_ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// The default positive TTL: 30 seconds.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// The default negative TTL: 5 seconds.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);

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

    /// The clock that measures entry age (the system clock by default).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the cache.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when a TTL is zero or longer than a day, the negative TTL is
    /// longer than the positive one, or a bound is zero.
    pub fn build(self) -> Result<CachedStore<S>, ConfigError> {
        const DAY: Duration = Duration::from_secs(86_400);
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
        if self.max_entries == 0 || self.max_bytes == 0 {
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
            // One TTL for every entry, the positive one: moka then keeps a write-order
            // queue rather than a timer wheel, which reads would have to update. A
            // negative entry is stale after the negative TTL all the same (`fresh`
            // checks every read), and is replaced by the next lookup.
            .time_to_live(positive_ttl)
            .build_with_hasher(ahash::RandomState::new());
        let digests = moka::sync::Cache::builder()
            .max_capacity(self.max_entries)
            .time_to_live(positive_ttl)
            .build_with_hasher(ahash::RandomState::new());
        Ok(CachedStore {
            inner: Arc::new(Inner {
                store: self.store,
                cache,
                digests,
                fills: Mutex::new(HashMap::new()),
                clock: self.clock,
                positive_ttl,
                negative_ttl,
                positive_ttl_nanos: positive_ttl.as_nanos().try_into().unwrap_or(i128::MAX),
                negative_ttl_nanos: negative_ttl.as_nanos().try_into().unwrap_or(i128::MAX),
            }),
        })
    }
}

impl<S> CachedStore<S> {
    /// A builder with the defaults: 30 s positive TTL, 5 s negative TTL, at most
    /// 1,000,000 entries and 256 MiB, the system clock.
    pub fn builder(store: S) -> CachedStoreBuilder<S> {
        CachedStoreBuilder {
            store,
            positive_ttl: DEFAULT_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            max_entries: 1_000_000,
            max_bytes: 256 * 1024 * 1024,
            clock: Arc::new(SystemClock),
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

    /// Drops everything cached for `id` and stops any lookup in flight for it from
    /// filling the cache. Call it when a key changed behind this cache's back (another
    /// instance revoked it).
    pub fn invalidate(&self, id: &KeyId) {
        let mut fills = self.inner.lock_fills();
        self.inner.invalidate_locked(&mut fills, CacheKey::Id(*id));
        match self.inner.digests.remove(id) {
            Some(digest) => self
                .inner
                .invalidate_locked(&mut fills, CacheKey::Digest(digest)),
            // The key may be an imported one whose digest lookup is in flight and not
            // yet indexed: stop every digest fill rather than risk one.
            None => fills.retain(|key, _| !matches!(key, CacheKey::Digest(_))),
        }
    }

    /// Drops the entry cached under `digest` (an imported key's lookup), positive or
    /// negative, and stops a lookup in flight for it from filling the cache.
    pub fn invalidate_digest(&self, digest: &Digest) {
        let mut fills = self.inner.lock_fills();
        self.inner
            .invalidate_locked(&mut fills, CacheKey::Digest(*digest.as_bytes()));
    }

    /// Drops everything cached for this record, by id and by digest.
    pub fn invalidate_record(&self, record: &KeyRecord) {
        let mut fills = self.inner.lock_fills();
        self.inner
            .invalidate_locked(&mut fills, CacheKey::Id(record.id));
        self.inner
            .invalidate_locked(&mut fills, CacheKey::Digest(*record.digest.as_bytes()));
        self.inner.digests.invalidate(&record.id);
    }

    /// Drops the whole cache, for example after a missed notification.
    pub fn invalidate_all(&self) {
        let mut fills = self.inner.lock_fills();
        fills.clear();
        self.inner.cache.invalidate_all();
        self.inner.digests.invalidate_all();
    }

    /// The number of entries currently cached, positive and negative. Pending
    /// maintenance is run first, so the count is exact.
    pub fn entry_count(&self) -> u64 {
        self.inner.cache.run_pending_tasks();
        self.inner.cache.entry_count()
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
    }

    /// Whether `entry` is still fresh at `now` (nanoseconds since the Unix epoch).
    fn fresh(&self, entry: &Entry, now: i128) -> bool {
        let ttl = if entry.record.is_some() {
            self.positive_ttl_nanos
        } else {
            self.negative_ttl_nanos
        };
        now - i128::from(entry.fetched_at) < ttl
    }
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
        let inner = &*self.inner;
        let entry = inner.cache.get(key)?;
        if !inner.fresh(&entry, now) {
            return None;
        }
        Some(entry.record.map_or(Cached::Unknown, Cached::Found))
    }

    pub(crate) async fn lookup(
        &self,
        key: CacheKey,
    ) -> Result<Option<Arc<CachedRecord>>, StoreError> {
        let inner = &*self.inner;
        let now = inner.clock.now_unix_nanos();
        if let Some(entry) = inner.cache.get(&key) {
            if inner.fresh(&entry, now) {
                return Ok(entry.record);
            }
        }
        loop {
            let (mut rx, fill) = {
                let mut fills = inner.lock_fills();
                if let Some(fill) = fills.get(&key) {
                    (fill.tx.subscribe(), None)
                } else {
                    // Re-check under the lock: a fill may have completed since the
                    // first look, and its insert happened under this lock.
                    if let Some(entry) = inner.cache.get(&key) {
                        if inner.fresh(&entry, now) {
                            return Ok(entry.record);
                        }
                    }
                    let (tx, rx) = watch::channel(None);
                    let fill = Arc::new(Fill { tx });
                    fills.insert(key, Arc::clone(&fill));
                    (rx, Some(fill))
                }
            };
            if let Some(fill) = fill {
                let guard = FillGuard {
                    inner,
                    key,
                    fill: Some(fill),
                };
                let result = inner.fetch(key).await;
                guard.complete(result.clone());
                return result.map(|entry| entry.record);
            }
            // Another request is fetching: wait for it. If its future was dropped
            // before it finished, the channel closes and this request takes over.
            let settled = rx
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|v| v.clone());
            if let Some(result) = settled {
                return result.map(|entry| entry.record);
            }
        }
    }
}

impl<S: KeyStore> Inner<S> {
    async fn fetch(&self, key: CacheKey) -> FillResult {
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
            record: found.map(|r| Arc::new(CachedRecord::new(r))),
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
                    if let (CacheKey::Digest(digest), Some(record)) = (&self.key, &entry.record) {
                        self.inner.digests.insert(record.id, *digest);
                    }
                    self.inner.cache.insert(self.key, entry.clone());
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
        Ok(self.lookup_id(id).await?.map(|r| r.record.clone()))
    }

    async fn get_by_digest(&self, digest: &Digest) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.lookup_digest(digest).await?.map(|r| r.record.clone()))
    }

    /// Passed to the store; whatever the outcome, every key the change names is
    /// dropped from the cache before this returns (a failed call may still have
    /// committed), so the next request through this cache sees the change.
    async fn apply(&self, change: Change<'_>, audit: &[AuditEntry]) -> Result<Applied, StoreError> {
        let result = self.inner.store.apply(change, audit).await;
        match change {
            // Drops a negative entry for the id or the digest.
            Change::Insert(record) | Change::Update(record) => self.invalidate_record(record),
            Change::Rotate { id, successor, .. } => {
                self.invalidate_record(successor);
                self.invalidate(id);
            }
            Change::Revoke { id, .. } | Change::SetScopes { id, .. } => self.invalidate(id),
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
}

impl<S: fmt::Debug> fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("store", &self.inner.store)
            .field("entries", &self.inner.cache.entry_count())
            .field("positive_ttl", &self.inner.positive_ttl)
            .field("negative_ttl", &self.inner.negative_ttl)
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
            let cached = CachedRecord::new(record.clone());
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
        assert_eq!(found.id, record.id);
    }
}
