//! One suite for every rate-limit backend, written once: `MemoryLimiter`, and
//! `RedisLimiter` against a private `redis-server` (feature `redis`). Each case asserts
//! exact decisions, so the backends decide alike. Time is the requests' own: nothing
//! sleeps.

mod support;

use std::sync::Arc;
use std::time::Duration;

use time::macros::datetime;
use time::OffsetDateTime;
use tower_api_key::rate_limit::{
    Decision, LimitRequest, Limiter, MemoryLimiter, QuotaPolicy, QuotaRequest, RatePolicy,
    RateStatus,
};

/// One minute before a UTC midnight, in whole seconds.
const T0: OffsetDateTime = datetime!(2026-05-01 23:59:00 UTC);

fn five_a_minute() -> Arc<RatePolicy> {
    Arc::new("5/min".parse().unwrap())
}

fn at(secs: i64) -> OffsetDateTime {
    T0 + time::Duration::seconds(secs)
}

async fn check<L: Limiter>(
    limiter: &L,
    bucket: &str,
    cost: u32,
    now: OffsetDateTime,
    quota: Option<u64>,
) -> Decision {
    let mut request = LimitRequest::new(bucket, five_a_minute(), cost, now);
    if let Some(limit) = quota {
        let policy = QuotaPolicy::daily(limit).unwrap();
        request = request.with_quota(QuotaRequest::new("quota:acme", policy, now));
    }
    limiter.check(&request).await.expect("the backend answers")
}

fn allowed(remaining: u32, reset_secs: u64) -> Decision {
    Decision::Allowed(status(remaining, reset_secs, None))
}

fn limited(remaining: u32, retry_after: Duration) -> Decision {
    Decision::Limited(status(remaining, retry_after.as_secs(), Some(retry_after)))
}

fn status(remaining: u32, reset_secs: u64, retry_after: Option<Duration>) -> RateStatus {
    RateStatus {
        policy: "default".into(),
        quota: 5,
        window_secs: 60,
        remaining,
        reset_secs,
        retry_after,
    }
}

mod cases {
    use super::*;

    /// Five at once, then refused for the interval (12 s), then one more.
    pub(crate) async fn a_burst_then_limited_then_refilled<L: Limiter>(l: L) {
        for (i, remaining) in [4, 3, 2, 1, 0].into_iter().enumerate() {
            let reset = 12 * (i as u64 + 1);
            assert_eq!(check(&l, "a", 1, T0, None).await, allowed(remaining, reset));
        }
        assert_eq!(
            check(&l, "a", 1, T0, None).await,
            limited(0, Duration::from_secs(12))
        );
        assert_eq!(
            check(&l, "a", 1, at(5), None).await,
            limited(0, Duration::from_secs(7))
        );
        assert_eq!(check(&l, "a", 1, at(12), None).await, allowed(0, 60));
        // Idle for a whole refill time: full again.
        assert_eq!(check(&l, "a", 1, at(200), None).await, allowed(4, 12));
    }

    /// Weights spend several units; a free check spends nothing; a cost above the burst
    /// can never pass.
    pub(crate) async fn weights_and_free_checks<L: Limiter>(l: L) {
        assert_eq!(check(&l, "w", 0, T0, None).await, allowed(5, 0));
        assert_eq!(check(&l, "w", 3, T0, None).await, allowed(2, 36));
        assert_eq!(check(&l, "w", 0, T0, None).await, allowed(2, 36));
        assert_eq!(
            check(&l, "w", 3, T0, None).await,
            limited(2, Duration::from_secs(12))
        );
        assert_eq!(check(&l, "w", 2, T0, None).await, allowed(0, 60));
        assert!(matches!(
            check(&l, "w", 6, T0, None).await,
            Decision::CostExceedsBurst {
                cost: 6,
                burst: 5,
                ..
            }
        ));
    }

    /// Buckets do not share state.
    pub(crate) async fn buckets_are_independent<L: Limiter>(l: L) {
        assert_eq!(check(&l, "x", 5, T0, None).await, allowed(0, 60));
        assert_eq!(check(&l, "y", 1, T0, None).await, allowed(4, 12));
        assert!(matches!(
            check(&l, "x", 1, T0, None).await,
            Decision::Limited(_)
        ));
    }

    /// A daily quota: spent only by requests the bucket allows, refused without
    /// touching the bucket, new at UTC midnight.
    pub(crate) async fn quotas_spend_only_what_is_allowed<L: Limiter>(l: L) {
        assert_eq!(check(&l, "q", 2, T0, Some(3)).await, allowed(3, 24));
        let Decision::QuotaExceeded(quota) = check(&l, "q", 2, T0, Some(3)).await else {
            panic!("the quota was not enforced");
        };
        assert_eq!((quota.limit, quota.used, quota.reset_secs), (3, 2, 60));
        // The quota's refusal did not touch the bucket.
        assert_eq!(check(&l, "q", 0, T0, Some(3)).await, allowed(3, 24));
        // A request refused by its bucket spends no quota: one unit is still left.
        assert_eq!(check(&l, "full", 5, T0, None).await, allowed(0, 60));
        assert_eq!(
            check(&l, "full", 1, T0, Some(3)).await,
            limited(0, Duration::from_secs(12))
        );
        assert_eq!(check(&l, "other", 1, T0, Some(3)).await, allowed(4, 12));
        let Decision::QuotaExceeded(quota) = check(&l, "other", 1, at(59), Some(3)).await else {
            panic!("the quota was not enforced");
        };
        assert_eq!((quota.used, quota.reset_secs), (3, 1));
        // A new UTC day, a new quota.
        assert!(check(&l, "other", 1, at(60), Some(3)).await.is_allowed());
    }

    /// Many checks at once on one bucket: exactly the burst passes.
    pub(crate) async fn concurrent_checks_admit_exactly_the_burst<L: Limiter>(l: L) {
        let policy: Arc<RatePolicy> = Arc::new("20/min".parse().unwrap());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..60 {
            let (l, policy) = (l.clone(), Arc::clone(&policy));
            tasks.spawn(async move {
                let request = LimitRequest::new("c", policy, 1, T0);
                l.check(&request).await.unwrap().is_allowed()
            });
        }
        let mut admitted = 0;
        while let Some(joined) = tasks.join_next().await {
            admitted += usize::from(joined.unwrap());
        }
        assert_eq!(admitted, 20);
    }
}

macro_rules! suite {
    ($module:ident, $open:expr) => {
        suite!(@cases $module, $open,
            a_burst_then_limited_then_refilled,
            weights_and_free_checks,
            buckets_are_independent,
            quotas_spend_only_what_is_allowed,
            concurrent_checks_admit_exactly_the_burst,
        );
    };
    (@cases $module:ident, $open:expr, $($case:ident),* $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    // `_guard` keeps the server until the case ends.
                    let Some((limiter, _guard)) = ($open) else { return };
                    super::cases::$case(limiter).await;
                }
            )*
        }
    };
}

suite!(memory, Some((MemoryLimiter::new(), ())));

#[cfg(feature = "redis")]
suite!(
    redis,
    support::redis_server::RedisServer::start().map(|server| {
        let limiter = tower_api_key::rate_limit::RedisLimiter::new(&server.url()).unwrap();
        (limiter, server)
    })
);

/// What only the Redis backend promises: one limit for several instances, and a chosen
/// behaviour while Redis is down, with recovery and no restart.
#[cfg(feature = "redis")]
mod redis_only {
    use tower_api_key::rate_limit::{LocalFirst, OnRedisFailure, RedisLimiter};

    use super::support::redis_server::RedisServer;
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_instances_share_one_limit_and_one_quota() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        // Three limiters, three connections: three instances.
        let instances: Vec<RedisLimiter> = (0..3)
            .map(|_| RedisLimiter::new(&server.url()).unwrap())
            .collect();
        let mut decisions = Vec::new();
        for i in 0..9 {
            decisions.push(check(&instances[i % 3], "shared", 1, T0, Some(4)).await);
        }
        let admitted = decisions.iter().filter(|d| d.is_allowed()).count();
        assert_eq!(admitted, 4, "the quota of 4 holds across instances");
        // The bucket (5) outlasts the quota (4): every later refusal is the quota's,
        // on every instance.
        assert!(decisions[4..]
            .iter()
            .all(|d| matches!(d, Decision::QuotaExceeded(q) if q.used == 4)));
        // Another partition: the burst of 5 across instances, then 429 everywhere with
        // the same Retry-After.
        let mut limited = Vec::new();
        for i in 0..8 {
            match check(&instances[i % 3], "burst", 1, T0, None).await {
                Decision::Allowed(_) => {}
                Decision::Limited(status) => limited.push(status),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(limited.len(), 3);
        assert!(limited
            .iter()
            .all(|s| *s == status(0, 12, Some(Duration::from_secs(12)))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_outage_falls_back_to_local_limits_and_recovers() {
        let Some(mut server) = RedisServer::start() else {
            return;
        };
        let limiter = RedisLimiter::new(&server.url())
            .unwrap()
            .with_retry_interval(Duration::from_secs(1));
        assert_eq!(check(&limiter, "o", 1, T0, None).await, allowed(4, 12));
        assert!(!limiter.is_degraded());

        server.stop();
        // Redis is gone: decided locally (a fresh local bucket), never an error.
        assert_eq!(check(&limiter, "o", 1, at(1), None).await, allowed(4, 12));
        assert!(limiter.is_degraded());
        // Within the retry interval Redis is not asked again.
        assert_eq!(check(&limiter, "o", 1, at(1), None).await, allowed(3, 24));

        server.restart();
        // After the interval, Redis is tried again and used: the empty server's bucket.
        let back = check(&limiter, "o", 1, at(3), None).await;
        assert_eq!(back, allowed(4, 12));
        assert!(!limiter.is_degraded(), "recovered without a restart");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_outage_refuses_when_told_to() {
        let Some(mut server) = RedisServer::start() else {
            return;
        };
        let limiter = RedisLimiter::new(&server.url())
            .unwrap()
            .with_failure_policy(OnRedisFailure::Refuse)
            .with_retry_interval(Duration::ZERO);
        let request = |now| LimitRequest::new("r", five_a_minute(), 1, now);
        assert!(limiter.check(&request(T0)).await.unwrap().is_allowed());
        server.stop();
        let err = limiter.check(&request(at(1))).await.unwrap_err();
        assert!(err.to_string().contains("unavailable"), "{err}");
        server.restart();
        assert!(limiter.check(&request(at(2))).await.unwrap().is_allowed());
        assert!(!limiter.is_degraded());
    }

    /// Requests every `step` for `duration`, round-robin over `instances`, all on one
    /// bucket of `policy`: how many were admitted.
    async fn sustained(
        instances: &[RedisLimiter],
        policy: &Arc<RatePolicy>,
        bucket: &str,
        step: Duration,
        duration: Duration,
    ) -> usize {
        let mut admitted = 0;
        let mut elapsed = Duration::ZERO;
        let mut i = 0;
        while elapsed <= duration {
            let now = T0 + elapsed;
            let request = LimitRequest::new(bucket, Arc::clone(policy), 1, now);
            admitted += usize::from(
                instances[i % instances.len()]
                    .check(&request)
                    .await
                    .unwrap()
                    .is_allowed(),
            );
            i += 1;
            elapsed += step;
        }
        admitted
    }

    /// A burst of `limit` at once plus the rate over the rest: what GCRA admits.
    fn expected(burst: u32, per_minute: u32, duration: Duration) -> f64 {
        f64::from(burst) + f64::from(per_minute) * duration.as_secs_f64() / 60.0
    }

    /// Ten minutes of requests every 250 ms at 60 a minute, round-robin over
    /// `instances`: the relative error against GCRA's figure (60 burst + 600).
    async fn ten_minutes_error(instances: &[RedisLimiter], policy: &Arc<RatePolicy>) -> f64 {
        let duration = Duration::from_secs(600);
        let step = Duration::from_millis(250);
        let admitted = sustained(instances, policy, "sustained", step, duration).await;
        let expected = expected(60, 60, duration);
        (admitted as f64 - expected).abs() / expected
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn strict_mode_holds_the_limit_across_instances_to_one_percent() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let instances: Vec<RedisLimiter> = (0..3)
            .map(|_| RedisLimiter::new(&server.url()).unwrap())
            .collect();
        let policy: Arc<RatePolicy> = Arc::new("60/min".parse().unwrap());
        let error = ten_minutes_error(&instances, &policy).await;
        assert!(error <= 0.01, "relative error {error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_first_stays_within_five_percent_across_instances() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let instances: Vec<RedisLimiter> = (0..3)
            .map(|_| {
                RedisLimiter::new(&server.url())
                    .unwrap()
                    .with_local_first(LocalFirst::new())
            })
            .collect();
        let policy: Arc<RatePolicy> = Arc::new("60/min".parse().unwrap());
        let error = ten_minutes_error(&instances, &policy).await;
        assert!(error <= 0.05, "relative error {error}");
        // A burst at one instant: all three instances together admit no more than the
        // burst (the bound is 3 × 9 − 30 < 0 units over it).
        let mut at_once = 0;
        for i in 0..90 {
            let request = LimitRequest::new("burst", Arc::clone(&policy), 1, T0);
            at_once += usize::from(instances[i % 3].check(&request).await.unwrap().is_allowed());
        }
        assert_eq!(at_once, 60);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_first_costs_one_round_trip_per_ten_requests_far_from_the_limit() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let limiter = RedisLimiter::new(&server.url())
            .unwrap()
            .with_local_first(LocalFirst::new());
        let policy: Arc<RatePolicy> = Arc::new("1000/h".parse().unwrap());
        // 100 requests over 10 s: a tenth of the burst.
        let admitted = sustained(
            std::slice::from_ref(&limiter),
            &policy,
            "far",
            Duration::from_millis(100),
            Duration::from_millis(9_900),
        )
        .await;
        assert_eq!(admitted, 100);
        assert!(
            limiter.round_trips() <= 10,
            "{} round trips",
            limiter.round_trips()
        );
        // What was admitted locally reached Redis: a strict instance sees it spent, but
        // for the last batch not yet sent and the 2 units refilled in 9.9 s.
        let strict = RedisLimiter::new(&server.url()).unwrap();
        let request = LimitRequest::new(
            "far",
            Arc::clone(&policy),
            0,
            T0 + Duration::from_millis(9_900),
        );
        let Decision::Allowed(status) = strict.check(&request).await.unwrap() else {
            panic!("a free check is allowed");
        };
        assert!(status.remaining <= 1_000 - 90 + 2, "{status:?}");
    }
}
