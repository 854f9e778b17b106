//! Rate limits and quotas, driven by a manual clock: exact counts, shared buckets,
//! policies, weights, headers, memory bounds and quota periods.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{pb_format, record};
use time::macros::datetime;
use tower_api_key::clock::{Clock, ManualClock};
use tower_api_key::key::{KeyFormat, KeyId};
use tower_api_key::rate_limit::{
    Decision, LimitRequest, Limiter, Limits, MemoryLimiter, Partition, QuotaPolicy, QuotaStatus,
    RatePolicy, RateStatus,
};
use tower_api_key::store::{KeyRecord, Owner};
use tower_api_key::RejectionKind;

const MIN: Duration = Duration::from_secs(60);

fn policy(name: &str, quota: u32, window: Duration) -> RatePolicy {
    RatePolicy::new(name, quota, window).unwrap()
}

fn limits(default: &str, clock: &ManualClock) -> Limits {
    Limits::new(default.parse().unwrap()).with_clock(clock.clone())
}

fn live_key(clock: &ManualClock) -> KeyRecord {
    record(
        &pb_format().generate(Some("live")).unwrap(),
        &[],
        clock.now(),
    )
}

/// `live`, `test` and `dev` keys, as PromptFloe has.
fn pf_key(env: &str, owner: &str, clock: &ManualClock) -> KeyRecord {
    let format = KeyFormat::new("pf")
        .unwrap()
        .with_environments(["live", "test", "dev"])
        .unwrap();
    KeyRecord::new(
        &format.generate(Some(env)).unwrap(),
        "key",
        Owner::organization(owner),
        vec![],
        clock.now(),
    )
}

/// The key that replaces `old` in a rotation: a new id in the same family.
fn rotated(old: &KeyRecord, clock: &ManualClock) -> KeyRecord {
    let mut new = live_key(clock);
    new.family = old.family;
    new.owner = old.owner.clone();
    assert_ne!(new.id, old.id);
    new
}

fn allowed(decision: Decision) -> RateStatus {
    match decision {
        Decision::Allowed(status) => status,
        other => panic!("expected Allowed, got {other:?}"),
    }
}

fn limited(decision: Decision) -> RateStatus {
    match decision {
        Decision::Limited(status) => status,
        other => panic!("expected Limited, got {other:?}"),
    }
}

fn quota_exceeded(decision: Decision) -> QuotaStatus {
    match decision {
        Decision::QuotaExceeded(status) => status,
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
}

/// How many of `n` requests of `cost` are allowed right now.
fn allowed_count(limits: &Limits, key: &KeyRecord, cost: u32, n: usize) -> usize {
    (0..n)
        .filter(|_| limits.check(key, cost).is_allowed())
        .count()
}

#[test]
fn five_per_minute_is_exactly_five_then_one_every_twelve_seconds() {
    let clock = ManualClock::default();
    let limits = limits("5/min", &clock);
    let key = live_key(&clock);

    for remaining in (0..5).rev() {
        assert_eq!(allowed(limits.check(&key, 1)).remaining, remaining);
    }
    let sixth = limited(limits.check(&key, 1));
    assert_eq!(sixth.retry_after, Some(Duration::from_secs(12)));
    assert_eq!(sixth.retry_after_secs(), Some(12));
    assert_eq!(sixth.remaining, 0);

    clock.advance(Duration::from_secs(11));
    let early = limited(limits.check(&key, 1));
    assert_eq!(early.retry_after, Some(Duration::from_secs(1)));

    clock.advance(Duration::from_secs(1));
    assert!(limits.check(&key, 1).is_allowed());
    assert_eq!(limited(limits.check(&key, 1)).retry_after_secs(), Some(12));

    // A full window later the whole burst is back, and no more.
    clock.advance(MIN);
    assert_eq!(allowed_count(&limits, &key, 1, 20), 5);
}

#[test]
fn headers_use_the_current_draft_syntax() {
    let clock = ManualClock::default();
    let limits = limits("5/min", &clock);
    let key = live_key(&clock);

    let first = allowed(limits.check(&key, 1));
    assert_eq!(first.ratelimit_header(), "\"default\";r=4;t=12");
    assert_eq!(first.policy_header(), "\"default\";q=5;w=60");
    assert_eq!(first.retry_after_secs(), None);

    for _ in 0..4 {
        limits.check(&key, 1);
    }
    clock.advance(Duration::from_millis(2_500));
    let refused = limits.check(&key, 1);
    assert_eq!(
        refused.kind(),
        Some(RejectionKind::RateLimited {
            retry_after: Duration::from_secs(10)
        })
    );
    let status = limited(refused);
    assert_eq!(status.retry_after, Some(Duration::from_millis(9_500)));
    assert_eq!(status.retry_after_secs(), Some(10));
    assert_eq!(status.ratelimit_header(), "\"default\";r=0;t=10");
    assert_eq!(status.policy_header(), "\"default\";q=5;w=60");

    let mut headers = http::HeaderMap::new();
    status.insert_headers(&mut headers);
    assert_eq!(headers["retry-after"], "10");
    assert_eq!(headers["ratelimit"], "\"default\";r=0;t=10");
    assert_eq!(headers["ratelimit-policy"], "\"default\";q=5;w=60");
}

#[test]
fn retry_after_is_never_zero() {
    let clock = ManualClock::default();
    // One unit every 10 ms: every wait is well under a second.
    let limits = limits("100/s", &clock);
    let key = live_key(&clock);
    assert_eq!(allowed_count(&limits, &key, 1, 100), 100);
    // Waits of 10 ms down to 1 ms all round up to one second.
    for step in 0..10 {
        let status = limited(limits.check(&key, 1));
        let wait = status.retry_after.unwrap();
        assert_eq!(wait, Duration::from_millis(10 - step), "step {step}");
        assert_eq!(status.retry_after_secs(), Some(1), "step {step}");
        assert_eq!(status.reset_secs, 1, "step {step}");
        clock.advance(Duration::from_millis(1));
    }
    assert!(limits.check(&key, 1).is_allowed());
    assert_eq!(
        limits.check(&key, 1).kind(),
        Some(RejectionKind::RateLimited {
            retry_after: Duration::from_secs(1)
        })
    );
}

#[test]
fn a_rotation_shares_the_family_bucket() {
    let clock = ManualClock::default();
    let limits = limits("5/min", &clock).with_partition(Partition::Family);
    let old = live_key(&clock);
    let new = rotated(&old, &clock);

    assert_eq!(allowed_count(&limits, &old, 1, 3), 3);
    assert_eq!(allowed_count(&limits, &new, 1, 10), 2);
    assert!(!limits.check(&old, 1).is_allowed());

    // Another family is untouched.
    assert_eq!(allowed_count(&limits, &live_key(&clock), 1, 10), 5);
}

#[test]
fn partition_by_key_gives_each_key_its_own_bucket() {
    let clock = ManualClock::default();
    let limits = limits("5/min", &clock).with_partition(Partition::Key);
    let old = live_key(&clock);
    let new = rotated(&old, &clock);
    assert_eq!(allowed_count(&limits, &old, 1, 10), 5);
    assert_eq!(allowed_count(&limits, &new, 1, 10), 5);
}

#[test]
fn partition_by_owner_shares_one_bucket_across_keys() {
    let clock = ManualClock::default();
    let limits = limits("5/min", &clock).with_partition(Partition::Owner);
    let a = pf_key("live", "acme", &clock);
    let b = pf_key("live", "acme", &clock);
    let other = pf_key("live", "globex", &clock);

    assert_eq!(allowed_count(&limits, &a, 1, 2), 2);
    assert_eq!(allowed_count(&limits, &b, 1, 10), 3);
    assert!(!limits.check(&a, 1).is_allowed());
    assert_eq!(allowed_count(&limits, &other, 1, 10), 5);

    // A user and an organization with the same id are different owners.
    let mut user = pf_key("live", "x", &clock);
    user.owner = Owner::user("acme");
    assert_eq!(allowed_count(&limits, &user, 1, 10), 5);
}

#[test]
fn dev_keys_are_limited_harder() {
    let clock = ManualClock::default();
    let limits = limits("10/min", &clock)
        .with_environment_policy("dev", policy("dev", 2, MIN))
        .unwrap()
        .with_partition(Partition::Owner);
    let live = pf_key("live", "acme", &clock);
    let dev = pf_key("dev", "acme", &clock);
    let test = pf_key("test", "acme", &clock);

    assert_eq!(allowed_count(&limits, &dev, 1, 10), 2);
    let status = limited(limits.check(&dev, 1));
    assert_eq!(status.policy_header(), "\"dev\";q=2;w=60");
    assert_eq!(status.retry_after_secs(), Some(30));

    // Different policies never share a bucket, even partitioned by owner.
    assert_eq!(allowed_count(&limits, &live, 1, 6), 6);
    assert_eq!(allowed_count(&limits, &test, 1, 10), 4);
}

#[test]
fn a_named_policy_on_the_record_wins() {
    let clock = ManualClock::default();
    let limits = limits("2/min", &clock)
        .with_environment_policy("dev", policy("dev", 1, MIN))
        .unwrap()
        .with_policy(policy("enterprise", 20, MIN));
    let mut key = pf_key("dev", "acme", &clock);
    key.rate_limit_policy = Some("enterprise".into());

    assert_eq!(allowed_count(&limits, &key, 1, 30), 20);
    assert_eq!(
        limited(limits.check(&key, 1)).policy_header(),
        "\"enterprise\";q=20;w=60"
    );

    // An unknown name falls back to the environment's policy (and logs a warning).
    let mut unknown = pf_key("dev", "acme", &clock);
    unknown.rate_limit_policy = Some("platinum".into());
    assert_eq!(allowed_count(&limits, &unknown, 1, 10), 1);
    let mut unknown_live = pf_key("live", "acme", &clock);
    unknown_live.rate_limit_policy = Some("platinum".into());
    assert_eq!(allowed_count(&limits, &unknown_live, 1, 10), 2);
}

#[test]
fn routes_charge_their_weight() {
    let clock = ManualClock::default();
    let limits = limits("10/min", &clock);
    let key = live_key(&clock);

    assert_eq!(allowed(limits.check(&key, 4)).remaining, 6);
    assert_eq!(allowed(limits.check(&key, 4)).remaining, 2);
    // Four more do not fit; the two that are left still do.
    let refused = limited(limits.check(&key, 4));
    assert_eq!(refused.remaining, 2);
    assert_eq!(refused.retry_after, Some(Duration::from_secs(12)));
    assert_eq!(allowed(limits.check(&key, 2)).remaining, 0);
    // A free route is always allowed and reports the bucket.
    let free = allowed(limits.check(&key, 0));
    assert_eq!((free.remaining, free.reset_secs), (0, 60));
}

#[test]
fn a_cost_above_the_burst_is_refused_as_such_not_rate_limited() {
    let clock = ManualClock::default();
    let limits = limits("5/min", &clock);
    let key = live_key(&clock);

    let decision = limits.check(&key, 6);
    assert_eq!(
        decision,
        Decision::CostExceedsBurst {
            policy: "default".into(),
            cost: 6,
            burst: 5
        }
    );
    assert!(!matches!(
        decision.kind(),
        Some(RejectionKind::RateLimited { .. })
    ));
    // It spent nothing.
    assert_eq!(allowed_count(&limits, &key, 1, 10), 5);
    // And the router can refuse such a route when it is built.
    let err = limits.validate_cost(6).unwrap_err();
    assert!(err.message().contains("\"default\""), "{err}");
    assert!(limits.validate_cost(5).is_ok());
}

#[test]
fn a_larger_burst_allows_costlier_requests() {
    let clock = ManualClock::default();
    let limits =
        Limits::new(policy("bursty", 5, MIN).with_burst(10).unwrap()).with_clock(clock.clone());
    let key = live_key(&clock);
    assert!(limits.check(&key, 8).is_allowed());
    assert!(limits.check(&key, 2).is_allowed());
    assert_eq!(
        limited(limits.check(&key, 1)).retry_after,
        Some(Duration::from_secs(12))
    );
}

#[test]
fn memory_stays_bounded_with_100_000_keys() {
    let clock = ManualClock::default();
    let limits = limits("5/min", &clock)
        .with_partition(Partition::Key)
        .with_max_partitions(10_000)
        .unwrap()
        .with_quota(QuotaPolicy::daily(1_000_000).unwrap())
        .with_max_quota_owners(1_000)
        .unwrap();
    let mut key = live_key(&clock);
    for i in 0..100_000 {
        key.id = KeyId::new(&format!("k{i}")).unwrap();
        key.owner = Owner::organization(format!("org{i}"));
        assert!(limits.check(&key, 1).is_allowed(), "key {i}");
    }
    limits.backend().run_pending_tasks();
    let partitions = limits.backend().partition_count();
    assert!(partitions <= 10_000, "{partitions} buckets held");
    assert!(partitions >= 1_000, "{partitions} buckets held");
    let owners = limits.backend().quota_owner_count();
    assert!(owners <= 1_000, "{owners} quota counters held");

    // The most recent keys are still held, so still limited.
    for i in 99_990..100_000 {
        key.id = KeyId::new(&format!("k{i}")).unwrap();
        assert_eq!(allowed_count(&limits, &key, 1, 10), 4, "key {i}");
    }
}

#[test]
fn the_daily_quota_resets_exactly_at_utc_midnight() {
    let clock = ManualClock::new(datetime!(2026-03-10 09:00 UTC));
    let limits = limits("100/s", &clock).with_quota(QuotaPolicy::daily(3).unwrap());
    let key = live_key(&clock);

    assert_eq!(allowed_count(&limits, &key, 1, 3), 3);
    let refused = limits.check(&key, 1);
    assert_eq!(refused.kind(), Some(RejectionKind::QuotaExceeded));
    let status = quota_exceeded(refused);
    assert_eq!((status.used, status.limit, status.remaining()), (3, 3, 0));
    assert_eq!(status.reset_secs, 15 * 3600);
    assert_eq!(status.ratelimit_header(), "\"daily\";r=0;t=54000");
    assert_eq!(status.policy_header(), "\"daily\";q=3;w=86400");

    clock.set(datetime!(2026-03-10 23:59:59 UTC));
    let last_second = quota_exceeded(limits.check(&key, 1));
    assert_eq!(last_second.reset_secs, 1);

    clock.set(datetime!(2026-03-11 00:00:00 UTC));
    assert_eq!(allowed_count(&limits, &key, 1, 10), 3);
}

#[test]
fn the_quota_is_per_owner_across_keys_and_counts_weight() {
    let clock = ManualClock::new(datetime!(2026-03-10 09:00 UTC));
    let limits = limits("100/s", &clock).with_quota(QuotaPolicy::daily(10).unwrap());
    let a = pf_key("live", "acme", &clock);
    let b = pf_key("dev", "acme", &clock);
    let other = pf_key("live", "globex", &clock);

    assert!(limits.check(&a, 6).is_allowed());
    assert!(limits.check(&b, 3).is_allowed());
    assert_eq!(quota_exceeded(limits.check(&a, 2)).used, 9);
    assert!(limits.check(&b, 1).is_allowed());
    assert_eq!(allowed_count(&limits, &other, 1, 20), 10);
}

#[test]
fn test_keys_can_be_exempt_from_the_quota() {
    let clock = ManualClock::default();
    let limits = limits("100/s", &clock)
        .with_quota(QuotaPolicy::daily(2).unwrap())
        .with_quota_exempt_environment("test")
        .unwrap();
    let live = pf_key("live", "acme", &clock);
    let test = pf_key("test", "acme", &clock);

    assert_eq!(allowed_count(&limits, &test, 1, 50), 50);
    assert_eq!(allowed_count(&limits, &live, 1, 5), 2);
    // Still rate limited.
    assert_eq!(allowed_count(&limits, &test, 1, 100), 50);
}

#[test]
fn the_monthly_quota_resets_on_the_first() {
    let clock = ManualClock::new(datetime!(2026-02-28 23:59:59 UTC));
    let limits = limits("100/s", &clock).with_quota(QuotaPolicy::monthly(2).unwrap());
    let key = live_key(&clock);
    assert_eq!(allowed_count(&limits, &key, 1, 5), 2);
    let status = quota_exceeded(limits.check(&key, 1));
    assert_eq!((status.policy, status.reset_secs), ("monthly", 1));
    assert_eq!(status.window_secs, 28 * 86_400);
    clock.advance(Duration::from_secs(1));
    assert_eq!(allowed_count(&limits, &key, 1, 5), 2);
}

#[test]
fn a_rate_limited_request_spends_no_quota() {
    let clock = ManualClock::new(datetime!(2026-03-10 09:00 UTC));
    let limits = limits("2/min", &clock).with_quota(QuotaPolicy::daily(4).unwrap());
    let key = live_key(&clock);

    assert_eq!(allowed_count(&limits, &key, 1, 50), 2);
    // 48 refusals later, two units of quota are left.
    clock.advance(MIN);
    assert_eq!(allowed_count(&limits, &key, 1, 50), 2);
    clock.advance(MIN);
    assert!(matches!(limits.check(&key, 1), Decision::QuotaExceeded(_)));
}

#[test]
fn a_quota_refusal_spends_no_rate_limit_units() {
    let clock = ManualClock::new(datetime!(2026-03-10 09:00 UTC));
    let limits = limits("5/min", &clock).with_quota(QuotaPolicy::daily(1).unwrap());
    let key = live_key(&clock);

    assert_eq!(allowed(limits.check(&key, 1)).remaining, 4);
    for _ in 0..3 {
        assert!(matches!(limits.check(&key, 1), Decision::QuotaExceeded(_)));
    }
    // A free request reads the bucket: still 4, not 1.
    assert_eq!(allowed(limits.check(&key, 0)).remaining, 4);
    // When both would refuse, the rate limit answers first (429 before 403).
    assert!(matches!(limits.check(&key, 5), Decision::Limited(_)));
    assert_eq!(allowed(limits.check(&key, 0)).remaining, 4);
}

#[test]
fn invalid_policies_are_refused_when_built() {
    for (quota, window) in [(0, MIN), (5, Duration::ZERO)] {
        let err = RatePolicy::new("dev", quota, window).unwrap_err();
        assert!(err.message().contains("\"dev\""), "{err}");
    }
    for text in [
        "0/s",
        "abc",
        "10/fortnight",
        "-1/s",
        "",
        "5",
        "5/",
        "/s",
        "1/2/s",
    ] {
        let err = text.parse::<RatePolicy>().unwrap_err();
        assert!(
            err.message()
                .starts_with(&format!("invalid rate limit {text:?}: ")),
            "{err}"
        );
    }
    assert!(QuotaPolicy::daily(0).is_err());
    assert!(Limits::new("1/s".parse().unwrap())
        .with_max_partitions(0)
        .is_err());
}

/// A backend that records what it is asked and can fail, standing in for a shared one.
#[derive(Clone, Default)]
struct Recording {
    inner: MemoryLimiter,
    buckets: Arc<Mutex<Vec<String>>>,
    fail: Arc<AtomicUsize>,
}

#[derive(Debug, thiserror::Error)]
#[error("backend unavailable")]
struct Unavailable;

impl Limiter for Recording {
    type Error = Unavailable;

    async fn check(&self, request: &LimitRequest) -> Result<Decision, Unavailable> {
        if self.fail.load(Ordering::SeqCst) > 0 {
            return Err(Unavailable);
        }
        self.buckets.lock().unwrap().push(request.bucket.clone());
        self.inner
            .check(request)
            .await
            .map_err(|never| match never {})
    }
}

#[tokio::test]
async fn any_backend_slots_in() {
    let clock = ManualClock::default();
    let backend = Recording::default();
    let limits = limits("2/min", &clock).with_backend(backend.clone());
    let old = live_key(&clock);
    let new = rotated(&old, &clock);

    assert!(limits.check_async(&old, 1).await.unwrap().is_allowed());
    assert!(limits.check_async(&new, 1).await.unwrap().is_allowed());
    assert!(!limits.check_async(&new, 1).await.unwrap().is_allowed());
    let buckets = backend.buckets.lock().unwrap().clone();
    assert_eq!(buckets.len(), 3);
    assert!(buckets.iter().all(|b| *b == buckets[0]), "{buckets:?}");
    assert_eq!(
        buckets[0],
        format!("rl:default:2:60:2:family:{}", old.family)
    );

    // A cost that can never fit is refused before the backend is asked.
    assert!(matches!(
        limits.check_async(&old, 3).await.unwrap(),
        Decision::CostExceedsBurst { .. }
    ));
    assert_eq!(backend.buckets.lock().unwrap().len(), 3);

    backend.fail.store(1, Ordering::SeqCst);
    assert!(limits.check_async(&old, 1).await.is_err());
}

#[test]
fn the_default_backend_decides_the_same_sync_and_async() {
    let clock = ManualClock::default();
    let limits = limits("3/min", &clock);
    let key = live_key(&clock);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert!(limits.check(&key, 2).is_allowed());
    let decision = runtime.block_on(limits.check_async(&key, 1)).unwrap();
    assert_eq!(allowed(decision).remaining, 0);
    assert!(!limits.check(&key, 1).is_allowed());
}
