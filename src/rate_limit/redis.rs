//! The shared backend: GCRA buckets and quota counters in Redis, so that every
//! instance behind a load balancer enforces one limit.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::backend::over_burst;
use super::gcra::{bucket_status, duration_between, nanos_since_epoch, nanos_u64, quota_status};
use super::{Decision, LimitRequest, Limiter, MemoryLimiter, QuotaStatus, DEFAULT_MAX_PARTITIONS};
use crate::error::ConfigError;

/// How long a check waits for Redis before the failure policy applies, unless set.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// After a failure, how long (by the requests' clock) checks skip Redis before trying it
/// again, unless set.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// The key prefix unless set.
pub const DEFAULT_KEY_PREFIX: &str = "tower_api_key:";

/// One check, atomically: the bucket's theoretical arrival time (TAT, microseconds since
/// 1970) in `KEYS[1]`, expiring when the bucket is full again; the owner's quota counter
/// for the current period in `KEYS[2]`, when there is one.
///
/// ARGV: now, interval (both µs), burst, cost, units admitted locally to record first
/// (local-first mode; 0 otherwise), the latest TAT this limiter could have written (µs),
/// and for a quota its limit and how long to keep the counter (ms: to the period's end
/// by the request's clock, plus a minute). Expiries are relative, so a skew between the
/// application's clock and Redis's does not matter.
///
/// The GCRA is governor's, as `MemoryLimiter` computes it: with `tat` the stored value
/// (or now), the request is limited while `now < tat + interval * (cost - 1) - tau`,
/// where `tau = interval * (burst - 1)`; otherwise the new TAT is
/// `max(tat, now) + interval * cost`. A request refused by the bucket does not touch
/// the quota, and one refused by the quota does not touch the bucket.
///
/// A stored value the script never writes is corrupt and is replaced before the check:
/// a TAT that is not a whole number of microseconds (text, a sign, a fraction, an
/// exponent) or lies past the latest possible one is deleted (a full bucket), a counter
/// that is not a whole number below 10^15 (exact in Lua's doubles; `INCRBY` would fail
/// past 2^63) is set to 0. Left alone, text would fail every check and a far-future TAT
/// would refuse every request until it expired, which it may never do.
///
/// Returns `{0, tat, used, corrupt}` allowed (`tat` -1 for a free check of a full
/// bucket, `used` the quota spent, -1 without one), `{1, tat, wait, corrupt}` limited,
/// `{2, used, corrupt}` over the quota, where `corrupt` is 1 when the bucket was
/// replaced plus 2 when the counter was.
const SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local forced = tonumber(ARGV[5])
local latest = tonumber(ARGV[6])
local quota = #KEYS > 1
local corrupt = 0
local function whole(s, max)
  if s ~= '0' and not string.match(s, '^[1-9]%d*$') then return nil end
  local n = tonumber(s)
  if n > max then return nil end
  return n
end
local function save(t)
  redis.call('SET', KEYS[1], string.format('%.0f', t), 'PX', math.max(1, math.ceil((t - now) / 1000)))
end
local function spend(units)
  local used = redis.call('INCRBY', KEYS[2], units)
  redis.call('PEXPIRE', KEYS[2], ARGV[8])
  return used
end
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then
  local parsed = whole(stored, latest)
  if parsed then
    tat = parsed
  else
    redis.call('DEL', KEYS[1])
    stored = false
    corrupt = 1
  end
end
local used = -1
if quota then
  local counted = redis.call('GET', KEYS[2])
  used = 0
  if counted then
    used = whole(counted, 999999999999999)
    if not used then
      redis.call('SET', KEYS[2], '0', 'PX', ARGV[8])
      used = 0
      corrupt = corrupt + 2
    end
  end
end
if forced > 0 then
  tat = math.max(tat, now) + interval * forced
  save(tat)
  stored = true
  if quota then used = spend(forced) end
end
if cost == 0 then
  if stored then return {0, tat, used, corrupt} end
  return {0, -1, used, corrupt}
end
local earliest = tat + interval * (cost - 1) - interval * (burst - 1)
if now < earliest then
  return {1, tat, earliest - now, corrupt}
end
if quota then
  if used + cost > tonumber(ARGV[7]) then
    return {2, used, corrupt}
  end
  used = spend(cost)
end
local new = math.max(tat, now) + interval * cost
save(new)
return {0, new, used, corrupt}
";

/// How far a stored TAT may lie past the latest this instance could write before it is
/// corrupt: what another instance's clock may be ahead of this one's.
const CLOCK_ALLOWANCE_MICROS: u64 = 1_000_000;

/// Counts stored values the script found corrupt and replaced, by `kind` (`bucket` or
/// `quota`).
const CORRUPT_METRIC: &str = "tower_api_key_rate_limit_redis_corrupt_total";

/// What the script answered, in the units it works in (µs).
enum Reply {
    Allowed { tat: Option<u64>, used: Option<u64> },
    Limited { tat: u64, wait: u64 },
    OverQuota(QuotaStatus),
}

/// What a [`RedisLimiter`] does while Redis cannot answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnRedisFailure {
    /// Decide with the in-process [`MemoryLimiter`]: each instance enforces the limit on
    /// its own until Redis is back (so the fleet may admit up to `instances × limit`).
    /// No request fails because of Redis. The default.
    #[default]
    FallBackToLocal,
    /// Refuse with 503 and `Retry-After` (the layer's `StoreUnavailable`): never more
    /// than the limit, at the price of availability.
    Refuse,
}

/// The shared [`Limiter`]: one GCRA bucket per partition and one counter per owner
/// and quota period in Redis, each check one atomic Lua script (`EVALSHA`), over one
/// multiplexed connection that reconnects by itself.
///
/// Every instance pointing at the same Redis (and key prefix) shares the limits: a key
/// limited to 60 requests a minute gets 60 in total, wherever they land. Decisions are
/// the same as [`MemoryLimiter`]'s, at microsecond resolution.
///
/// # When Redis is down
///
/// A check that fails or takes longer than [`with_timeout`](Self::with_timeout)
/// (250 ms by default) follows [`OnRedisFailure`]: by default the local
/// [`MemoryLimiter`] decides. The switch is logged once each way (a `WARN` when Redis is
/// lost, an `INFO` when it is back), counted in `tower_api_key_rate_limit_redis_failures_total`,
/// and shown by the `tower_api_key_rate_limit_redis_degraded` gauge (1 while degraded).
/// While degraded, checks skip Redis for [`with_retry_interval`](Self::with_retry_interval)
/// (1 s by the requests' clock) before trying it again, so an unreachable Redis costs
/// one timeout per interval, not one per request. The connection is re-established by
/// itself; nothing needs a restart. Never a 500, never a panic.
///
/// # Values it did not write
///
/// A bucket or quota counter in Redis holding what this limiter never writes (text, a
/// fraction, a sign, an exponent, a number too large, a bucket time further ahead than
/// the policy's burst window plus a second for clocks, and plus a window and a batch
/// more with [`LocalFirst`]) is corrupt: the check replaces it with a full bucket or a
/// counter of 0 and goes on, logs a `WARN` naming the Redis key (never the value), and
/// counts it in `tower_api_key_rate_limit_redis_corrupt_total` (label `kind`: `bucket`
/// or `quota`). Left alone, such a value would fail every check or refuse every request
/// until it expired, which it may never do.
///
/// Redis Cluster is not supported: a check's bucket and quota keys must be on one node.
///
/// ```no_run
/// use tower_api_key::rate_limit::{Limits, RedisLimiter, OnRedisFailure};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisLimiter::new("redis://127.0.0.1:6379")?
///     .with_key_prefix("myapp:")?
///     .with_failure_policy(OnRedisFailure::FallBackToLocal);
/// let limits = Limits::new("60/min".parse()?).with_backend(redis);
/// # let _ = limits;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisLimiter {
    inner: Arc<Inner>,
    state: Arc<State>,
}

#[derive(Clone)]
struct Inner {
    client: redis::Client,
    connection: ConnectionManager,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
    retry_interval: Duration,
    on_failure: OnRedisFailure,
    local: MemoryLimiter,
    local_first: Option<LocalFirst>,
    target: String,
}

#[derive(Default)]
struct State {
    leases: Leases,
    round_trips: AtomicU64,
    degraded: AtomicBool,
    /// While degraded: the request time (ns since 1970) from which Redis is tried again.
    retry_at: AtomicU64,
}

/// Why a [`RedisLimiter`] under [`OnRedisFailure::Refuse`] could not decide.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the rate-limit store (Redis at {target}) is unavailable: {reason}")]
pub struct RedisLimitError {
    target: String,
    reason: String,
}

impl RedisLimiter {
    /// A limiter on the Redis at `url` (`redis://host:port/db`, `rediss://` for TLS if
    /// the `redis` crate was built with it). The connection is made on the first check,
    /// so an application starts while Redis is down. Call within a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the URL cannot be parsed.
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        let target = describe(url);
        let client = redis::Client::open(url).map_err(|e| {
            ConfigError::new(format!(
                "invalid Redis URL for the rate limiter ({target}): {e}"
            ))
        })?;
        let connection = connect(&client, &target, DEFAULT_REDIS_TIMEOUT)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                connection,
                script: redis::Script::new(SCRIPT),
                prefix: DEFAULT_KEY_PREFIX.to_owned(),
                timeout: DEFAULT_REDIS_TIMEOUT,
                retry_interval: DEFAULT_RETRY_INTERVAL,
                on_failure: OnRedisFailure::default(),
                local: MemoryLimiter::new(),
                local_first: None,
                target,
            }),
            state: Arc::default(),
        })
    }

    fn with(mut self, change: impl FnOnce(&mut Inner)) -> Self {
        change(Arc::make_mut(&mut self.inner));
        self
    }

    /// Prefixes every Redis key (`tower_api_key:` by default), so that several
    /// applications can share one Redis without sharing limits.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an empty prefix or one with whitespace or control characters.
    pub fn with_key_prefix(self, prefix: &str) -> Result<Self, ConfigError> {
        if prefix.is_empty() || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::new(format!(
                "invalid Redis key prefix {prefix:?}: expected a non-empty prefix without \
                 whitespace or control characters"
            )));
        }
        let prefix = prefix.to_owned();
        Ok(self.with(|inner| inner.prefix = prefix))
    }

    /// How long a check waits for Redis (250 ms by default) before the failure policy
    /// applies.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for zero, or more than 10 seconds (a request would hang on it).
    pub fn with_timeout(self, timeout: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() || timeout > Duration::from_secs(10) {
            return Err(ConfigError::new(format!(
                "invalid Redis timeout {timeout:?}: expected more than 0 and at most 10 s"
            )));
        }
        let connection = connect(&self.inner.client, &self.inner.target, timeout)?;
        Ok(self.with(|inner| {
            inner.timeout = timeout;
            inner.connection = connection;
        }))
    }

    /// After a failure, how long (by the requests' clock) checks skip Redis before
    /// trying it again (1 s by default). Zero tries on every check.
    #[must_use]
    pub fn with_retry_interval(self, interval: Duration) -> Self {
        self.with(|inner| inner.retry_interval = interval)
    }

    /// What to do while Redis cannot answer: [`OnRedisFailure::FallBackToLocal`] (the
    /// default) or [`OnRedisFailure::Refuse`].
    #[must_use]
    pub fn with_failure_policy(self, policy: OnRedisFailure) -> Self {
        self.with(|inner| inner.on_failure = policy)
    }

    /// The in-process limiter that decides while Redis is down (a default
    /// [`MemoryLimiter`] unless set).
    #[must_use]
    pub fn with_local_fallback(self, local: MemoryLimiter) -> Self {
        self.with(|inner| inner.local = local)
    }

    /// Decides in process while a bucket is far from its limit: see [`LocalFirst`]. Off
    /// by default (every check is a round trip).
    #[must_use]
    pub fn with_local_first(self, local_first: LocalFirst) -> Self {
        self.with(|inner| inner.local_first = Some(local_first))
    }

    /// `true` while Redis is failing and the failure policy applies.
    pub fn is_degraded(&self) -> bool {
        self.state.degraded.load(Ordering::Relaxed)
    }

    /// One script run against Redis, first recording `forced` units admitted locally.
    async fn eval(&self, request: &LimitRequest, forced: u32) -> Result<Reply, redis::RedisError> {
        let inner = &self.inner;
        let policy = &request.policy;
        let bucket_key = format!("{}rl:{}", inner.prefix, request.bucket);
        let quota_key = request.quota.as_ref().map(|quota| {
            format!(
                "{}q:{}:{}",
                inner.prefix,
                quota.counter,
                quota.period_start.unix_timestamp()
            )
        });
        let now = micros_since_epoch(request);
        let interval = interval_micros(policy);
        // The latest TAT a check can leave: a whole burst window ahead, plus what the
        // instances may have admitted locally and sent late (local-first: up to
        // `instances × (batch − 1)` units, taken as one more window and a batch), plus
        // their clocks' disagreement.
        let burst = u64::from(policy.burst());
        let units = match &inner.local_first {
            Some(local) => 2 * burst + u64::from(local.batch - 1),
            None => burst,
        };
        let latest = now
            .saturating_add(interval.saturating_mul(units))
            .saturating_add(CLOCK_ALLOWANCE_MICROS);
        let mut invocation = inner.script.prepare_invoke();
        invocation
            .key(&bucket_key)
            .arg(now)
            .arg(interval)
            .arg(policy.burst())
            .arg(request.cost)
            .arg(forced)
            .arg(latest);
        if let (Some(quota), Some(quota_key)) = (&request.quota, &quota_key) {
            let left = duration_between(request.now, quota.period_end) + Duration::from_secs(60);
            invocation
                .key(quota_key)
                .arg(quota.policy.limit())
                .arg(u64::try_from(left.as_millis()).unwrap_or(u64::MAX));
        }
        let mut connection = inner.connection.clone();
        self.state.round_trips.fetch_add(1, Ordering::Relaxed);
        let reply: Vec<i64> = invocation.invoke_async(&mut connection).await?;
        let Some((&corrupt, answer)) = reply.split_last() else {
            return Err(unexpected(&reply));
        };
        if corrupt & 1 != 0 {
            self.corrupt("bucket", &bucket_key, "reset as a full bucket");
        }
        if corrupt & 2 != 0 {
            let key = quota_key.as_deref().unwrap_or_default();
            self.corrupt("quota", key, "reset to nothing spent");
        }
        let unsigned = |v: i64| u64::try_from(v).ok();
        match answer {
            [0, tat, used] => Ok(Reply::Allowed {
                tat: unsigned(*tat),
                used: unsigned(*used),
            }),
            [1, tat, wait] => Ok(Reply::Limited {
                tat: unsigned(*tat).unwrap_or(0),
                wait: unsigned(*wait).unwrap_or(0),
            }),
            [2, used] => match &request.quota {
                Some(quota) => Ok(Reply::OverQuota(quota_status(
                    quota,
                    unsigned(*used).unwrap_or(0),
                    request.now,
                ))),
                None => Err(unexpected(&reply)),
            },
            _ => Err(unexpected(&reply)),
        }
    }

    /// The script replaced a corrupt value at `key`: say so, once per occurrence. The
    /// value itself is not logged (it could be anything, of any length).
    fn corrupt(&self, kind: &'static str, key: &str, action: &str) {
        metrics::counter!(CORRUPT_METRIC, "kind" => kind).increment(1);
        tracing::warn!(
            target: "tower_api_key::rate_limit",
            key,
            kind,
            redis = %self.inner.target,
            action,
            "corrupt rate-limit value in Redis (not one this limiter writes); replaced"
        );
    }

    /// The decision a reply stands for.
    fn decide(request: &LimitRequest, reply: &Reply) -> Decision {
        let interval = interval_micros(&request.policy) * 1_000;
        let now = micros_since_epoch(request) * 1_000;
        let nanos = |us: u64| us.saturating_mul(1_000);
        match *reply {
            Reply::Allowed { tat, .. } => Decision::Allowed(bucket_status(
                &request.policy,
                interval,
                now,
                tat.map(nanos),
                None,
            )),
            Reply::Limited { tat, wait } => Decision::Limited(bucket_status(
                &request.policy,
                interval,
                now,
                Some(nanos(tat)),
                Some(Duration::from_micros(wait)),
            )),
            Reply::OverQuota(ref status) => Decision::QuotaExceeded(status.clone()),
        }
    }

    /// Redis calls made so far (script runs, including failed ones): with
    /// [`LocalFirst`], fewer than requests.
    pub fn round_trips(&self) -> u64 {
        self.state.round_trips.load(Ordering::Relaxed)
    }

    fn failed(&self, request: &LimitRequest, reason: &str) -> Result<Decision, RedisLimitError> {
        let inner = &self.inner;
        let now = nanos_since_epoch(request.now);
        self.state.retry_at.store(
            now.saturating_add(nanos_u64(inner.retry_interval)),
            Ordering::Relaxed,
        );
        metrics::counter!("tower_api_key_rate_limit_redis_failures_total").increment(1);
        if !self.state.degraded.swap(true, Ordering::Relaxed) {
            metrics::gauge!("tower_api_key_rate_limit_redis_degraded").set(1.0);
            tracing::warn!(
                target: "tower_api_key::rate_limit",
                redis = %inner.target,
                error = reason,
                policy = ?inner.on_failure,
                "Redis rate limiter unavailable; applying the failure policy until it is back"
            );
        }
        self.degraded_decision(request, reason)
    }

    fn degraded_decision(
        &self,
        request: &LimitRequest,
        reason: &str,
    ) -> Result<Decision, RedisLimitError> {
        match self.inner.on_failure {
            OnRedisFailure::FallBackToLocal => Ok(self.inner.local.decide(request)),
            OnRedisFailure::Refuse => Err(RedisLimitError {
                target: self.inner.target.clone(),
                reason: reason.to_owned(),
            }),
        }
    }

    fn recovered(&self) {
        if self.state.degraded.swap(false, Ordering::Relaxed) {
            metrics::gauge!("tower_api_key_rate_limit_redis_degraded").set(0.0);
            tracing::info!(
                target: "tower_api_key::rate_limit",
                redis = %self.inner.target,
                "Redis rate limiter is back; limits are shared again"
            );
        }
    }
}

impl Limiter for RedisLimiter {
    type Error = RedisLimitError;

    async fn check(&self, request: &LimitRequest) -> Result<Decision, RedisLimitError> {
        if let Some(refused) = over_burst(request) {
            return Ok(refused);
        }
        if self.is_degraded()
            && nanos_since_epoch(request.now) < self.state.retry_at.load(Ordering::Relaxed)
        {
            return self.degraded_decision(request, "waiting before trying Redis again");
        }
        let forced = match &self.inner.local_first {
            Some(local) => match self.state.leases.try_local(local, request) {
                Ok(decision) => return Ok(decision),
                Err(forced) => forced,
            },
            None => 0,
        };
        // A lost connection is replaced on the failing call: try once more on the new one.
        let attempt = async {
            match self.eval(request, forced).await {
                Err(error) if error.is_io_error() || error.is_connection_dropped() => {
                    self.eval(request, forced).await
                }
                other => other,
            }
        };
        let reason = match tokio::time::timeout(self.inner.timeout, attempt).await {
            Ok(Ok(reply)) => {
                self.recovered();
                if self.inner.local_first.is_some() {
                    self.state.leases.synced(request, forced, &reply);
                }
                return Ok(Self::decide(request, &reply));
            }
            Ok(Err(error)) => error.to_string(),
            Err(_elapsed) => "timed out".to_owned(),
        };
        if forced > 0 {
            // Not recorded: push them with the next round trip.
            self.state.leases.unsent(request, forced);
        }
        self.failed(request, &reason)
    }
}

/// Local-first mode for a [`RedisLimiter`] (off unless set with
/// [`RedisLimiter::with_local_first`]), as Unkey does for hot keys: while a bucket (and
/// its quota) is far from its limit, an instance decides in process and records what it
/// admitted in Redis with its next round trip, at most [`batch`](Self::with_batch) units
/// later; near the limit, after a refusal, or when its view is older than
/// [`sync_interval`](Self::with_sync_interval), every request is a round trip again.
///
/// "Far" means that after the request at least [`headroom`](Self::with_headroom) of
/// the burst (and of the quota) would still be left by this instance's last view. What
/// that view misses is bounded: each instance admits at most `batch − 1` units unseen
/// by the others, so the fleet admits at most
/// `max(0, instances × (batch − 1) − headroom × burst)` units over the limit. With the
/// defaults (batch 10, headroom 50%) and a limit of 60 a minute, that is 0 for up to 3
/// instances; a key far below its limit costs one round trip per 10 requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalFirst {
    batch: u32,
    headroom: f64,
    sync_interval: Duration,
}

impl LocalFirst {
    /// Batches of 10 units, 50% headroom, views at most 1 s old.
    pub fn new() -> Self {
        Self {
            batch: 10,
            headroom: 0.5,
            sync_interval: Duration::from_secs(1),
        }
    }

    /// At most `batch − 1` units are admitted locally between two round trips.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for less than 2 (no request would ever be decided locally).
    pub fn with_batch(mut self, batch: u32) -> Result<Self, ConfigError> {
        if batch < 2 {
            return Err(ConfigError::new(
                "local-first batch must be at least 2 units",
            ));
        }
        self.batch = batch;
        Ok(self)
    }

    /// The share of the burst (and of the quota) that must remain after a local
    /// decision, from 0 to 1.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] outside `0.0..=1.0`.
    pub fn with_headroom(mut self, headroom: f64) -> Result<Self, ConfigError> {
        if !(0.0..=1.0).contains(&headroom) {
            return Err(ConfigError::new(format!(
                "local-first headroom {headroom} must be between 0 and 1"
            )));
        }
        self.headroom = headroom;
        Ok(self)
    }

    /// How old (by the requests' clock) a view may be before a round trip refreshes it.
    #[must_use]
    pub fn with_sync_interval(mut self, interval: Duration) -> Self {
        self.sync_interval = interval;
        self
    }

    fn headroom_of(&self, total: u64) -> u64 {
        // Rounded up: never less headroom than asked for.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let units = (self.headroom * total as f64).ceil() as u64;
        units
    }
}

impl Default for LocalFirst {
    fn default() -> Self {
        Self::new()
    }
}

/// What one instance knows of each bucket in local-first mode.
struct Leases {
    cache: moka::sync::Cache<String, Arc<Mutex<Lease>>, ahash::RandomState>,
}

impl Default for Leases {
    fn default() -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(DEFAULT_MAX_PARTITIONS)
                .time_to_idle(Duration::from_secs(600))
                .build_with_hasher(ahash::RandomState::new()),
        }
    }
}

#[derive(Default)]
struct Lease {
    /// The bucket's TAT (µs) as of the last round trip; 0 when it was full.
    tat: u64,
    /// The request time (µs) of the last round trip; 0 before the first.
    synced_at: u64,
    /// Units admitted here and not yet sent.
    pending: u64,
    /// Units being sent by a round trip in flight.
    sending: u64,
    /// The quota spent as of the last round trip, and the period it belongs to.
    quota: Option<(i64, u64)>,
}

impl Leases {
    fn lease(&self, request: &LimitRequest) -> Arc<Mutex<Lease>> {
        self.cache
            .get_with_by_ref(request.bucket.as_str(), Arc::default)
    }

    /// Decides `request` here when the bucket is far from its limit; otherwise hands
    /// back the units to send with the round trip.
    fn try_local(&self, local: &LocalFirst, request: &LimitRequest) -> Result<Decision, u32> {
        let lease = self.lease(request);
        let mut l = lease.lock().unwrap_or_else(PoisonError::into_inner);
        let now = micros_since_epoch(request);
        let policy = &request.policy;
        let cost = u64::from(request.cost);
        let fresh = l.synced_at > 0
            && now >= l.synced_at
            && now - l.synced_at
                < local
                    .sync_interval
                    .as_micros()
                    .try_into()
                    .unwrap_or(u64::MAX);
        let unsent = l.pending + l.sending;
        if fresh && cost > 0 && l.pending + cost < u64::from(local.batch) {
            let interval = interval_micros(policy);
            let burst = u64::from(policy.burst());
            let tat = l.tat.max(now) + interval * (unsent + cost);
            let left = (now + interval * burst).saturating_sub(tat) / interval;
            let bucket_far = left >= local.headroom_of(burst).max(1);
            let quota_far = match (&request.quota, l.quota) {
                (None, _) => true,
                (Some(q), Some((period, used))) if period == q.period_start.unix_timestamp() => {
                    let limit = q.policy.limit();
                    limit.saturating_sub(used + unsent + cost) >= local.headroom_of(limit).max(1)
                }
                (Some(_), _) => false,
            };
            if bucket_far && quota_far {
                l.pending += cost;
                return Ok(Decision::Allowed(bucket_status(
                    &request.policy,
                    interval * 1_000,
                    now * 1_000,
                    Some(tat * 1_000),
                    None,
                )));
            }
        }
        let forced = l.pending;
        l.sending += forced;
        l.pending = 0;
        Err(u32::try_from(forced).unwrap_or(u32::MAX))
    }

    /// A round trip that sent `forced` units answered `reply`.
    fn synced(&self, request: &LimitRequest, forced: u32, reply: &Reply) {
        let lease = self.lease(request);
        let mut l = lease.lock().unwrap_or_else(PoisonError::into_inner);
        l.sending = l.sending.saturating_sub(u64::from(forced));
        l.synced_at = micros_since_epoch(request);
        let period = request
            .quota
            .as_ref()
            .map(|q| q.period_start.unix_timestamp());
        match *reply {
            Reply::Allowed { tat, used } => {
                l.tat = tat.unwrap_or(0);
                l.quota = period.zip(used);
            }
            Reply::Limited { tat, .. } => l.tat = tat,
            Reply::OverQuota(ref status) => l.quota = period.map(|p| (p, status.used)),
        }
    }

    /// A round trip that was to send `forced` units failed: send them with the next.
    fn unsent(&self, request: &LimitRequest, forced: u32) {
        let lease = self.lease(request);
        let mut l = lease.lock().unwrap_or_else(PoisonError::into_inner);
        l.sending = l.sending.saturating_sub(u64::from(forced));
        l.pending += u64::from(forced);
    }
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("RedisLimiter")
            .field("redis", &inner.target)
            .field("key_prefix", &inner.prefix)
            .field("timeout", &inner.timeout)
            .field("on_failure", &inner.on_failure)
            .field("degraded", &self.is_degraded())
            .finish_non_exhaustive()
    }
}

/// A connection made on first use, with one try per reconnection: while Redis is down,
/// checks apply the failure policy at once rather than wait on a retry schedule, and a
/// later check tries again.
fn connect(
    client: &redis::Client,
    target: &str,
    timeout: Duration,
) -> Result<ConnectionManager, ConfigError> {
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(0)
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    ConnectionManager::new_lazy_with_config(client.clone(), config)
        .map_err(|e| ConfigError::new(format!("the Redis rate limiter ({target}): {e}")))
}

fn micros_since_epoch(request: &LimitRequest) -> u64 {
    nanos_since_epoch(request.now) / 1_000
}

/// The policy's interval in whole microseconds, rounded up: never more lenient.
fn interval_micros(policy: &super::RatePolicy) -> u64 {
    nanos_u64(policy.interval()).div_ceil(1_000).max(1)
}

fn unexpected(reply: &[i64]) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Parse,
        "unexpected reply from the rate-limit script",
        format!("{reply:?}"),
    ))
}

/// Where `url` points, for messages: scheme, host, port and database, never a password.
fn describe(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "an unparsable URL".to_owned();
    };
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_described_without_credentials() {
        assert_eq!(
            describe("redis://:s3cret@cache.internal:6380/2"),
            "redis://cache.internal:6380/2"
        );
        assert_eq!(describe("redis://127.0.0.1"), "redis://127.0.0.1");
        assert_eq!(describe("nonsense"), "an unparsable URL");
    }

    #[tokio::test]
    async fn bad_settings_are_refused_when_built() {
        let err = RedisLimiter::new("http://example").unwrap_err();
        assert!(err.message().contains("invalid Redis URL"), "{err}");
        let limiter = RedisLimiter::new("redis://127.0.0.1:1").unwrap();
        assert!(limiter.clone().with_key_prefix("").is_err());
        assert!(limiter.clone().with_key_prefix("a b").is_err());
        assert!(limiter.clone().with_timeout(Duration::ZERO).is_err());
        assert!(limiter.with_timeout(Duration::from_secs(11)).is_err());
    }

    #[tokio::test]
    async fn the_password_never_reaches_an_error_or_debug() {
        let limiter = RedisLimiter::new("redis://:hunter2@127.0.0.1:1").unwrap();
        assert!(!format!("{limiter:?}").contains("hunter2"));
        let limiter = limiter.with_failure_policy(OnRedisFailure::Refuse);
        let request = LimitRequest::new(
            "b",
            "1/s".parse::<super::super::RatePolicy>().unwrap(),
            1,
            time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
        );
        let err = limiter.check(&request).await.unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
        assert!(limiter.is_degraded());
    }
}
