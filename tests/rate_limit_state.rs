//! Where a key's rate-limit state lives: beside its cached record, found again by every
//! fill. The cases that layout makes delicate: a record evicted, invalidated or
//! refilled after its TTL while its bucket is partly spent (no fresh burst), a rotation
//! family after eviction (one bucket), many concurrent requests on one key (exactly the
//! burst), and the public checks sharing the layer's bucket.

use std::time::Duration;

use axum::body::Body;
use axum::handler::Handler;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use tower::ServiceExt;
use tower_api_key::clock::ManualClock;
use tower_api_key::prelude::*;
use tower_api_key::rate_limit::Partition;

fn scopes() -> ScopeModel {
    ScopeModel::builder()
        .resource("posts", ["read"])
        .build()
        .unwrap()
}

async fn list() -> &'static str {
    "posts"
}

/// 5 an hour: nothing refills within these tests' few minutes of manual time.
fn front_door(
    clock: &ManualClock,
    limits: Limits<MemoryLimiter>,
) -> (
    ApiKeyAuth<MemoryStore, RateLimitLayer<MemoryLimiter>>,
    Router,
) {
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .clock(clock.clone())
        .format(KeyFormat::new("pb").unwrap())
        .scopes(scopes())
        .rate_limits(limits)
        .build()
        .unwrap();
    let app = Router::new().route("/posts", get(list.layer(auth.guard("posts:read").unwrap())));
    (auth, app)
}

async fn status(app: &Router, key: &str) -> StatusCode {
    let request = Request::get("/posts")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

async fn admitted(app: &Router, key: &str, attempts: usize) -> usize {
    let mut admitted = 0;
    for _ in 0..attempts {
        if status(app, key).await == StatusCode::OK {
            admitted += 1;
        }
    }
    admitted
}

async fn mint(auth: &ApiKeyAuth<MemoryStore, RateLimitLayer<MemoryLimiter>>) -> CreatedKey {
    auth.manager()
        .create(
            NewKey::new("k", Owner::organization("acme")).with_scopes(["posts:read"]),
            Actor::System("test"),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn no_fresh_burst_when_the_record_is_invalidated_evicted_or_refilled() {
    let clock = ManualClock::default();
    let (auth, app) = front_door(&clock, Limits::new("5/h".parse().unwrap()));
    let created = mint(&auth).await;
    let key = created.key.expose_secret();
    assert_eq!(admitted(&app, key, 2).await, 2);

    // Invalidated: the next request refills the record, and finds the same bucket.
    auth.cache().invalidate(&created.record.id);
    assert_eq!(admitted(&app, key, 1).await, 1);

    // Every record dropped.
    auth.cache().invalidate_all();
    assert_eq!(admitted(&app, key, 1).await, 1);

    // Refilled after the cache TTL (30 s by default).
    clock.advance(Duration::from_secs(31));
    assert_eq!(admitted(&app, key, 5).await, 1, "5 an hour: one was left");
    assert_eq!(status(&app, key).await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_rotation_family_keeps_one_bucket_after_eviction() {
    let clock = ManualClock::default();
    let (auth, app) = front_door(&clock, Limits::new("5/h".parse().unwrap()));
    let old = mint(&auth).await;
    assert_eq!(admitted(&app, old.key.expose_secret(), 3).await, 3);
    let new = auth
        .manager()
        .rotate(
            &old.record.owner,
            &old.record.id,
            Duration::from_secs(600),
            Actor::System("test"),
        )
        .await
        .unwrap();
    auth.cache().invalidate_all();
    // The successor spends what its predecessor left, and so does the old key in its
    // grace: 2 in all.
    assert_eq!(admitted(&app, new.key.expose_secret(), 1).await, 1);
    auth.cache().invalidate_all();
    assert_eq!(admitted(&app, old.key.expose_secret(), 5).await, 1);
    assert_eq!(admitted(&app, new.key.expose_secret(), 5).await, 0);
}

/// One key, 60 requests at once on two worker threads, burst 20: exactly 20 pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_on_one_key_admit_exactly_the_burst() {
    let clock = ManualClock::default();
    let (auth, app) = front_door(&clock, Limits::new("20/h".parse().unwrap()));
    let created = mint(&auth).await;
    let key = created.key.expose_secret().to_owned();
    let requests: Vec<_> = (0..60)
        .map(|_| {
            let app = app.clone();
            let key = key.clone();
            tokio::spawn(async move { status(&app, &key).await })
        })
        .collect();
    let mut ok = 0;
    let mut limited = 0;
    for request in requests {
        match request.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, limited), (20, 40));
}

/// `Limits::check` on a record and the layer spend one bucket.
#[tokio::test]
async fn the_public_check_and_the_layer_share_the_bucket() {
    let clock = ManualClock::default();
    let limits = Limits::new("5/h".parse().unwrap()).with_partition(Partition::Key);
    let (auth, app) = front_door(&clock, limits.clone());
    let created = mint(&auth).await;
    // `limits` is not on the front door's clock: give it the same instant.
    let limits = limits.with_clock(clock.clone());
    for _ in 0..3 {
        assert!(limits.check(&created.record, 1).is_allowed());
    }
    assert_eq!(admitted(&app, created.key.expose_secret(), 5).await, 2);
}

/// Each key has its own bucket under `Partition::Key`, and the registry keeps both
/// while their records are cached.
#[tokio::test]
async fn two_keys_two_buckets() {
    let clock = ManualClock::default();
    let limits = Limits::new("3/h".parse().unwrap()).with_partition(Partition::Key);
    let (auth, app) = front_door(&clock, limits);
    let a = mint(&auth).await;
    let b = mint(&auth).await;
    assert_eq!(admitted(&app, a.key.expose_secret(), 5).await, 3);
    assert_eq!(admitted(&app, b.key.expose_secret(), 5).await, 3);
}
