//! The in-process backend: GCRA from `governor`, state in bounded moka caches.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::Clock as GovernorClock;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use time::OffsetDateTime;

use super::backend::over_burst;
use super::gcra::{bucket_status, duration_between, nanos_since_epoch, nanos_u64, quota_status};
use super::{Decision, LimitRequest, QuotaRequest, QuotaStatus, RatePolicy, RateStatus};
use crate::error::ConfigError;
use crate::key::KeyId;
use crate::store::Owner;

/// The default bound on rate-limit buckets.
pub const DEFAULT_MAX_PARTITIONS: u64 = 100_000;

/// The default bound on quota counters.
pub const DEFAULT_MAX_QUOTA_OWNERS: u64 = 100_000;

/// Slack added to cache lifetimes, so an entry is never dropped while it still holds
/// state that matters.
const EXPIRY_MARGIN: Duration = Duration::from_secs(1);

/// The longest a cache entry is kept idle, whatever the policy.
const MAX_IDLE: Duration = Duration::from_secs(400 * 86_400);

/// The in-process [`Limiter`](super::Limiter): one GCRA bucket per partition, computed by
/// [`governor`], plus one counter per owner for quotas.
///
/// Through [`Limits`](super::Limits) (the rate-limit layer, `ApiKeyAuth`'s guards,
/// [`Limits::check`](super::Limits::check)), a key's bucket is kept beside its cached
/// record: an admitted request spends it with one compare-and-swap, with no bucket id
/// built and no map lookup. The buckets live in a registry keyed by policy and
/// partition, so every fill of a record (after its TTL, an invalidation, an eviction)
/// finds the same bucket again: a bucket is never dropped while a cached record holds
/// it or while it is partly spent, unless the registry is full (see below).
///
/// Memory stays bounded whatever the number of keys: at most
/// [`with_max_partitions`](Self::with_max_partitions) buckets, beyond those that
/// cached records hold (themselves bounded by the cache's capacity), and
/// [`with_max_quota_owners`](Self::with_max_quota_owners) counters. A full registry
/// drops the full buckets no record holds (a full bucket is the same as a new one),
/// then, if that is not enough, the partly spent ones no record holds, those closest to
/// full first: eviction under pressure errs toward letting requests through, so size
/// the bound above the number of partitions active at once. Requests decided by a
/// string bucket id ([`decide`](Self::decide), [`Limiter::check`](super::Limiter::check)) use a separate
/// bounded cache, least recently used first; a counter is dropped when its period ends.
///
/// Clones share the state. Limits are per process: behind a load balancer, each
/// instance enforces its own.
///
/// ```
/// use tower_api_key::rate_limit::{Decision, LimitRequest, MemoryLimiter, RatePolicy};
///
/// let limiter = MemoryLimiter::new().with_max_partitions(10_000)?;
/// let now = time::macros::datetime!(2026-01-01 0:00 UTC);
/// let request = LimitRequest::new("rl:default:key:abc", "2/s".parse::<RatePolicy>()?, 1, now);
/// assert!(limiter.decide(&request).is_allowed());
/// assert!(limiter.decide(&request).is_allowed());
/// assert!(matches!(limiter.decide(&request), Decision::Limited(_)));
/// # Ok::<(), tower_api_key::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct MemoryLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    buckets: Cache<String, Arc<Bucket>, ahash::RandomState>,
    counters: Cache<String, Arc<Counter>, ahash::RandomState>,
    /// The buckets [`Limits`](super::Limits) keeps beside cached key records, by a
    /// fixed-size id: see [`MemoryLimiter::cell`].
    cells: Mutex<HashMap<CellKey, Arc<Bucket>, ahash::RandomState>>,
    /// Unique per limiter (clones share it), for the slots that remember a bucket.
    id: u64,
    max_partitions: u64,
    max_quota_owners: u64,
}

/// Which bucket a key spends from, without building a string: the policy (by its
/// bucket prefix, as the string ids name it) and the partition.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct CellKey {
    pub(crate) policy: Arc<str>,
    pub(crate) partition: CellPartition,
}

/// The partition part of a [`CellKey`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum CellPartition {
    Key(KeyId),
    Family(KeyId),
    Owner(Owner),
}

/// GCRA state: governor's theoretical arrival time, in nanoseconds since 1970.
pub(crate) struct Bucket {
    state: InMemoryState,
    /// How long the bucket is kept after a use that extends its life: twice the
    /// policy's refill time (idle that long, the bucket is full), see [`BucketExpiry`].
    keep: Duration,
}

struct Counter {
    cell: Mutex<CounterCell>,
    /// Until the end of the period the counter was created in.
    ttl: Duration,
}

#[derive(Default)]
struct CounterCell {
    /// The start of the period `used` belongs to, as a Unix timestamp.
    period: i64,
    used: u64,
}

impl MemoryLimiter {
    /// A limiter holding at most [`DEFAULT_MAX_PARTITIONS`] buckets and
    /// [`DEFAULT_MAX_QUOTA_OWNERS`] quota counters.
    pub fn new() -> Self {
        Self::build(DEFAULT_MAX_PARTITIONS, DEFAULT_MAX_QUOTA_OWNERS)
    }

    /// Bounds the number of rate-limit buckets. Returns an empty limiter.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `max` is zero: every request would get a fresh bucket,
    /// which is no limit at all.
    pub fn with_max_partitions(self, max: u64) -> Result<Self, ConfigError> {
        if max == 0 {
            return Err(ConfigError::new(
                "rate limit: max_partitions must be at least 1",
            ));
        }
        Ok(Self::build(max, self.inner.max_quota_owners))
    }

    /// Bounds the number of quota counters (one per owner with a quota). Returns an
    /// empty limiter.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `max` is zero.
    pub fn with_max_quota_owners(self, max: u64) -> Result<Self, ConfigError> {
        if max == 0 {
            return Err(ConfigError::new(
                "rate limit: max_quota_owners must be at least 1",
            ));
        }
        Ok(Self::build(self.inner.max_partitions, max))
    }

    fn build(max_partitions: u64, max_quota_owners: u64) -> Self {
        let buckets = Cache::builder()
            .max_capacity(max_partitions)
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(BucketExpiry)
            .build_with_hasher(ahash::RandomState::new());
        let counters = Cache::builder()
            .max_capacity(max_quota_owners)
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(CounterExpiry)
            .build_with_hasher(ahash::RandomState::new());
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self {
            inner: Arc::new(Inner {
                buckets,
                counters,
                cells: Mutex::new(HashMap::with_hasher(ahash::RandomState::new())),
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                max_partitions,
                max_quota_owners,
            }),
        }
    }

    /// This limiter's id, shared by its clones.
    pub(crate) fn id(&self) -> u64 {
        self.inner.id
    }

    /// The bucket of `key`, made when first asked: what [`Limits`](super::Limits)
    /// keeps in a cached key record's slot, so that an admitted request spends it with
    /// one atomic update instead of a map lookup.
    ///
    /// A bucket is never dropped while a cached record holds it (its `Arc` is shared)
    /// or while it is partly spent, so neither a record's eviction, nor its refill after
    /// the cache TTL, nor an invalidation gives a key a fresh burst: the next fill finds
    /// the same bucket here. Full buckets that no record holds are swept when the
    /// registry reaches [`with_max_partitions`](Self::with_max_partitions); if that is
    /// not enough, partly spent ones that no record holds go too (as the map of string
    /// ids evicts under pressure: erring toward letting requests through). Buckets that
    /// records hold are bounded by the cache's capacity.
    pub(crate) fn cell(&self, key: &CellKey, policy: &RatePolicy, now: u64) -> Arc<Bucket> {
        let mut cells = self
            .inner
            .cells
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(bucket) = cells.get(key) {
            return Arc::clone(bucket);
        }
        if cells.len() as u64 >= self.inner.max_partitions {
            sweep(&mut cells, self.inner.max_partitions, now);
        }
        let bucket = Arc::new(Bucket {
            state: InMemoryState::default(),
            keep: bucket_keep(policy.refill_time()),
        });
        cells.insert(key.clone(), Arc::clone(&bucket));
        bucket
    }

    /// How many buckets are held: those of [`Limits`](super::Limits) (kept beside
    /// cached key records) and those of string bucket ids ([`decide`](Self::decide)).
    /// The latter are approximate until [`run_pending_tasks`](Self::run_pending_tasks)
    /// has run.
    pub fn partition_count(&self) -> u64 {
        let cells = self
            .inner
            .cells
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        self.inner.buckets.entry_count() + cells as u64
    }

    /// How many quota counters are held. Approximate until
    /// [`run_pending_tasks`](Self::run_pending_tasks) has run.
    pub fn quota_owner_count(&self) -> u64 {
        self.inner.counters.entry_count()
    }

    /// Applies pending evictions and expirations now (they otherwise happen a little
    /// at a time, during later calls).
    pub fn run_pending_tasks(&self) {
        self.inner.buckets.run_pending_tasks();
        self.inner.counters.run_pending_tasks();
    }

    /// Decides on one request, synchronously. [`Limiter::check`](super::Limiter::check) wraps this.
    pub fn decide(&self, request: &LimitRequest) -> Decision {
        if let Some(refused) = over_burst(request) {
            return refused;
        }
        let policy = &request.policy;
        let bucket = self
            .inner
            .buckets
            .get_with_by_ref(request.bucket.as_str(), || {
                Arc::new(Bucket {
                    state: InMemoryState::default(),
                    keep: bucket_keep(policy.refill_time()),
                })
            });
        self.decide_in(
            &bucket,
            policy,
            request.cost,
            nanos_since_epoch(request.now),
            request.quota.as_ref().map(|quota| (quota, request.now)),
        )
    }

    /// Decides on a request of `cost` against `bucket` under `policy` at `now`
    /// (nanoseconds since 1970), and the owner's quota when there is one (with the same
    /// instant as a date). The cost is at most the policy's burst.
    pub(crate) fn decide_in(
        &self,
        bucket: &Bucket,
        policy: &RatePolicy,
        cost: u32,
        now: u64,
        quota: Option<(&QuotaRequest, OffsetDateTime)>,
    ) -> Decision {
        let gcra = Gcra::new(policy, now);
        let Some(cost_units) = NonZeroU32::new(cost) else {
            // Free: report the bucket as it stands.
            return Decision::Allowed(gcra.status(policy, read(&bucket.state), None));
        };
        let Some((quota, at)) = quota else {
            // No quota to reserve: one take, which looks and spends in one
            // compare-and-swap.
            let take = View::take(&bucket.state);
            return match gcra.check(&take, cost_units) {
                Ok(()) => Decision::Allowed(gcra.status(policy, take.stored.get(), None)),
                Err(wait) => Decision::Limited(gcra.status(policy, take.seen.get(), Some(wait))),
            };
        };

        // Look first, so that a request refused here or by the quota spends nothing.
        let peek = View::peek(&bucket.state);
        if let Err(wait) = gcra.check(&peek, cost_units) {
            return Decision::Limited(gcra.status(policy, peek.seen.get(), Some(wait)));
        }
        let reservation = match self.reserve(quota, at, cost) {
            Ok(reservation) => reservation,
            Err(status) => return Decision::QuotaExceeded(status),
        };
        let take = View::take(&bucket.state);
        match gcra.check(&take, cost_units) {
            Ok(()) => Decision::Allowed(gcra.status(policy, take.stored.get(), None)),
            Err(wait) => {
                // Another request took the units between the look and the take.
                reservation.release();
                Decision::Limited(gcra.status(policy, take.seen.get(), Some(wait)))
            }
        }
    }

    fn reserve(
        &self,
        quota: &QuotaRequest,
        now: OffsetDateTime,
        cost: u32,
    ) -> Result<Reservation, QuotaStatus> {
        let counter = self
            .inner
            .counters
            .get_with_by_ref(quota.counter.as_str(), || {
                let left = duration_between(now, quota.period_end);
                Arc::new(Counter {
                    cell: Mutex::new(CounterCell::default()),
                    ttl: (left + EXPIRY_MARGIN).min(MAX_IDLE),
                })
            });
        let period = quota.period_start.unix_timestamp();
        let cost = u64::from(cost);
        let mut cell = counter.lock();
        if cell.period != period {
            *cell = CounterCell { period, used: 0 };
        }
        let limit = quota.policy.limit();
        if cell.used.saturating_add(cost) > limit {
            return Err(quota_status(quota, cell.used, now));
        }
        cell.used += cost;
        drop(cell);
        Ok(Reservation {
            counter,
            period,
            cost,
        })
    }
}

impl Default for MemoryLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLimiter")
            .field("partitions", &self.partition_count())
            .field("max_partitions", &self.inner.max_partitions)
            .field("quota_owners", &self.quota_owner_count())
            .field("max_quota_owners", &self.inner.max_quota_owners)
            .finish()
    }
}

impl Counter {
    fn lock(&self) -> std::sync::MutexGuard<'_, CounterCell> {
        // The cell is two integers written together; a panic cannot leave it torn.
        self.cell.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Quota units taken for a request that may still be refused by the rate limiter.
struct Reservation {
    counter: Arc<Counter>,
    period: i64,
    cost: u64,
}

impl Reservation {
    fn release(self) {
        let mut cell = self.counter.lock();
        // A counter that moved on to the next period has nothing of ours to give back.
        if cell.period == self.period {
            cell.used = cell.used.saturating_sub(self.cost);
        }
    }
}

/// governor's GCRA over one bucket, at one instant.
struct Gcra {
    quota: governor::Quota,
    now: u64,
}

impl Gcra {
    fn new(policy: &RatePolicy, now: u64) -> Self {
        Self {
            quota: policy.gcra(),
            now,
        }
    }

    /// Spends `cost` from the bucket behind `view` (or, for a peek, only looks).
    /// `Err` holds how long until `cost` units will be there.
    fn check(&self, view: &View<'_>, cost: NonZeroU32) -> Result<(), Duration> {
        // The limiter is a throwaway view: its clock reads 0 when governor records its
        // start, so the stored state is plain nanoseconds since 1970, then the
        // request's time for the check itself.
        let limiter = governor::RateLimiter::<NotKeyed, _, _, StateInformationMiddleware>::new(
            self.quota,
            view,
            Pinned(Cell::new(Nanos::new(0))),
        );
        limiter.clock().0.set(Nanos::new(self.now));
        match limiter.check_n(cost) {
            Ok(Ok(_snapshot)) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(Nanos::new(self.now))),
            // Unreachable: `decide` compares the cost with the burst first. Waiting
            // would not help, so report the longest wait rather than panic.
            Err(_insufficient) => Err(Duration::MAX),
        }
    }

    /// The bucket's state in `RateLimit` terms, given its theoretical arrival time.
    fn status(
        &self,
        policy: &RatePolicy,
        tat: Option<Nanos>,
        retry_after: Option<Duration>,
    ) -> RateStatus {
        let interval = nanos_u64(self.quota.replenish_interval());
        bucket_status(
            policy,
            interval,
            self.now,
            tat.map(Nanos::as_u64),
            retry_after,
        )
    }
}

/// A governor clock that reads whatever it was last set to.
struct Pinned(Cell<Nanos>);

impl GovernorClock for Pinned {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        self.0.get()
    }
}

/// A [`StateStore`] over a cached bucket that records what governor saw and stored,
/// and, for a peek, stores nothing.
struct View<'a> {
    state: &'a InMemoryState,
    dry_run: bool,
    seen: Cell<Option<Nanos>>,
    stored: Cell<Option<Nanos>>,
}

impl<'a> View<'a> {
    fn peek(state: &'a InMemoryState) -> Self {
        Self::new(state, true)
    }

    fn take(state: &'a InMemoryState) -> Self {
        Self::new(state, false)
    }

    fn new(state: &'a InMemoryState, dry_run: bool) -> Self {
        Self {
            state,
            dry_run,
            seen: Cell::new(None),
            stored: Cell::new(None),
        }
    }
}

impl StateStore for &View<'_> {
    type Key = NotKeyed;

    fn measure_and_replace<T, F, E>(&self, key: &NotKeyed, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let observe = |prev: Option<Nanos>| {
            self.seen.set(prev);
            let decision = f(prev);
            if let Ok((_, next)) = &decision {
                self.stored.set(Some(*next));
            }
            decision
        };
        if self.dry_run {
            observe(read(self.state)).map(|(value, _)| value)
        } else {
            self.state.measure_and_replace(key, observe)
        }
    }
}

impl Bucket {
    /// Whether the bucket is full at `now` (its theoretical arrival time has passed):
    /// then it is the same as a new one, and dropping it loses nothing.
    fn is_full(&self, now: u64) -> bool {
        read(&self.state).is_none_or(|tat| tat.as_u64() <= now)
    }
}

/// The bucket's theoretical arrival time, without changing it.
fn read(state: &InMemoryState) -> Option<Nanos> {
    match state.measure_and_replace(&NotKeyed::NonKey, Err::<((), Nanos), _>) {
        Ok(()) => None,
        Err(prev) => prev,
    }
}

/// Makes room in a full registry of cells: drops the full buckets no cached record
/// holds, then, if that is not enough, the partly spent ones no record holds, those
/// closest to full first, down to three quarters of `max` (so that a sweep is paid
/// once per quarter of `max` new buckets, not on every one).
fn sweep(cells: &mut HashMap<CellKey, Arc<Bucket>, ahash::RandomState>, max: u64, now: u64) {
    cells.retain(|_, bucket| Arc::strong_count(bucket) > 1 || !bucket.is_full(now));
    let target = usize::try_from(max - max / 4).unwrap_or(usize::MAX);
    if cells.len() < usize::try_from(max).unwrap_or(usize::MAX) {
        return;
    }
    let mut unheld: Vec<(u64, CellKey)> = cells
        .iter()
        .filter(|(_, bucket)| Arc::strong_count(bucket) == 1)
        .map(|(key, bucket)| (read(&bucket.state).map_or(0, Nanos::as_u64), key.clone()))
        .collect();
    unheld.sort_unstable_by_key(|(tat, _)| *tat);
    let excess = cells.len().saturating_sub(target);
    for (_, key) in unheld.into_iter().take(excess) {
        cells.remove(&key);
    }
}

/// How long a bucket of a policy with `refill` time is kept: twice the refill time
/// (with a margin), at most [`MAX_IDLE`].
fn bucket_keep(refill: Duration) -> Duration {
    (refill + EXPIRY_MARGIN).saturating_mul(2).min(MAX_IDLE)
}

/// A bucket lives [`Bucket::keep`] (twice its refill time) past its creation, and a
/// use extends that to `keep` again only once less than half of it is left. Every
/// use therefore leaves at least one refill time: a bucket in use is never dropped
/// before it has been idle long enough to be full again. Extending on every use
/// instead would have moka reschedule the entry's timer on every request.
struct BucketExpiry;

impl BucketExpiry {
    fn after_use(keep: Duration, left: Option<Duration>) -> Option<Duration> {
        match left {
            Some(left) if left >= keep / 2 => Some(left),
            _ => Some(keep),
        }
    }
}

impl moka::Expiry<String, Arc<Bucket>> for BucketExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        bucket: &Arc<Bucket>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(bucket.keep)
    }

    fn expire_after_read(
        &self,
        _key: &String,
        bucket: &Arc<Bucket>,
        _read_at: Instant,
        duration_until_expiry: Option<Duration>,
        _last_modified_at: Instant,
    ) -> Option<Duration> {
        Self::after_use(bucket.keep, duration_until_expiry)
    }
}

struct CounterExpiry;

impl moka::Expiry<String, Arc<Counter>> for CounterExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        counter: &Arc<Counter>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(counter.ttl)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::rate_limit::{QuotaPolicy, RatePolicy};

    const T0: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);

    fn per_min(quota: u32) -> Arc<RatePolicy> {
        Arc::new(RatePolicy::new("p", quota, Duration::from_secs(60)).unwrap())
    }

    fn at(secs: u64) -> OffsetDateTime {
        T0 + Duration::from_secs(secs)
    }

    fn req(policy: &Arc<RatePolicy>, cost: u32, now: OffsetDateTime) -> LimitRequest {
        LimitRequest::new("b", policy.clone(), cost, now)
    }

    fn status(decision: Decision) -> RateStatus {
        match decision {
            Decision::Allowed(s) | Decision::Limited(s) => s,
            other => panic!("no rate-limit status in {other:?}"),
        }
    }

    fn cell_key(n: u32) -> CellKey {
        CellKey {
            policy: Arc::from("rl:p:"),
            partition: CellPartition::Key(KeyId::new(&format!("k{n}")).unwrap()),
        }
    }

    fn nanos(t: OffsetDateTime) -> u64 {
        nanos_since_epoch(t)
    }

    /// A full registry drops the full buckets no record holds first; a bucket a record
    /// holds is never dropped, even when every other one must go.
    #[test]
    fn a_full_registry_of_cells_keeps_held_and_spent_buckets() {
        let limiter = MemoryLimiter::new().with_max_partitions(4).unwrap();
        let policy = per_min(2);
        let now = nanos(at(0));
        // 0: held by a "record" and spent; 1: spent, not held; 2 and 3: full, not held.
        let held = limiter.cell(&cell_key(0), &policy, now);
        for n in 0..2 {
            let bucket = limiter.cell(&cell_key(n), &policy, now);
            assert!(limiter
                .decide_in(&bucket, &policy, 1, now, None)
                .is_allowed());
        }
        for n in 2..4 {
            drop(limiter.cell(&cell_key(n), &policy, now));
        }
        assert_eq!(limiter.partition_count(), 4);
        // A fifth: the two full ones go, the spent ones stay.
        drop(limiter.cell(&cell_key(4), &policy, now));
        assert_eq!(limiter.partition_count(), 3);
        let spent = limiter.cell(&cell_key(1), &policy, now);
        assert!(limiter
            .decide_in(&spent, &policy, 1, now, None)
            .is_allowed());
        assert!(!limiter
            .decide_in(&spent, &policy, 1, now, None)
            .is_allowed());
        drop(spent);

        // Nothing full left: the unheld ones go, closest to full first; the held one
        // stays and keeps its state.
        for n in 5..12 {
            drop(limiter.cell(&cell_key(n), &policy, now));
        }
        assert!(limiter.partition_count() <= 4);
        let again = limiter.cell(&cell_key(0), &policy, now);
        assert!(Arc::ptr_eq(&again, &held));
        assert!(limiter.decide_in(&held, &policy, 1, now, None).is_allowed());
        assert!(!limiter.decide_in(&held, &policy, 1, now, None).is_allowed());
    }

    #[test]
    fn a_bucket_in_use_outlives_its_refill_time_without_an_extension_per_use() {
        let refill = Duration::from_secs(60);
        let keep = bucket_keep(refill);
        assert_eq!(keep, Duration::from_secs(122));
        // Uses more than half the keep time before expiry leave it as it is (moka
        // then has no timer to reschedule); later ones extend it to the full keep.
        let left = Duration::from_secs(90);
        assert_eq!(BucketExpiry::after_use(keep, Some(left)), Some(left));
        assert_eq!(
            BucketExpiry::after_use(keep, Some(Duration::from_secs(60))),
            Some(keep)
        );
        assert_eq!(BucketExpiry::after_use(keep, None), Some(keep));

        // Uses separated by anything up to the refill time never find the bucket
        // expired, and each leaves at least one refill time.
        let mut left = keep;
        let mut extended = 0;
        for gap_secs in [1, 59, 30, 60, 60, 5, 45, 61, 2, 60, 60, 60, 60] {
            let gap = Duration::from_secs(gap_secs).min(refill + EXPIRY_MARGIN);
            assert!(left > gap, "expired after {gap:?} idle with {left:?} left");
            let before = left - gap;
            left = BucketExpiry::after_use(keep, Some(before)).unwrap();
            extended += usize::from(left != before);
            assert!(left >= refill + EXPIRY_MARGIN, "{left:?}");
        }
        assert!(extended < 13, "every use extended the bucket");
    }

    #[test]
    fn five_per_minute_allows_five_then_waits_twelve_seconds() {
        let limiter = MemoryLimiter::new();
        let policy = per_min(5);
        for expected_remaining in (0..5).rev() {
            let decision = limiter.decide(&req(&policy, 1, T0));
            assert!(decision.is_allowed());
            assert_eq!(status(decision).remaining, expected_remaining);
        }
        let limited = limiter.decide(&req(&policy, 1, T0));
        assert!(matches!(limited, Decision::Limited(_)));
        let limited = status(limited);
        assert_eq!(limited.retry_after, Some(Duration::from_secs(12)));
        assert_eq!(limited.remaining, 0);
        assert_eq!(limited.reset_secs, 12);

        // One second early is still too early, and says how much longer.
        let early = status(limiter.decide(&req(&policy, 1, at(11))));
        assert_eq!(early.retry_after, Some(Duration::from_secs(1)));
        assert!(limiter.decide(&req(&policy, 1, at(12))).is_allowed());
        assert!(!limiter.decide(&req(&policy, 1, at(12))).is_allowed());
    }

    #[test]
    fn remaining_and_reset_follow_the_bucket() {
        let limiter = MemoryLimiter::new();
        let policy = per_min(5);
        let first = status(limiter.decide(&req(&policy, 1, T0)));
        assert_eq!((first.remaining, first.reset_secs), (4, 12));
        let second = status(limiter.decide(&req(&policy, 2, T0)));
        assert_eq!((second.remaining, second.reset_secs), (2, 36));
        // Free requests report without spending.
        let free = status(limiter.decide(&req(&policy, 0, at(6))));
        assert_eq!((free.remaining, free.reset_secs), (2, 30));
        let free = status(limiter.decide(&req(&policy, 0, at(12))));
        assert_eq!((free.remaining, free.reset_secs), (3, 24));
        let full = status(limiter.decide(&req(&policy, 0, at(3600))));
        assert_eq!((full.remaining, full.reset_secs), (5, 0));
    }

    #[test]
    fn remaining_matches_governor() {
        let policy = per_min(7);
        let limiter = MemoryLimiter::new();
        let direct = governor::RateLimiter::direct_with_clock(
            policy.gcra(),
            governor::clock::FakeRelativeClock::default(),
        )
        .with_middleware::<StateInformationMiddleware>();
        for step in 0..20u64 {
            let now = at(step * 5);
            if step > 0 {
                direct.clock().advance(Duration::from_secs(5));
            }
            let cost = NonZeroU32::new(u32::try_from(step % 3 + 1).unwrap()).unwrap();
            let ours = limiter.decide(&req(&policy, cost.get(), now));
            match direct.check_n(cost).unwrap() {
                Ok(snapshot) => {
                    assert!(ours.is_allowed(), "step {step}");
                    assert_eq!(
                        status(ours).remaining,
                        snapshot.remaining_burst_capacity(),
                        "step {step}"
                    );
                }
                Err(_) => assert!(!ours.is_allowed(), "step {step}"),
            }
        }
    }

    #[test]
    fn weighted_requests_and_cost_above_burst() {
        let limiter = MemoryLimiter::new();
        let policy = per_min(5);
        assert!(limiter.decide(&req(&policy, 3, T0)).is_allowed());
        let limited = status(limiter.decide(&req(&policy, 3, T0)));
        // Two units left; a third comes back after 12 s.
        assert_eq!(limited.remaining, 2);
        assert_eq!(limited.retry_after, Some(Duration::from_secs(12)));
        assert!(limiter.decide(&req(&policy, 2, T0)).is_allowed());
        assert_eq!(
            limiter.decide(&req(&policy, 6, at(3600))),
            Decision::CostExceedsBurst {
                policy: "p".into(),
                cost: 6,
                burst: 5
            }
        );
    }

    #[test]
    fn burst_smaller_than_quota() {
        let limiter = MemoryLimiter::new();
        let policy = Arc::new(
            RatePolicy::new("p", 60, Duration::from_secs(60))
                .unwrap()
                .with_burst(2)
                .unwrap(),
        );
        assert!(limiter.decide(&req(&policy, 1, T0)).is_allowed());
        assert!(limiter.decide(&req(&policy, 1, T0)).is_allowed());
        let limited = status(limiter.decide(&req(&policy, 1, T0)));
        assert_eq!(limited.retry_after, Some(Duration::from_secs(1)));
        assert_eq!(limited.quota, 60);
        assert_eq!(limited.window_secs, 60);
    }

    #[test]
    fn buckets_are_separate() {
        let limiter = MemoryLimiter::new();
        let policy = per_min(1);
        assert!(limiter
            .decide(&LimitRequest::new("a", policy.clone(), 1, T0))
            .is_allowed());
        assert!(!limiter
            .decide(&LimitRequest::new("a", policy.clone(), 1, T0))
            .is_allowed());
        assert!(limiter
            .decide(&LimitRequest::new("b", policy, 1, T0))
            .is_allowed());
    }

    fn with_quota(policy: &Arc<RatePolicy>, limit: u64, now: OffsetDateTime) -> LimitRequest {
        req(policy, 1, now).with_quota(QuotaRequest::new(
            "q",
            QuotaPolicy::daily(limit).unwrap(),
            now,
        ))
    }

    #[test]
    fn quota_refusal_spends_no_rate_limit_units() {
        let limiter = MemoryLimiter::new();
        let policy = per_min(5);
        assert!(limiter.decide(&with_quota(&policy, 1, T0)).is_allowed());
        for _ in 0..10 {
            let Decision::QuotaExceeded(quota) = limiter.decide(&with_quota(&policy, 1, T0)) else {
                panic!("expected a quota refusal");
            };
            assert_eq!((quota.used, quota.limit), (1, 1));
            assert_eq!(quota.reset_secs, 86_400);
        }
        // Four units are still in the bucket.
        for _ in 0..4 {
            assert!(limiter.decide(&req(&policy, 1, T0)).is_allowed());
        }
        assert!(!limiter.decide(&req(&policy, 1, T0)).is_allowed());
    }

    #[test]
    fn rate_limit_refusal_spends_no_quota() {
        let limiter = MemoryLimiter::new();
        let policy = per_min(1);
        assert!(limiter.decide(&with_quota(&policy, 2, T0)).is_allowed());
        for _ in 0..10 {
            assert!(matches!(
                limiter.decide(&with_quota(&policy, 2, T0)),
                Decision::Limited(_)
            ));
        }
        assert!(limiter.decide(&with_quota(&policy, 2, at(60))).is_allowed());
        assert!(matches!(
            limiter.decide(&with_quota(&policy, 2, at(120))),
            Decision::QuotaExceeded(_)
        ));
    }

    #[test]
    fn a_released_reservation_is_given_back_only_in_its_period() {
        let limiter = MemoryLimiter::new();
        let quota = QuotaRequest::new("q", QuotaPolicy::daily(3).unwrap(), T0);
        let reservation = limiter.reserve(&quota, T0, 2).ok().unwrap();
        assert_eq!(reservation.counter.lock().used, 2);
        reservation.release();
        let reservation = limiter.reserve(&quota, T0, 3).ok().unwrap();
        assert_eq!(reservation.counter.lock().used, 3);

        let tomorrow = at(86_400);
        let next = QuotaRequest::new("q", QuotaPolicy::daily(3).unwrap(), tomorrow);
        let taken = limiter.reserve(&next, tomorrow, 1).ok().unwrap();
        reservation.release();
        assert_eq!(taken.counter.lock().used, 1);
    }

    #[test]
    fn zero_bounds_are_refused() {
        assert!(MemoryLimiter::new().with_max_partitions(0).is_err());
        assert!(MemoryLimiter::new().with_max_quota_owners(0).is_err());
    }

    #[test]
    fn buckets_are_bounded() {
        let limiter = MemoryLimiter::new().with_max_partitions(100).unwrap();
        let policy = per_min(5);
        for i in 0..1_000 {
            limiter.decide(&LimitRequest::new(format!("k{i}"), policy.clone(), 1, T0));
        }
        limiter.run_pending_tasks();
        assert!(limiter.partition_count() <= 100);
        assert!(limiter.partition_count() > 0);
    }
}
