//! A bucket or quota counter in Redis that holds what the limiter never writes (text, a
//! float, a number past any window, a negative) is corrupt: the next check overwrites it
//! as a fresh bucket or counter, admits the request, logs one WARN naming the Redis key
//! and counts it, rather than failing or answering 429 for ever (own binary: the
//! recorder and the subscriber are global).
#![cfg(feature = "redis")]

mod support;

use support::Captured;

use std::sync::Arc;

use metrics_util::debugging::DebugValue;
use support::redis_server::RedisServer;
use time::macros::datetime;
use time::OffsetDateTime;
use tower_api_key::rate_limit::{
    Decision, LimitRequest, Limiter, QuotaPolicy, QuotaRequest, RatePolicy, RedisLimiter,
};

/// The check's time; its UTC day is the quota's period.
const NOW: OffsetDateTime = datetime!(2026-05-01 12:00 UTC);

fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_buckets_and_counters_are_repaired_logged_and_counted() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (snapshotter, captured) = Captured::install();

    let client = redis::Client::open(server.url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let limiter = RedisLimiter::new(&server.url()).unwrap();
    // 5 a minute: one unit every 12 s, a burst of 5 (a window of 60 s).
    let policy: Arc<RatePolicy> = Arc::new("5/min".parse().unwrap());
    let quota = QuotaPolicy::daily(3).unwrap();
    let day = datetime!(2026-05-01 0:00 UTC).unix_timestamp();
    let now = micros(NOW);
    let interval = 12_000_000;

    // Each case: what the bucket holds, and what the quota counter holds (`None`: a
    // valid 0). The first two TATs lie past any window: a day
    // ahead, and a microsecond past the burst window plus the limiter's one second of
    // allowance for clocks; the rest the limiter never writes.
    let far = (now + 86_400_000_000).to_string();
    let just_past = (now + 60_000_000 + 1_000_000 + 1).to_string();
    let cases: [(&str, Option<&str>); 8] = [
        (&far, None),
        (&just_past, None),
        ("abc", Some("abc")),
        ("1e400", Some("1e400")),
        ("99999999999999999999999", Some("99999999999999999999999")),
        ("-5", Some("-5")),
        ("12.5", Some("12.5")),
        ("", Some("")),
    ];
    let mut corrupt_keys = Vec::new();
    for (i, (value, counted)) in cases.iter().enumerate() {
        let bucket = format!("corrupt{i}");
        let counter = format!("quota:corrupt{i}");
        let bucket_key = format!("tower_api_key:rl:{bucket}");
        let quota_key = format!("tower_api_key:q:{counter}:{day}");
        // Without an expiry: left alone, they would stay for ever.
        let mut writes = vec![(&bucket_key, *value)];
        corrupt_keys.push(bucket_key.clone());
        match counted {
            Some(garbage) => {
                writes.push((&quota_key, *garbage));
                corrupt_keys.push(quota_key.clone());
            }
            None => writes.push((&quota_key, "0")),
        }
        for (key, stored) in writes {
            redis::cmd("SET")
                .arg(key)
                .arg(stored)
                .query_async::<()>(&mut redis)
                .await
                .unwrap();
        }
        let request = LimitRequest::new(&bucket, Arc::clone(&policy), 1, NOW)
            .with_quota(QuotaRequest::new(&counter, quota, NOW));
        let Decision::Allowed(status) = limiter.check(&request).await.unwrap() else {
            panic!("{value:?}: refused");
        };
        // As from a full bucket: 4 left, full again in 12 s.
        assert_eq!((status.remaining, status.reset_secs), (4, 12), "{value:?}");
        assert!(!limiter.is_degraded(), "{value:?}: not a Redis failure");

        // Repaired: the TAT of one unit spent now, expiring; one unit of quota spent.
        let tat: String = redis::cmd("GET")
            .arg(&bucket_key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(tat, (now + interval).to_string(), "{value:?}");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&bucket_key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(ttl > 0, "{value:?}: the repaired bucket expires");
        let used: String = redis::cmd("GET")
            .arg(&quota_key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(used, "1", "{value:?}");

        // From then on an ordinary bucket and counter: two more pass, then the quota of
        // 3 is spent.
        let Decision::Allowed(status) = limiter.check(&request).await.unwrap() else {
            panic!("{value:?}: the repaired bucket refused");
        };
        assert_eq!(status.remaining, 3, "{value:?}");
        assert!(limiter.check(&request).await.unwrap().is_allowed());
        assert!(matches!(
            limiter.check(&request).await.unwrap(),
            Decision::QuotaExceeded(q) if q.used == 3
        ));
    }

    // A value the limiter wrote is not corrupt: a bucket emptied by a burst of 5 holds a
    // TAT a whole window ahead, and is refused, not repaired.
    let full = LimitRequest::new("emptied", Arc::clone(&policy), 5, NOW);
    assert!(limiter.check(&full).await.unwrap().is_allowed());
    let next = LimitRequest::new("emptied", Arc::clone(&policy), 1, NOW);
    assert!(matches!(
        limiter.check(&next).await.unwrap(),
        Decision::Limited(_)
    ));

    // One WARN per corrupt value, naming its Redis key, and nothing else at WARN.
    let log = captured.text();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ")).collect();
    assert_eq!(warnings.len(), corrupt_keys.len(), "{log}");
    for key in &corrupt_keys {
        let named = format!("key=\"{key}\"");
        let lines = warnings
            .iter()
            .filter(|l| l.split_whitespace().any(|w| w == named))
            .count();
        assert_eq!(lines, 1, "{key}: {log}");
    }
    assert!(
        warnings
            .iter()
            .all(|l| l.contains("corrupt rate-limit value")),
        "{log}"
    );

    // Counted by kind.
    let counted: Vec<(String, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "tower_api_key_rate_limit_redis_corrupt_total")
        .map(|(key, .., value)| {
            let kind = key.key().labels().map(|l| l.value().to_owned()).collect();
            match value {
                DebugValue::Counter(n) => (kind, n),
                other => panic!("{other:?}"),
            }
        })
        .collect();
    let of = |kind: &str| counted.iter().find(|(k, _)| k == kind).map(|(_, n)| *n);
    assert_eq!(of("bucket"), Some(8));
    assert_eq!(of("quota"), Some(6));
}
