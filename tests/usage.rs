//! Usage per key, on every store: the stores' buckets (added to, never replaced, read
//! by hour range, pruned), and over real routers exact hourly buckets by outcome under
//! a scripted load with a manual clock, across an hour boundary, through cache
//! invalidation, stacked layers and a restart; retention; authority on reading it
//! back. PostgreSQL cases run when `TOWER_API_KEY_TEST_POSTGRES_URL` is set.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::body::Body;
use axum::handler::Handler;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use time::macros::datetime;
use time::OffsetDateTime;
use tower::ServiceExt;
use tower_api_key::clock::ManualClock;
use tower_api_key::key::KeyId;
use tower_api_key::prelude::*;
use tower_api_key::rate_limit::{Limits, QuotaPolicy, RatePolicy};
use tower_api_key::store::ManagedKeyStore;
use tower_api_key::usage::{UsageBucket, UsageCounts};

type Reopen<S> = Box<dyn Fn() -> Pin<Box<dyn Future<Output = S> + Send>> + Send + Sync>;

/// 10:59:00 on a day, so that an hour boundary is one minute away.
const START: OffsetDateTime = datetime!(2026-03-10 10:59:00 UTC);

fn scopes() -> ScopeModel {
    ScopeModel::builder()
        .resource("posts", ["read", "write"])
        .resource("api_keys", ["read", "write"])
        .scope("audit_log:read")
        .build()
        .unwrap()
}

async fn ok() -> &'static str {
    "ok"
}

/// A front door with usage on (flushed by hand: the interval is an hour), a limit of 3
/// requests a minute per key, a daily quota of 8 per owner, and two routes.
fn front_door<S: ManagedKeyStore>(
    store: S,
    clock: &ManualClock,
) -> (ApiKeyAuth<S, RateLimitLayer<MemoryLimiter>>, Router) {
    let limits = Limits::new(RatePolicy::new("default", 3, Duration::from_secs(60)).unwrap())
        .with_quota(QuotaPolicy::daily(8).unwrap());
    let clock_for_usage = clock.clone();
    let auth = ApiKeyAuth::builder(store)
        .clock(clock.clone())
        .format(KeyFormat::new("pb").unwrap())
        .scopes(scopes())
        .rate_limits(limits)
        .usage(move |usage| {
            usage
                .with_flush_interval(Duration::from_secs(3600))
                .with_retention(Duration::from_secs(48 * 3600))
                .with_clock(clock_for_usage)
        })
        .build()
        .unwrap();
    let app = Router::new()
        .route("/read", get(ok.layer(auth.guard("posts:read").unwrap())))
        .route("/write", get(ok.layer(auth.guard("posts:write").unwrap())))
        .nest("/v1", auth.management_routes().unwrap());
    (auth, app)
}

async fn call(app: &Router, path: &str, key: &str) -> StatusCode {
    let request = Request::get(path)
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

async fn mint<S: ManagedKeyStore>(
    auth: &ApiKeyAuth<S, RateLimitLayer<MemoryLimiter>>,
    owner: &str,
) -> (KeyId, String) {
    let created = auth
        .manager()
        .create(
            NewKey::new("k", Owner::organization(owner)).with_scopes(["posts:read"]),
            Actor::System("test"),
        )
        .await
        .unwrap();
    (created.record.id, created.key.expose_secret().to_owned())
}

fn counts(admitted: u64, scope: u64, rate: u64, quota: u64) -> UsageCounts {
    UsageCounts {
        admitted,
        refused_scope: scope,
        refused_rate_limit: rate,
        refused_quota: quota,
    }
}

/// `(hour, counts)` of `id`'s buckets over the day of `START`.
async fn buckets<S: ManagedKeyStore>(store: &S, id: &KeyId) -> Vec<(OffsetDateTime, UsageCounts)> {
    let from = datetime!(2026-03-10 00:00 UTC);
    let to = datetime!(2026-03-11 00:00 UTC);
    store
        .usage(id, from, to)
        .await
        .unwrap()
        .into_iter()
        .map(|UsageBucket { hour, counts, .. }| (hour, counts))
        .collect()
}

mod cases {
    use super::*;

    /// The store's side: buckets are added to, never replaced; a range `[from, to)`
    /// holds the buckets whose hour starts in it; pruning drops what starts before.
    pub(crate) async fn stores_add_read_and_prune_buckets<S: ManagedKeyStore>(
        store: S,
        reopen: Reopen<S>,
    ) {
        let key = KeyId::new("usage_key_1").unwrap();
        let other = KeyId::new("usage_key_2").unwrap();
        let hour = |h: i64| datetime!(2026-03-10 00:00 UTC) + time::Duration::hours(h);
        let bucket = |id: KeyId, h: i64, c: UsageCounts| UsageBucket {
            key_id: id,
            hour: hour(h),
            counts: c,
        };
        store
            .add_usage(&[
                bucket(key, 10, counts(3, 1, 2, 0)),
                bucket(key, 11, counts(5, 0, 0, 1)),
                bucket(other, 10, counts(1, 0, 0, 0)),
            ])
            .await
            .unwrap();
        store
            .add_usage(&[bucket(key, 11, counts(1, 1, 1, 1))])
            .await
            .unwrap();
        store.add_usage(&[]).await.unwrap();
        let read = |store: S, from: OffsetDateTime, to: OffsetDateTime| async move {
            store
                .usage(&key, from, to)
                .await
                .unwrap()
                .into_iter()
                .map(|b| (b.key_id, b.hour, b.counts))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            read(store.clone(), hour(0), hour(24)).await,
            vec![
                (key, hour(10), counts(3, 1, 2, 0)),
                (key, hour(11), counts(6, 1, 1, 2)),
            ]
        );
        // A bucket belongs to a range when its hour starts in it.
        let half = time::Duration::minutes(30);
        assert_eq!(
            read(store.clone(), hour(10) + half, hour(24)).await.len(),
            1
        );
        assert_eq!(read(store.clone(), hour(10), hour(11)).await.len(), 1);
        assert_eq!(
            read(store.clone(), hour(10), hour(11) + half).await.len(),
            2
        );
        assert_eq!(read(store.clone(), hour(11), hour(10)).await, Vec::new());
        // What another instance reads is what was written.
        let again = reopen().await;
        assert_eq!(read(again, hour(0), hour(24)).await.len(), 2);
        // Pruning drops the buckets that start before the instant, of every key.
        assert_eq!(store.prune_usage(hour(10) + half).await.unwrap(), 2);
        assert_eq!(
            read(store.clone(), hour(0), hour(24)).await,
            vec![(key, hour(11), counts(6, 1, 1, 2))]
        );
        assert!(store
            .usage(&other, hour(0), hour(24))
            .await
            .unwrap()
            .is_empty());
    }

    /// Every outcome, counted exactly, in the hour of each request: before and after
    /// an hour boundary, through an invalidation of the key's cached entry.
    pub(crate) async fn buckets_are_exact_by_hour_and_outcome<S: ManagedKeyStore>(
        store: S,
        _: Reopen<S>,
    ) {
        let clock = ManualClock::new(START);
        let (auth, app) = front_door(store.clone(), &clock);
        let (id, key) = mint(&auth, "acme").await;
        let (other, other_key) = mint(&auth, "globex").await;

        // 10:59: 3 admitted, 2 over the rate limit, 1 without the scope.
        for expected in [200, 200, 200, 429, 429] {
            assert_eq!(call(&app, "/read", &key).await, expected);
        }
        assert_eq!(call(&app, "/write", &key).await, StatusCode::FORBIDDEN);
        // The other key's use is its own.
        assert_eq!(call(&app, "/read", &other_key).await, StatusCode::OK);

        // 11:00:30, with the key's cached entry dropped in between: its counts go on.
        clock.advance(Duration::from_secs(90));
        auth.cache().invalidate(&id);
        for expected in [200, 200, 200] {
            assert_eq!(call(&app, "/read", &key).await, expected);
        }
        // 11:02: the rate limit has room again, but after 2 more the owner's daily
        // quota of 8 is spent.
        clock.advance(Duration::from_secs(90));
        for expected in [200, 200, 403] {
            assert_eq!(call(&app, "/read", &key).await, expected);
        }

        auth.flush().await.unwrap();
        assert_eq!(
            buckets(&store, &id).await,
            vec![
                (datetime!(2026-03-10 10:00 UTC), counts(3, 1, 2, 0)),
                (datetime!(2026-03-10 11:00 UTC), counts(5, 0, 0, 1)),
            ]
        );
        assert_eq!(
            buckets(&store, &other).await,
            vec![(datetime!(2026-03-10 10:00 UTC), counts(1, 0, 0, 0))]
        );

        // Read back through the key manager, with `get`'s authority: another owner's
        // key is not found, whoever asks; a reversed or over-long range is refused.
        let day = (
            datetime!(2026-03-10 00:00 UTC),
            datetime!(2026-03-11 00:00 UTC),
        );
        let manager = auth.manager();
        let acme = Owner::organization("acme");
        let read = manager
            .usage(&acme, &id, day.0, day.1, Actor::System("test"))
            .await
            .unwrap();
        assert_eq!(read.len(), 2);
        let globex = Owner::organization("globex");
        for (owner, key_id) in [(&globex, &id), (&acme, &other)] {
            let refused = manager
                .usage(owner, key_id, day.0, day.1, Actor::System("test"))
                .await
                .unwrap_err();
            assert_eq!(refused.status(), StatusCode::NOT_FOUND, "{refused}");
        }
        for (from, to) in [(day.1, day.0), (day.0, day.0 + time::Duration::days(32))] {
            let refused = manager
                .usage(&acme, &id, from, to, Actor::System("test"))
                .await
                .unwrap_err();
            assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{refused}");
        }

        // A second flush adds to the buckets, never replaces them.
        assert_eq!(call(&app, "/write", &key).await, StatusCode::FORBIDDEN);
        auth.flush().await.unwrap();
        assert_eq!(
            buckets(&store, &id).await[1],
            (datetime!(2026-03-10 11:00 UTC), counts(5, 1, 0, 1))
        );
    }

    /// Refusals before a key is known count for no key; a request authenticated twice
    /// (a router-wide layer and a guard) counts once.
    pub(crate) async fn each_request_counts_once_and_unknown_keys_not_at_all<S: ManagedKeyStore>(
        store: S,
        _: Reopen<S>,
    ) {
        let clock = ManualClock::new(START);
        let (auth, _) = front_door(store.clone(), &clock);
        let app = Router::new()
            .route("/read", get(ok.layer(auth.guard("posts:read").unwrap())))
            .layer(auth.layer());
        let (id, key) = mint(&auth, "acme").await;
        assert_eq!(call(&app, "/read", &key).await, StatusCode::OK);
        assert_eq!(
            call(&app, "/read", "pb_nonsense").await,
            StatusCode::UNAUTHORIZED
        );
        auth.manager()
            .revoke(&Owner::organization("acme"), &id, Actor::System("test"))
            .await
            .unwrap();
        assert_eq!(call(&app, "/read", &key).await, StatusCode::UNAUTHORIZED);
        auth.flush().await.unwrap();
        assert_eq!(
            buckets(&store, &id).await,
            vec![(datetime!(2026-03-10 10:00 UTC), counts(1, 0, 0, 0))]
        );
    }

    /// Written counts survive a restart; what was not flushed is lost (at most one
    /// flush interval's worth), and the restarted instance adds to the same buckets.
    pub(crate) async fn a_restart_keeps_what_was_flushed<S: ManagedKeyStore>(
        store: S,
        reopen: Reopen<S>,
    ) {
        let clock = ManualClock::new(START);
        let (auth, app) = front_door(store.clone(), &clock);
        let (id, key) = mint(&auth, "acme").await;
        assert_eq!(call(&app, "/read", &key).await, StatusCode::OK);
        auth.flush().await.unwrap();
        assert_eq!(call(&app, "/write", &key).await, StatusCode::FORBIDDEN);
        // The process dies: nothing runs its shutdown flush (nor any drop).
        #[allow(clippy::mem_forget)]
        std::mem::forget(auth);
        drop(app);

        let restarted = reopen().await;
        let (auth, app) = front_door(restarted.clone(), &clock);
        assert_eq!(
            buckets(&restarted, &id).await,
            vec![(datetime!(2026-03-10 10:00 UTC), counts(1, 0, 0, 0))],
            "the unflushed refusal is lost, the flushed admission kept"
        );
        assert_eq!(call(&app, "/read", &key).await, StatusCode::OK);
        auth.flush().await.unwrap();
        assert_eq!(
            buckets(&restarted, &id).await,
            vec![(datetime!(2026-03-10 10:00 UTC), counts(2, 0, 0, 0))]
        );
    }

    /// Over HTTP: `GET /v1/api_keys/{id}/usage` answers the buckets with the
    /// router's authority (another owner's key is 404), pages ranges over 31 days,
    /// answers a reversed range with nothing and a malformed instant with 400.
    pub(crate) async fn the_router_serves_usage_with_its_authority<S: ManagedKeyStore>(
        store: S,
        _: Reopen<S>,
    ) {
        let clock = ManualClock::new(START);
        let (auth, app) = front_door(store.clone(), &clock);
        let (id, key) = mint(&auth, "acme").await;
        let reader = auth
            .manager()
            .create(
                NewKey::new("reader", Owner::organization("acme")).with_scopes(["api_keys:read"]),
                Actor::System("test"),
            )
            .await
            .unwrap();
        let reader = reader.key.expose_secret().to_owned();
        let stranger = auth
            .manager()
            .create(
                NewKey::new("reader", Owner::organization("globex")).with_scopes(["api_keys:read"]),
                Actor::System("test"),
            )
            .await
            .unwrap();
        let stranger = stranger.key.expose_secret().to_owned();
        assert_eq!(call(&app, "/read", &key).await, StatusCode::OK);
        assert_eq!(call(&app, "/write", &key).await, StatusCode::FORBIDDEN);
        auth.flush().await.unwrap();

        // Each read a minute after the last: the rate limit is 3 a minute.
        let get_json = |path: String, key: String| {
            let app = app.clone();
            clock.advance(Duration::from_secs(60));
            async move {
                let request = Request::get(path)
                    .header("authorization", format!("Bearer {key}"))
                    .body(Body::empty())
                    .unwrap();
                let response = app.oneshot(request).await.unwrap();
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                (
                    status,
                    serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
                )
            }
        };
        let path = |query: &str| format!("/v1/api_keys/{id}/usage{query}");
        // The last 24 hours by default.
        let (status, body) = get_json(path(""), reader.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            serde_json::json!({
                "items": [{
                    "key_id": id.as_str(),
                    "hour": "2026-03-10T10:00:00Z",
                    "admitted": 1,
                    "refused_scope": 1,
                    "refused_rate_limit": 0,
                    "refused_quota": 0,
                }],
                "next_from": null,
            })
        );
        // Another organization's reader: the same 404 as a missing key.
        let (status, _) = get_json(path(""), stranger).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // A range over 31 days is answered a page at a time.
        let (status, body) = get_json(
            path("?from=2026-03-01T00:00:00Z&to=2026-05-01T00:00:00Z"),
            reader.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["next_from"], "2026-04-01T00:00:00Z");
        assert_eq!(body["items"].as_array().unwrap().len(), 1);
        // A reversed range holds no hour; a malformed instant is refused.
        let (status, body) = get_json(
            path("?from=2026-03-11T00:00:00Z&to=2026-03-10T00:00:00Z"),
            reader.clone(),
        )
        .await;
        assert_eq!(
            (status, body["items"].clone()),
            (StatusCode::OK, serde_json::json!([]))
        );
        let (status, _) = get_json(path("?from=yesterday"), reader.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // The key being read needs no scope of its own; the reader does.
        let (status, _) = get_json(path(""), key.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // A revoked key's usage stays readable (billing), while the key itself is 404.
        auth.manager()
            .revoke(&Owner::organization("acme"), &id, Actor::System("test"))
            .await
            .unwrap();
        let (status, body) = get_json(path(""), reader.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["items"].as_array().unwrap().len(), 1);
        let (status, _) = get_json(format!("/v1/api_keys/{id}"), reader.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    /// Buckets older than the retention are dropped by a flush.
    pub(crate) async fn retention_drops_old_buckets<S: ManagedKeyStore>(store: S, _: Reopen<S>) {
        let clock = ManualClock::new(START);
        let (auth, app) = front_door(store.clone(), &clock);
        let (id, key) = mint(&auth, "acme").await;
        assert_eq!(call(&app, "/read", &key).await, StatusCode::OK);
        auth.flush().await.unwrap();
        // 47 hours later the bucket is within the 48-hour retention.
        clock.advance(Duration::from_secs(47 * 3600));
        auth.flush().await.unwrap();
        let all = |store: S| async move {
            store
                .usage(
                    &id,
                    OffsetDateTime::UNIX_EPOCH,
                    datetime!(2100-01-01 0:00 UTC),
                )
                .await
                .unwrap()
        };
        assert_eq!(all(store.clone()).await.len(), 1);
        // Two hours later it is not.
        clock.advance(Duration::from_secs(2 * 3600));
        auth.flush().await.unwrap();
        assert_eq!(all(store.clone()).await, Vec::new());
    }
}

macro_rules! suite {
    ($module:ident, $open:expr) => {
        suite!(@cases $module, $open,
            stores_add_read_and_prune_buckets,
            buckets_are_exact_by_hour_and_outcome,
            each_request_counts_once_and_unknown_keys_not_at_all,
            a_restart_keeps_what_was_flushed,
            retention_drops_old_buckets,
            the_router_serves_usage_with_its_authority,
        );
    };
    (@cases $module:ident, $open:expr, $($case:ident),* $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    // `_guard` keeps the database until the case ends.
                    let Some((store, reopen, _guard)) = ($open) else { return };
                    super::cases::$case(store, reopen).await;
                }
            )*
        }
    };
}

// A memory store does not outlive its process, so it has no restart case.
suite!(@cases memory, {
    let store = MemoryStore::new();
    let same = store.clone();
    let reopen: Reopen<MemoryStore> = Box::new(move || {
        let same = same.clone();
        Box::pin(async move { same })
    });
    Some((store, reopen, ()))
},
    stores_add_read_and_prune_buckets,
    buckets_are_exact_by_hour_and_outcome,
    each_request_counts_once_and_unknown_keys_not_at_all,
    retention_drops_old_buckets,
    the_router_serves_usage_with_its_authority,
);

#[cfg(feature = "sqlite")]
suite!(sqlite, {
    let db = support::stores::TempDb::new().await;
    let url = support::stores::url(&db.path);
    let reopen: Reopen<tower_api_key::store::sql::SqliteStore> = Box::new(move || {
        let url = url.clone();
        Box::pin(async move {
            tower_api_key::store::sql::SqliteStore::connect(&url)
                .await
                .unwrap()
        })
    });
    Some((db.store.clone(), reopen, db))
});

#[cfg(feature = "postgres")]
suite!(postgres, {
    match support::stores::TestSchema::new().await {
        None => None,
        Some(db) => {
            let db = std::sync::Arc::new(db);
            let again = std::sync::Arc::clone(&db);
            let reopen: Reopen<tower_api_key::store::sql::PostgresStore> = Box::new(move || {
                let again = std::sync::Arc::clone(&again);
                Box::pin(async move { again.connect().await })
            });
            Some((db.store.clone(), reopen, db))
        }
    }
});

/// A flush the store refuses loses nothing: the counts stay pending and the next
/// flush writes them, once.
#[tokio::test]
async fn a_failed_flush_keeps_the_counts_for_the_next() {
    let clock = ManualClock::new(START);
    let store = support::ProbeStore::new();
    let (auth, app) = front_door(store.clone(), &clock);
    let (id, key) = mint(&auth, "acme").await;
    assert_eq!(call(&app, "/read", &key).await, StatusCode::OK);
    store.set_failing(true);
    assert!(auth.flush().await.is_err());
    assert_eq!(auth.usage().unwrap().pending(), 1);
    store.set_failing(false);
    auth.flush().await.unwrap();
    auth.flush().await.unwrap();
    assert_eq!(auth.usage().unwrap().pending(), 0);
    assert_eq!(
        buckets(&store, &id).await,
        vec![(datetime!(2026-03-10 10:00 UTC), counts(1, 0, 0, 0))]
    );
}
