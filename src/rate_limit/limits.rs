//! The configured set of policies, and the check that applies them to a key.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};

use time::OffsetDateTime;

use crate::clock::{Clock, SharedClock, SystemClock};
use crate::error::ConfigError;
use crate::key::Environment;
use crate::principal::Principal;
use crate::store::{CachedRecord, KeyFacts, KeyRecord, SlotKind};

use super::memory::{Bucket, CellKey, CellPartition};
use super::{
    Decision, LimitRequest, Limiter, MemoryLimiter, Partition, QuotaPolicy, QuotaRequest,
    RatePolicy,
};

/// Rate limits and quotas for API keys: which policy applies to a key, which bucket it
/// spends from, and the owner's quota.
///
/// The policy for a key is, in order:
///
/// 1. the policy named by [`KeyRecord::rate_limit_policy`], looked up among all
///    configured policies (named, per-environment and default). An unknown name is
///    logged as a warning and the next rule applies;
/// 2. the policy for the key's environment ([`with_environment_policy`](Self::with_environment_policy));
/// 3. the default.
///
/// Then the key spends from its [`Partition`]'s bucket, and, if a
/// [quota](Self::with_quota) is set, from its owner's quota. A request refused by
/// either spends from neither; when both would refuse, the rate limit answers
/// (429 comes before 403 quota_exceeded).
///
/// Clones share the buckets and counters.
///
/// ```
/// use std::time::Duration;
/// use tower_api_key::clock::{Clock, ManualClock};
/// use tower_api_key::key::KeyFormat;
/// use tower_api_key::rate_limit::{Decision, QuotaPolicy, RatePolicy, Limits};
/// use tower_api_key::store::{KeyRecord, Owner};
///
/// let clock = ManualClock::default();
/// let limits = Limits::new("5/min".parse()?)
///     .with_environment_policy("test", RatePolicy::new("test", 2, Duration::from_secs(60))?)?
///     .with_quota(QuotaPolicy::daily(10_000)?)
///     .with_clock(clock.clone());
///
/// let format = KeyFormat::new("pb")?.with_environments(["live", "test"])?;
/// let minted = format.generate(Some("live"))?;
/// let record = KeyRecord::new(&minted, "sync", Owner::organization("acme"), vec![], clock.now());
///
/// for _ in 0..5 {
///     assert!(limits.check(&record, 1).is_allowed());
/// }
/// let Decision::Limited(status) = limits.check(&record, 1) else { panic!("not limited") };
/// assert_eq!(status.retry_after_secs(), Some(12));
/// assert_eq!(status.ratelimit_header(), "\"default\";r=0;t=12");
/// assert_eq!(status.policy_header(), "\"default\";q=5;w=60");
///
/// clock.advance(Duration::from_secs(12));
/// assert!(limits.check(&record, 1).is_allowed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Limits<L = MemoryLimiter> {
    config: Arc<Config>,
    backend: L,
    clock: SharedClock,
    /// Whether [`with_clock`](Self::with_clock) was called.
    clock_set: bool,
    /// Whether the clock is the one that authenticated the request (`ApiKeyAuth` wires
    /// both to one clock): then a request's time is the one its principal was
    /// authenticated at, and the limiter reads no clock of its own.
    request_clock: bool,
}

/// What a cached key record's slot holds for the in-process limiter: its bucket, for
/// the limiter and the configuration (policies and partition) it was resolved under.
struct RateSlot {
    limiter: u64,
    config: u64,
    bucket: Arc<Bucket>,
}

#[derive(Clone)]
struct Config {
    /// Unique per configuration of policies and partition: which buckets a
    /// [`RateSlot`] holds depends on both.
    id: u64,
    default: Arc<RatePolicy>,
    environments: HashMap<Environment, Arc<RatePolicy>>,
    named: HashMap<Arc<str>, Arc<RatePolicy>>,
    partition: Partition,
    quota: Option<QuotaPolicy>,
    quota_exempt: Vec<Environment>,
}

impl Limits<MemoryLimiter> {
    /// `default` for every key, partitioned by [`Partition::Family`], no quota, the
    /// system clock, and a [`MemoryLimiter`] with its default bounds.
    pub fn new(default: RatePolicy) -> Self {
        Self {
            config: Arc::new(Config {
                id: next_config_id(),
                default: Arc::new(default),
                environments: HashMap::new(),
                named: HashMap::new(),
                partition: Partition::default(),
                quota: None,
                quota_exempt: Vec::new(),
            }),
            backend: MemoryLimiter::new(),
            clock: Arc::new(SystemClock),
            clock_set: false,
            request_clock: false,
        }
    }

    /// Bounds the number of rate-limit buckets held in memory (100,000 by default). See
    /// [`MemoryLimiter`] for how to size it.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `max` is zero.
    pub fn with_max_partitions(mut self, max: u64) -> Result<Self, ConfigError> {
        self.backend = self.backend.with_max_partitions(max)?;
        Ok(self)
    }

    /// Bounds the number of quota counters held in memory (100,000 by default).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `max` is zero.
    pub fn with_max_quota_owners(mut self, max: u64) -> Result<Self, ConfigError> {
        self.backend = self.backend.with_max_quota_owners(max)?;
        Ok(self)
    }

    /// Checks a request by `record` costing `cost` units and, if it is allowed, spends
    /// them. The in-process backend decides synchronously; with another backend use
    /// [`check_async`](Self::check_async).
    ///
    /// A cost of zero is always allowed, spends nothing and reports the bucket.
    pub fn check(&self, record: &KeyRecord, cost: u32) -> Decision {
        self.decide_for_record(&self.backend, record, cost)
    }
}

impl<L> Limits<L> {
    /// Adds a named policy, chosen for keys whose
    /// [`rate_limit_policy`](KeyRecord::rate_limit_policy) names it. A policy of the
    /// same name replaces the earlier one.
    #[must_use]
    pub fn with_policy(mut self, policy: RatePolicy) -> Self {
        let policy = Arc::new(policy);
        self.config_mut()
            .named
            .insert(policy.shared_name().clone(), policy);
        self
    }

    /// Sets the policy for keys of environment `env`, such as a stricter one for `dev`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `env` is not a valid environment name (1 to 23 characters
    /// of `[a-z0-9]`).
    pub fn with_environment_policy(
        mut self,
        env: &str,
        policy: RatePolicy,
    ) -> Result<Self, ConfigError> {
        let env = Environment::new(env)?;
        self.config_mut().environments.insert(env, Arc::new(policy));
        Ok(self)
    }

    /// Sets which keys share a bucket (by default, [`Partition::Family`]).
    #[must_use]
    pub fn with_partition(mut self, partition: Partition) -> Self {
        self.config_mut().partition = partition;
        self
    }

    /// Sets a daily or monthly quota per owner, checked after the rate limit.
    #[must_use]
    pub fn with_quota(mut self, quota: QuotaPolicy) -> Self {
        Arc::make_mut(&mut self.config).quota = Some(quota);
        self
    }

    /// Keys of environment `env` neither spend nor are refused by the quota (test keys
    /// that should not burn a workspace's allowance). They are still rate limited.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `env` is not a valid environment name.
    pub fn with_quota_exempt_environment(mut self, env: &str) -> Result<Self, ConfigError> {
        let env = Environment::new(env)?;
        let config = Arc::make_mut(&mut self.config);
        if !config.quota_exempt.contains(&env) {
            config.quota_exempt.push(env);
        }
        Ok(self)
    }

    /// Sets the clock windows and quota periods are measured on.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self.clock_set = true;
        self.request_clock = false;
        self
    }

    /// The configuration to change, under a new id (the buckets slots remember depend
    /// on the policies and the partition).
    fn config_mut(&mut self) -> &mut Config {
        let config = Arc::make_mut(&mut self.config);
        config.id = next_config_id();
        config
    }

    /// For `ApiKeyAuth`, which wires the authenticator and these limits to one clock
    /// (`clock`, or the system's for both when neither was set): a request's time is
    /// then its principal's authentication time, one clock read for the request.
    pub(crate) fn on_request_clock(mut self, clock: Option<SharedClock>) -> Self {
        match clock {
            Some(clock) => {
                self.clock = clock;
                self.clock_set = true;
                self.request_clock = true;
            }
            // Limits with a clock of their own keep reading it.
            None => self.request_clock = !self.clock_set,
        }
        self
    }

    /// Replaces the backend that holds buckets and counters, keeping the policies.
    pub fn with_backend<B>(self, backend: B) -> Limits<B> {
        Limits {
            config: self.config,
            backend,
            clock: self.clock,
            clock_set: self.clock_set,
            request_clock: self.request_clock,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &L {
        &self.backend
    }

    /// The partition.
    pub fn partition(&self) -> Partition {
        self.config.partition
    }

    /// The policy that applies to `record` (see the type's docs for the order).
    pub fn policy_for(&self, record: &KeyRecord) -> &Arc<RatePolicy> {
        self.policy_of(record)
    }

    /// [`Limits::policy_for`] a stored record or a cached entry.
    fn policy_of(&self, record: &(impl KeyFacts + ?Sized)) -> &Arc<RatePolicy> {
        let config = &*self.config;
        if let Some(name) = record.fact_policy() {
            if let Some(policy) = config.by_name(name) {
                return policy;
            }
            tracing::warn!(
                key_id = %record.fact_id(),
                policy = %name,
                "unknown rate-limit policy on key record; using its environment's or the default"
            );
        }
        record
            .fact_environment()
            .and_then(|env| config.environments.get(&env))
            .unwrap_or(&config.default)
    }

    /// Checks that a route charging `cost` units could be allowed under every
    /// configured policy. Call it when the router is built.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first policy whose burst is smaller than `cost`.
    pub fn validate_cost(&self, cost: u32) -> Result<(), ConfigError> {
        let config = &*self.config;
        let mut policies: Vec<&Arc<RatePolicy>> = std::iter::once(&config.default)
            .chain(config.environments.values())
            .chain(config.named.values())
            .collect();
        policies.sort_by(|a, b| a.name().cmp(b.name()));
        match policies.into_iter().find(|p| cost > p.burst()) {
            Some(policy) => Err(ConfigError::new(format!(
                "a request cost of {cost} exceeds the burst of {} of rate-limit policy {:?}: \
                 such requests could never be allowed",
                policy.burst(),
                policy.name()
            ))),
            None => Ok(()),
        }
    }

    /// What the backend is asked, or the refusal when the cost can never fit.
    fn prepare(&self, record: &impl KeyFacts, cost: u32) -> Result<LimitRequest, Decision> {
        let policy = self.policy_of(record);
        if cost > policy.burst() {
            return Err(cost_exceeds_burst(record, policy, cost));
        }
        let now = self.clock.now();
        // Built by hand: this runs on every request, and `format!` costs several
        // times more than the pushes.
        let mut bucket = String::with_capacity(policy.bucket_prefix().len() + 40);
        bucket.push_str(policy.bucket_prefix());
        PartitionId(self.config.partition, record).push_to(&mut bucket);
        let mut request = LimitRequest::new(bucket, policy.clone(), cost, now);
        if let Some(quota) = self.quota_request(record, now) {
            request = request.with_quota(quota);
        }
        Ok(request)
    }

    /// The owner's quota counter to spend from, unless there is no quota or the key's
    /// environment is exempt.
    fn quota_request(&self, record: &impl KeyFacts, now: OffsetDateTime) -> Option<QuotaRequest> {
        let quota = self.config.quota?;
        let exempt = record
            .fact_environment()
            .is_some_and(|env| self.config.quota_exempt.contains(&env));
        if exempt {
            return None;
        }
        let mut counter = String::with_capacity(48);
        for part in [
            "quota:",
            quota.name(),
            ":",
            record.fact_owner().kind(),
            ":",
            record.fact_owner().id(),
        ] {
            counter.push_str(part);
        }
        Some(QuotaRequest::new(counter, quota, now))
    }

    /// The fixed-size id of the bucket `record` spends from under `policy`.
    fn cell_key(&self, policy: &RatePolicy, record: &impl KeyFacts) -> CellKey {
        CellKey {
            policy: policy.shared_bucket_prefix().clone(),
            partition: match self.config.partition {
                Partition::Key => CellPartition::Key(*record.fact_id()),
                Partition::Family => CellPartition::Family(*record.fact_family()),
                Partition::Owner => CellPartition::Owner(record.fact_owner().clone()),
            },
        }
    }

    /// Decides in process: the key's bucket from its cached record's slot (found by the
    /// registry once per fill, or on every request when the slot belongs to another
    /// limiter or configuration), spent with one compare-and-swap; no bucket id is
    /// built. The request's time is its principal's when the clock is shared.
    fn decide_in_process(
        &self,
        memory: &MemoryLimiter,
        principal: &Principal,
        cost: u32,
    ) -> Decision {
        let now = if self.request_clock {
            principal.authenticated_at_unix_nanos()
        } else {
            self.clock.now_unix_nanos()
        };
        let cached = principal.cached_record();
        self.decide_at(memory, cached, Some(cached), cost, now)
    }

    /// Decides in process at `now` (nanoseconds since 1970) for `record`, spending the
    /// bucket in `cached`'s slot when it holds this limiter's and this configuration's,
    /// and otherwise the one the registry holds.
    fn decide_at(
        &self,
        memory: &MemoryLimiter,
        record: &impl KeyFacts,
        cached: Option<&CachedRecord>,
        cost: u32,
        now: i128,
    ) -> Decision {
        let policy = self.policy_of(record);
        if cost > policy.burst() {
            return cost_exceeds_burst(record, policy, cost);
        }
        let now_nanos = u64::try_from(now).unwrap_or(0);
        let look_up = || memory.cell(&self.cell_key(policy, record), policy, now_nanos);
        let slot = cached.and_then(|cached| {
            cached.slot(SlotKind::RateLimit, || RateSlot {
                limiter: memory.id(),
                config: self.config.id,
                bucket: look_up(),
            })
        });
        let looked_up;
        let bucket = match slot {
            Some(slot) if slot.limiter == memory.id() && slot.config == self.config.id => {
                &slot.bucket
            }
            _ => {
                looked_up = look_up();
                &looked_up
            }
        };
        let quota = match self.config.quota {
            Some(_) => {
                let at = crate::clock::from_unix_nanos(now);
                self.quota_request(record, at).map(|quota| (quota, at))
            }
            None => None,
        };
        memory.decide_in(
            bucket,
            policy,
            cost,
            now_nanos,
            quota.as_ref().map(|(quota, at)| (quota, *at)),
        )
    }
}

impl<L> Limits<L> {
    /// Decides in process for a record without a cached entry (the public checks): the
    /// same bucket the layer spends, found in the registry.
    fn decide_for_record(&self, memory: &MemoryLimiter, record: &KeyRecord, cost: u32) -> Decision {
        self.decide_at(memory, record, None, cost, self.clock.now_unix_nanos())
    }
}

/// The refusal of a request that costs more than its policy's burst (it could never
/// pass), logged.
fn cost_exceeds_burst(record: &impl KeyFacts, policy: &Arc<RatePolicy>, cost: u32) -> Decision {
    tracing::warn!(
        key_id = %record.fact_id(),
        policy = %policy.name(),
        cost,
        burst = policy.burst(),
        "request cost exceeds the rate-limit burst; refusing"
    );
    Decision::CostExceedsBurst {
        policy: policy.shared_name().clone(),
        cost,
        burst: policy.burst(),
    }
}

/// A new [`Config`] id.
fn next_config_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The first, synchronous step of a rate-limit check.
pub(crate) enum Start {
    /// Decided without awaiting.
    Decided(Decision),
    /// The backend must be asked.
    Ask(LimitRequest),
}

impl<L: Limiter> Limits<L> {
    /// Decides without awaiting when it can; otherwise hands back what the backend must
    /// be asked.
    pub(crate) fn start(&self, principal: &Principal, cost: u32) -> Start {
        if let Some(memory) = self.backend.in_process() {
            return Start::Decided(self.decide_in_process(memory, principal, cost));
        }
        let request = match self.prepare(principal.cached_record(), cost) {
            Ok(request) => request,
            Err(refused) => return Start::Decided(refused),
        };
        match self.backend.check_now(&request) {
            Some(decision) => Start::Decided(decision),
            None => Start::Ask(request),
        }
    }

    /// [`check`](Limits::check) through any [`Limiter`] backend.
    ///
    /// # Errors
    ///
    /// The backend's error when it could not decide.
    ///
    /// ```
    /// use tower_api_key::clock::Clock;
    /// use tower_api_key::key::KeyFormat;
    /// use tower_api_key::rate_limit::Limits;
    /// use tower_api_key::store::{KeyRecord, Owner};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limits = Limits::new("1/h".parse()?);
    /// let minted = KeyFormat::new("pb")?.generate(None)?;
    /// let record = KeyRecord::new(&minted, "ci", Owner::user("u1"), vec![], time::OffsetDateTime::now_utc());
    /// assert!(limits.check_async(&record, 1).await?.is_allowed());
    /// assert!(!limits.check_async(&record, 1).await?.is_allowed());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn check_async(&self, record: &KeyRecord, cost: u32) -> Result<Decision, L::Error> {
        if let Some(memory) = self.backend.in_process() {
            return Ok(self.decide_for_record(memory, record, cost));
        }
        match self.prepare(record, cost) {
            Ok(request) => self.backend.check(&request).await,
            Err(refused) => Ok(refused),
        }
    }
}

impl Config {
    fn by_name(&self, name: &str) -> Option<&Arc<RatePolicy>> {
        self.named
            .get(name)
            .or_else(|| {
                // Deterministic if two environments use different policies of one name.
                self.environments
                    .iter()
                    .filter(|(_, policy)| policy.name() == name)
                    .min_by_key(|(env, _)| **env)
                    .map(|(_, policy)| policy)
            })
            .or_else(|| (self.default.name() == name).then_some(&self.default))
    }
}

/// Formats the partition part of a bucket id.
struct PartitionId<'a, R>(Partition, &'a R);

impl<R: KeyFacts> PartitionId<'_, R> {
    fn push_to(&self, out: &mut String) {
        let record = self.1;
        match self.0 {
            Partition::Key => {
                out.push_str("key:");
                out.push_str(record.fact_id().as_str());
            }
            Partition::Family => {
                out.push_str("family:");
                out.push_str(record.fact_family().as_str());
            }
            Partition::Owner => {
                for part in [
                    "owner:",
                    record.fact_owner().kind(),
                    ":",
                    record.fact_owner().id(),
                ] {
                    out.push_str(part);
                }
            }
        }
    }
}

impl<L: Clone> Clone for Limits<L> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            backend: self.backend.clone(),
            clock: self.clock.clone(),
            clock_set: self.clock_set,
            request_clock: self.request_clock,
        }
    }
}

impl<L: fmt::Debug> fmt::Debug for Limits<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &*self.config;
        let mut environments: Vec<_> = config
            .environments
            .iter()
            .map(|(env, policy)| (env.as_str(), policy))
            .collect();
        environments.sort_by_key(|(env, _)| *env);
        let mut named: Vec<_> = config.named.values().collect();
        named.sort_by(|a, b| a.name().cmp(b.name()));
        f.debug_struct("Limits")
            .field("default", &config.default)
            .field("environments", &environments)
            .field("named", &named)
            .field("partition", &config.partition)
            .field("quota", &config.quota)
            .field("quota_exempt", &config.quota_exempt)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::key::{KeyFormat, KeyId};
    use crate::store::Owner;

    fn record(env: Option<&str>) -> KeyRecord {
        let format = KeyFormat::new("pb")
            .unwrap()
            .with_environments(["live", "dev", "test"])
            .unwrap();
        let minted = format.generate(Some(env.unwrap_or("live"))).unwrap();
        let mut record = KeyRecord::new(
            &minted,
            "k",
            Owner::organization("acme"),
            vec![],
            ManualClock::default().now(),
        );
        if env.is_none() {
            record.environment = None;
        }
        record
    }

    fn policy(name: &str, quota: u32) -> RatePolicy {
        RatePolicy::new(name, quota, Duration::from_secs(60)).unwrap()
    }

    fn limits() -> Limits {
        Limits::new(policy("default", 10))
            .with_environment_policy("dev", policy("dev", 2))
            .unwrap()
            .with_policy(policy("gold", 100))
            .with_clock(ManualClock::default())
    }

    #[test]
    fn policy_choice_order() {
        let limits = limits();
        assert_eq!(limits.policy_for(&record(Some("live"))).name(), "default");
        assert_eq!(limits.policy_for(&record(None)).name(), "default");
        assert_eq!(limits.policy_for(&record(Some("dev"))).name(), "dev");

        let mut named = record(Some("dev"));
        named.rate_limit_policy = Some("gold".into());
        assert_eq!(limits.policy_for(&named).name(), "gold");
        // Environment and default policies can be named too.
        named.rate_limit_policy = Some("dev".into());
        assert_eq!(limits.policy_for(&record(Some("live"))).name(), "default");
        let mut live = record(Some("live"));
        live.rate_limit_policy = Some("dev".into());
        assert_eq!(limits.policy_for(&live).name(), "dev");
        // An unknown name falls back to the environment's, then the default.
        named.rate_limit_policy = Some("platinum".into());
        assert_eq!(limits.policy_for(&named).name(), "dev");
        live.rate_limit_policy = Some("platinum".into());
        assert_eq!(limits.policy_for(&live).name(), "default");
    }

    #[test]
    fn a_named_policy_replaces_one_of_the_same_name() {
        let limits = limits().with_policy(policy("gold", 7));
        let mut record = record(Some("live"));
        record.rate_limit_policy = Some("gold".into());
        assert_eq!(limits.policy_for(&record).quota(), 7);
    }

    #[test]
    fn invalid_environment_names_are_refused() {
        let err = Limits::new(policy("default", 1))
            .with_environment_policy("Dev Box", policy("dev", 1))
            .unwrap_err();
        assert!(err.message().contains("Dev Box"), "{err}");
        assert!(Limits::new(policy("default", 1))
            .with_quota_exempt_environment("")
            .is_err());
    }

    #[test]
    fn validate_cost_names_the_policy() {
        let limits = limits();
        assert!(limits.validate_cost(2).is_ok());
        let err = limits.validate_cost(3).unwrap_err();
        assert!(err.message().contains("\"dev\""), "{err}");
        assert!(err.message().contains("burst of 2"), "{err}");
    }

    #[test]
    fn bucket_ids_follow_the_partition() {
        let mut record = record(Some("live"));
        record.family = KeyId::new("family1").unwrap();
        let bucket = |partition| {
            limits()
                .with_partition(partition)
                .prepare(&record, 1)
                .unwrap()
                .bucket
        };
        assert_eq!(
            bucket(Partition::Key),
            format!("rl:default:10:60:10:key:{}", record.id)
        );
        assert_eq!(
            bucket(Partition::Family),
            "rl:default:10:60:10:family:family1"
        );
        assert_eq!(
            bucket(Partition::Owner),
            "rl:default:10:60:10:owner:organization:acme"
        );
    }

    #[test]
    fn quota_requests_follow_owner_and_exemptions() {
        let limits = limits()
            .with_quota(QuotaPolicy::daily(5).unwrap())
            .with_quota_exempt_environment("test")
            .unwrap();
        let live = limits.prepare(&record(Some("live")), 1).unwrap();
        let quota = live.quota.unwrap();
        assert_eq!(quota.counter, "quota:daily:organization:acme");
        assert_eq!(quota.policy.limit(), 5);
        assert!(limits
            .prepare(&record(Some("test")), 1)
            .unwrap()
            .quota
            .is_none());
        assert!(limits.prepare(&record(None), 1).unwrap().quota.is_some());
        assert!(self::limits()
            .prepare(&record(None), 1)
            .unwrap()
            .quota
            .is_none());
    }

    #[test]
    fn cost_above_burst_never_reaches_the_backend() {
        let limits = limits();
        let decision = limits.check(&record(Some("dev")), 3);
        assert_eq!(
            decision,
            Decision::CostExceedsBurst {
                policy: "dev".into(),
                cost: 3,
                burst: 2
            }
        );
        assert_eq!(limits.backend().partition_count(), 0);
    }

    #[test]
    fn clones_share_state_and_debug_is_readable() {
        let limits = Limits::new(policy("default", 1)).with_clock(ManualClock::default());
        let clone = limits.clone();
        let record = record(Some("live"));
        assert!(limits.check(&record, 1).is_allowed());
        assert!(!clone.check(&record, 1).is_allowed());
        let debug = format!("{limits:?}");
        assert!(debug.contains("Limits"), "{debug}");
        assert!(debug.contains("MemoryLimiter"), "{debug}");
    }
}
