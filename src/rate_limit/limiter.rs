//! The [`Limiter`] trait: where rate-limit state lives, and the in-process one.

use std::convert::Infallible;
use std::future::Future;

use super::{Decision, LimitRequest, MemoryLimiter};

/// Where rate-limit buckets and quota counters live.
///
/// [`Limits`](super::Limits) chooses the policy, the bucket and the quota
/// counter for a key and reads the clock; the backend holds the state and decides. The
/// in-process [`MemoryLimiter`] is the default; a shared store
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

    /// The in-process limiter that decides for this backend, when there is one
    /// (`None`, the default, otherwise). With it, [`Limits`](super::Limits) keeps each
    /// key's bucket beside the key's cached record and spends it with one atomic update,
    /// with no bucket id built and no map lookup per request. A backend that wraps a
    /// [`MemoryLimiter`] (an enum choosing one at start-up)
    /// returns it here.
    fn in_process(&self) -> Option<&MemoryLimiter> {
        None
    }
}

/// Decides in process, synchronously.
impl Limiter for MemoryLimiter {
    type Error = Infallible;

    fn check(
        &self,
        request: &LimitRequest,
    ) -> impl Future<Output = Result<Decision, Self::Error>> + Send {
        std::future::ready(Ok(self.decide(request)))
    }

    fn check_now(&self, request: &LimitRequest) -> Option<Decision> {
        Some(self.decide(request))
    }

    fn in_process(&self) -> Option<&Self> {
        Some(self)
    }
}
