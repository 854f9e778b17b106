//! The boundary between the rate-limit configuration and the state it is enforced on.

use std::sync::Arc;

use time::OffsetDateTime;

use super::{Decision, QuotaPolicy, RatePolicy};

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
