//! A Redis outage is visible: one log line and a gauge when the limiter switches to its
//! failure policy, one of each when it switches back, and every failure counted (own
//! binary: the recorder and the subscriber are global).
#![cfg(feature = "redis")]

mod support;

use support::Captured;

use std::sync::Arc;
use std::time::Duration;

use metrics_util::debugging::DebugValue;
use support::redis_server::RedisServer;
use time::macros::datetime;
use tower_api_key::rate_limit::{LimitRequest, Limiter, RatePolicy, RedisLimiter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switches_are_logged_once_each_way_and_measured() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let (snapshotter, captured) = Captured::install();

    let limiter = RedisLimiter::new(&server.url())
        .unwrap()
        .with_retry_interval(Duration::ZERO);
    let policy: Arc<RatePolicy> = Arc::new("100/s".parse().unwrap());
    let t0 = datetime!(2026-05-01 12:00 UTC);
    let check = |secs: i64| {
        let request = LimitRequest::new(
            "k",
            Arc::clone(&policy),
            1,
            t0 + time::Duration::seconds(secs),
        );
        let limiter = limiter.clone();
        async move { limiter.check(&request).await.unwrap().is_allowed() }
    };
    assert!(check(0).await);
    server.stop();
    for secs in 1..=3 {
        assert!(check(secs).await, "the local fallback decides");
    }
    // A snapshot reads counters since the previous one.
    let metrics = || {
        let values = snapshotter.snapshot().into_vec();
        let find = |name: &str| {
            values
                .iter()
                .find(|(key, ..)| key.key().name() == name)
                .map(|(.., value)| match value {
                    DebugValue::Gauge(v) => v.into_inner(),
                    DebugValue::Counter(n) => *n as f64,
                    DebugValue::Histogram(_) => f64::NAN,
                })
        };
        (
            find("tower_api_key_rate_limit_redis_degraded"),
            find("tower_api_key_rate_limit_redis_failures_total"),
        )
    };
    assert_eq!(metrics(), (Some(1.0), Some(3.0)));
    server.restart();
    assert!(check(4).await);
    assert!(!limiter.is_degraded());
    assert_eq!(metrics(), (Some(0.0), Some(0.0)));

    let log = captured.text();
    assert_eq!(
        log.matches("Redis rate limiter unavailable").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("Redis rate limiter is back").count(),
        1,
        "{log}"
    );
    assert!(log.contains(&format!(
        "127.0.0.1:{}",
        server.url().rsplit(':').next().unwrap()
    )));
}
