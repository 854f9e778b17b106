//! Per-key rate limits and per-owner quotas.
//!
//! [`Limits`] picks a [`RatePolicy`] for each key (named on its record, by its
//! environment, or the default), spends the request's cost from a GCRA bucket shared by
//! its [`Partition`] (key, rotation family or owner), then from its owner's daily or
//! monthly [`QuotaPolicy`]. The [`Decision`] carries what a 429 needs: `Retry-After` in
//! whole seconds, never 0, and the `RateLimit` / `RateLimit-Policy` fields of
//! draft-ietf-httpapi-ratelimit-headers (-08 and later):
//!
//! ```text
//! RateLimit: "default";r=0;t=12
//! RateLimit-Policy: "default";q=5;w=60
//! ```
//!
//! It runs after authentication and scope checks, so a refused key never spends
//! anything, and a request refused here spends nothing either.
//!
//! Buckets are computed with [`governor`] and held by a [`Limiter`] backend: the
//! in-process, memory-bounded [`MemoryLimiter`] by default, or `RedisLimiter` (feature
//! `redis`) to share limits and quotas across instances. Time comes from the injected
//! [`Clock`](crate::clock::Clock), so tests move it by hand.
//!
//! ```
//! use std::time::Duration;
//! use tower_api_key::clock::{Clock, ManualClock};
//! use tower_api_key::key::KeyFormat;
//! use tower_api_key::rate_limit::{Decision, Partition, QuotaPolicy, RatePolicy, Limits};
//! use tower_api_key::store::{KeyRecord, Owner};
//!
//! let clock = ManualClock::new(time::macros::datetime!(2026-03-01 23:59:00 UTC));
//! let limits = Limits::new("100/min".parse()?)
//!     .with_environment_policy("dev", RatePolicy::new("dev", 10, Duration::from_secs(60))?)?
//!     .with_partition(Partition::Owner)
//!     .with_quota(QuotaPolicy::daily(3)?)
//!     .with_clock(clock.clone());
//!
//! let format = KeyFormat::new("pf")?.with_environments(["live", "test", "dev"])?;
//! let key = KeyRecord::new(
//!     &format.generate(Some("live"))?,
//!     "server",
//!     Owner::organization("acme"),
//!     vec![],
//!     clock.now(),
//! );
//!
//! // Route weights: a build costs 2, a read costs 1.
//! assert!(limits.check(&key, 2).is_allowed());
//! assert!(limits.check(&key, 1).is_allowed());
//! let Decision::QuotaExceeded(quota) = limits.check(&key, 1) else { panic!() };
//! assert_eq!(quota.reset_secs, 60);
//!
//! // A new UTC day, a new quota.
//! clock.advance(Duration::from_secs(60));
//! let Decision::Allowed(status) = limits.check(&key, 1) else { panic!() };
//! assert_eq!(status.ratelimit_header(), "\"default\";r=99;t=1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backend;
mod decision;
mod gcra;
mod layer;
mod limiter;
mod limits;
mod memory;
mod policy;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
mod redis;

pub use self::backend::{LimitRequest, QuotaRequest};
pub use self::decision::{Decision, QuotaStatus, RateStatus, RATELIMIT, RATELIMIT_POLICY};
pub use self::layer::{RateLimit, RateLimitLayer};
pub use self::limiter::Limiter;
pub use self::limits::Limits;
pub use self::memory::{MemoryLimiter, DEFAULT_MAX_PARTITIONS, DEFAULT_MAX_QUOTA_OWNERS};
pub use self::policy::{Partition, QuotaPeriod, QuotaPolicy, RatePolicy};
#[cfg(feature = "redis")]
pub use self::redis::{
    LocalFirst, OnRedisFailure, RedisLimitError, RedisLimiter, DEFAULT_KEY_PREFIX,
    DEFAULT_REDIS_TIMEOUT, DEFAULT_RETRY_INTERVAL,
};
