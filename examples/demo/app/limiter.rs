//! The demo's rate-limit backend, chosen by `--redis`: in process, or shared by every
//! instance through Redis.

use std::convert::Infallible;

use tower_api_key::rate_limit::{Decision, LimitRequest, Limiter, MemoryLimiter};

/// One of the limiters, picked at run time.
#[derive(Debug, Clone)]
pub enum DemoLimiter {
    Memory(MemoryLimiter),
    #[cfg(feature = "redis")]
    Redis(tower_api_key::rate_limit::RedisLimiter),
}

/// Why the limiter could not decide (only Redis under `--redis-on-failure refuse`).
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error(transparent)]
    Never(#[from] Infallible),
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Redis(#[from] tower_api_key::rate_limit::RedisLimitError),
}

impl Limiter for DemoLimiter {
    type Error = LimiterError;

    async fn check(&self, request: &LimitRequest) -> Result<Decision, LimiterError> {
        match self {
            Self::Memory(limiter) => Ok(limiter.check(request).await?),
            #[cfg(feature = "redis")]
            Self::Redis(limiter) => Ok(limiter.check(request).await?),
        }
    }

    fn check_now(&self, request: &LimitRequest) -> Option<Decision> {
        match self {
            Self::Memory(limiter) => limiter.check_now(request),
            #[cfg(feature = "redis")]
            Self::Redis(limiter) => limiter.check_now(request),
        }
    }

    fn in_process(&self) -> Option<&MemoryLimiter> {
        match self {
            Self::Memory(limiter) => Some(limiter),
            #[cfg(feature = "redis")]
            Self::Redis(_) => None,
        }
    }
}
