//! The boundary between the rate-limit configuration and the state it is enforced on.

use std::future::Future;
use std::sync::Arc;

use time::OffsetDateTime;

use super::{Decision, QuotaPolicy, RatePolicy};

/// Where rate-limit buckets and quota counters live.
///
/// [`Limits`](super::Limits) chooses the policy, the bucket and the quota
/// counter for a key and reads the clock; the backend holds the state and decides. The
/// in-process [`MemoryLimiter`](super::MemoryLimiter) is the default; a shared store
/// (Redis, for instance) slots in here so that every instance enforces one limit.
///
/// # Contract
///
/// For one [`LimitRequest`], as one atomic step as far as the backend can manage:
///
/// 1. `cost` larger than the policy's burst: [`Decision::CostExceedsBurst`].
/// 2. `cost` zero: [`Decision::Allowed`] with the bucket's current state; nothing is
///    spent.
/// 3. Fewer than `cost` units in the bucket: [`Decision::Limited`] with `retry_after`;
///    the quota is not touched.
/// 4. A quota is given and `used + cost` would exceed it: [`Decision::QuotaExceeded`];
///    the bucket is not touched.
/// 5. Otherwise spend `cost` from both and answer [`Decision::Allowed`].
///
/// A refused request spends nothing. Time is [`LimitRequest::now`], never the backend's
/// own clock, so tests can drive it with a [`ManualClock`](crate::clock::ManualClock).
///
/// ```
/// use std::convert::Infallible;
/// use tower_api_key::rate_limit::{Decision, LimitRequest, Limiter, RateStatus};
///
/// /// Lets everything through and says so.
/// #[derive(Clone)]
/// struct Unlimited;
///
/// impl Limiter for Unlimited {
///     type Error = Infallible;
///
///     async fn check(&self, request: &LimitRequest) -> Result<Decision, Infallible> {
///         let policy = &request.policy;
///         Ok(Decision::Allowed(RateStatus {
///             policy: policy.name().into(),
///             quota: policy.quota(),
///             window_secs: policy.window().as_secs(),
///             remaining: policy.burst(),
///             reset_secs: 0,
///             retry_after: None,
///         }))
///     }
/// }
/// ```
pub trait Limiter: Clone + Send + Sync + 'static {
    /// Why the backend could not decide (a lost connection). The caller decides whether
    /// to fail open or closed; the crate's layer fails closed with 503.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Decides on one request and spends its cost if it is allowed.
    fn check(
        &self,
        request: &LimitRequest,
    ) -> impl Future<Output = Result<Decision, Self::Error>> + Send;

    /// Decides at once, without awaiting, when the backend can (an in-process
    /// limiter). `None`, the default, means "await [`Limiter::check`]". The layer
    /// uses this to keep in-process limits off the boxed asynchronous path.
    fn check_now(&self, request: &LimitRequest) -> Option<Decision> {
        let _ = request;
        None
    }
}

/// [`Decision::CostExceedsBurst`] when `request` costs more than its policy's burst
/// (step 1 of the [`Limiter`] contract), shared by every backend.
pub(super) fn over_burst(request: &LimitRequest) -> Option<Decision> {
    let policy = &request.policy;
    (request.cost > policy.burst()).then(|| Decision::CostExceedsBurst {
        policy: policy.shared_name().clone(),
        cost: request.cost,
        burst: policy.burst(),
    })
}

/// One request to charge, as [`Limits`](super::Limits) resolved it.
///
/// ```
/// use tower_api_key::rate_limit::{LimitRequest, QuotaPolicy, QuotaRequest, RatePolicy};
///
/// let now = time::macros::datetime!(2026-05-01 12:00 UTC);
/// let request = LimitRequest::new("rl:default:key:abc", "5/min".parse::<RatePolicy>()?, 1, now)
///     .with_quota(QuotaRequest::new("quota:daily:organization:acme", QuotaPolicy::daily(100)?, now));
/// let quota = request.quota.as_ref().unwrap();
/// assert_eq!(quota.period_end, time::macros::datetime!(2026-05-02 0:00 UTC));
/// # Ok::<(), tower_api_key::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LimitRequest {
    /// Identifies the bucket: the policy (name and numbers) and the partition, for
    /// example `rl:default:5:60:5:family:2hT9xQk1LmZ`. Keys under different policies, or
    /// under a policy whose numbers changed, never share a bucket.
    pub bucket: String,
    /// The policy to enforce.
    pub policy: Arc<RatePolicy>,
    /// Units to spend.
    pub cost: u32,
    /// The time of the request.
    pub now: OffsetDateTime,
    /// The owner's quota, when one applies to this key.
    pub quota: Option<QuotaRequest>,
}

impl LimitRequest {
    /// A request without a quota.
    pub fn new(
        bucket: impl Into<String>,
        policy: impl Into<Arc<RatePolicy>>,
        cost: u32,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            bucket: bucket.into(),
            policy: policy.into(),
            cost,
            now,
            quota: None,
        }
    }

    /// Adds a quota to charge.
    #[must_use]
    pub fn with_quota(mut self, quota: QuotaRequest) -> Self {
        self.quota = Some(quota);
        self
    }
}

/// The quota part of a [`LimitRequest`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QuotaRequest {
    /// Identifies the owner's counter, for example `quota:daily:organization:acme`.
    pub counter: String,
    /// The quota.
    pub policy: QuotaPolicy,
    /// The start of the current period: a counter last written in an earlier period
    /// starts again from zero.
    pub period_start: OffsetDateTime,
    /// The end of the current period.
    pub period_end: OffsetDateTime,
}

impl QuotaRequest {
    /// The quota for the period holding `now`.
    pub fn new(counter: impl Into<String>, policy: QuotaPolicy, now: OffsetDateTime) -> Self {
        let (period_start, period_end) = policy.period().bounds(now);
        Self {
            counter: counter.into(),
            policy,
            period_start,
            period_end,
        }
    }
}
