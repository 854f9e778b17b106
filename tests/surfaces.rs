//! Several surfaces on one front door: each with its own key sources, responder and key
//! formats, all over one cache, manager, unknown-key budget and rate limit.

use axum::body::Body;
use axum::handler::Handler;
use axum::routing::{any, get};
use axum::Router;
use http::{Request, StatusCode};
use tower::ServiceExt;
use tower_api_key::clock::ManualClock;
use tower_api_key::prelude::*;
use tower_api_key::presets;

fn scopes() -> ScopeModel {
    ScopeModel::builder()
        .resource("posts", ["read"])
        .build()
        .unwrap()
}

async fn list() -> &'static str {
    "posts"
}

/// How a request carries its key.
#[derive(Clone, Copy)]
enum Via {
    Bearer,
    Body,
}

async fn call(app: &Router, path: &str, via: Via, key: &str) -> (StatusCode, String) {
    let request = match via {
        Via::Bearer => Request::get(path)
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty()),
        Via::Body => Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(
                serde_json::json!({ "api_key": key }).to_string(),
            )),
    };
    let response = app.clone().oneshot(request.unwrap()).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn mint(manager: &KeyManager<MemoryStore>, environment: Option<&str>) -> CreatedKey {
    let mut new = NewKey::new("k", Owner::organization("acme")).with_scopes(["posts:read"]);
    if let Some(environment) = environment {
        new = new.with_environment(environment);
    }
    manager.create(new, Actor::System("test")).await.unwrap()
}

/// The demo's shape: bearer keys in the envelope on `/v1`, the same keys in a JSON body
/// with ProductBridge's generic 401 on `/bridge`.
fn two_surfaces(
    clock: &ManualClock,
) -> (
    ApiKeyAuth<MemoryStore, RateLimitLayer<MemoryLimiter>>,
    Router,
) {
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .clock(clock.clone())
        .format(KeyFormat::new("pb").unwrap())
        .scopes(scopes())
        .sources(KeySources::bearer())
        .surface("bridge", |surface| {
            surface
                .sources(KeySources::json_body())
                .responder(presets::product_bridge::error_style())
        })
        .rate_limit("10/min".parse().unwrap())
        .build()
        .unwrap();
    let bridge = auth.surface("bridge").unwrap();
    // Any method, so that a key sent the other surface's way reaches the guard.
    let app = Router::new()
        .route(
            "/v1/posts",
            any(list.layer(auth.guard("posts:read").unwrap())),
        )
        .route(
            "/bridge/posts",
            any(list.layer(bridge.guard("posts:read").unwrap())),
        );
    (auth, app)
}

#[tokio::test]
async fn each_surface_reads_its_own_sources_and_answers_in_its_own_style() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let (auth, app) = two_surfaces(&clock);
    let key = mint(auth.manager(), None).await;
    let key = key.key.expose_secret();

    assert_eq!(
        call(&app, "/v1/posts", Via::Bearer, key).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "/bridge/posts", Via::Body, key).await.0,
        StatusCode::OK
    );

    // The key where the other surface carries it is no key at all here.
    let (status, body) = call(&app, "/v1/posts", Via::Body, key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("\"error\""), "the envelope: {body}");
    let (status, body) = call(&app, "/bridge/posts", Via::Bearer, key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        !body.contains("missing"),
        "ProductBridge's generic 401: {body}"
    );
    let unknown = "pb_0000000000000000000000000000000000000000";
    let (status, generic) = call(&app, "/bridge/posts", Via::Body, unknown).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, generic, "every bridge refusal has one body");
}

/// `respond` renders a key manager's error through the surface it is called on.
#[tokio::test]
async fn key_management_errors_are_answered_in_the_surfaces_style() {
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(KeyFormat::new("pb").unwrap())
        .scopes(scopes())
        .surface("text", |surface| {
            surface.respond_with(|refusal| (refusal.status(), format!("text: {}", refusal.code())))
        })
        .build()
        .unwrap();
    let body = |response: axum::response::Response| async move {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    };
    let error = ManageError::NotFound;
    let text = auth.surface("text").unwrap().respond(&error);
    assert_eq!(text.status(), StatusCode::NOT_FOUND);
    assert_eq!(body(text).await, "text: not_found");
    let enveloped = body(auth.respond(&error)).await;
    assert!(enveloped.contains("\"error\""), "{enveloped}");
}

#[tokio::test]
async fn a_revocation_is_seen_on_every_surface_by_the_next_request() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let (auth, app) = two_surfaces(&clock);
    let created = mint(auth.manager(), None).await;
    let key = created.key.expose_secret();
    assert_eq!(
        call(&app, "/v1/posts", Via::Bearer, key).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "/bridge/posts", Via::Body, key).await.0,
        StatusCode::OK
    );

    // Revoked through the bridge surface's manager: the same manager and cache.
    auth.surface("bridge")
        .unwrap()
        .manager()
        .revoke(
            &created.record.owner,
            &created.record.id,
            Actor::System("test"),
        )
        .await
        .unwrap();
    assert_eq!(
        call(&app, "/v1/posts", Via::Bearer, key).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, "/bridge/posts", Via::Body, key).await.0,
        StatusCode::UNAUTHORIZED
    );
}

/// A key cannot double its rate limit by alternating surfaces.
#[tokio::test]
async fn surfaces_share_one_rate_limit() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let (auth, app) = two_surfaces(&clock);
    let created = mint(auth.manager(), None).await;
    let key = created.key.expose_secret();
    let mut admitted = 0;
    for n in 0..30 {
        let (path, via) = if n % 2 == 0 {
            ("/v1/posts", Via::Bearer)
        } else {
            ("/bridge/posts", Via::Body)
        };
        let (status, _) = call(&app, path, via, key).await;
        match status {
            StatusCode::OK => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::UNAUTHORIZED => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(admitted, 10, "10/min across both surfaces");
}

/// PgBeam's two kinds of key on one store: `pbo_` organization keys on one surface,
/// `pbu_` user keys on another. Each surface's manager mints its own format, and a key
/// of one format is unknown on the other surface.
#[tokio::test]
async fn two_key_formats_on_one_store_one_per_surface() {
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(KeyFormat::new("pbo").unwrap())
        .scopes(scopes())
        .surface("users", |surface| {
            surface.format(KeyFormat::new("pbu").unwrap())
        })
        .build()
        .unwrap();
    let users = auth.surface("users").unwrap();
    let app = Router::new()
        .route(
            "/org/posts",
            get(list.layer(auth.guard("posts:read").unwrap())),
        )
        .route(
            "/user/posts",
            get(list.layer(users.guard("posts:read").unwrap())),
        );
    let org_key = mint(auth.manager(), None).await;
    let user_key = mint(users.manager(), None).await;
    let org_key = org_key.key.expose_secret();
    let user_key = user_key.key.expose_secret();
    assert!(org_key.starts_with("pbo_"), "{org_key}");
    assert!(user_key.starts_with("pbu_"), "{user_key}");

    assert_eq!(
        call(&app, "/org/posts", Via::Bearer, org_key).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "/user/posts", Via::Bearer, user_key).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "/org/posts", Via::Bearer, user_key).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, "/user/posts", Via::Bearer, org_key).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn surface_names_are_checked_when_built() {
    let builder = || {
        ApiKeyAuth::builder(MemoryStore::new())
            .format(KeyFormat::new("pb").unwrap())
            .scopes(scopes())
    };
    let auth = builder()
        .surface("bridge", |surface| surface.sources(KeySources::json_body()))
        .build()
        .unwrap();
    let unknown = auth.surface("brigde").unwrap_err();
    assert!(unknown.to_string().contains("brigde"), "{unknown}");

    let twice = builder()
        .surface("bridge", |surface| surface)
        .surface("bridge", |surface| surface)
        .build()
        .unwrap_err();
    assert!(twice.to_string().contains("distinct"), "{twice}");
    assert!(builder().surface("", |surface| surface).build().is_err());

    // A surface's own mistakes are refused when built, like the builder's.
    let bad_realm = builder()
        .surface("bridge", |surface| {
            surface.configure(|layer| layer.with_realm("a \"quoted\" realm"))
        })
        .build()
        .unwrap_err();
    assert!(bad_realm.to_string().contains("realm"), "{bad_realm}");
}

/// Rate limits decided when the server starts: `None` admits every request uncharged,
/// `Some` limits as `rate_limits(limits)` would.
#[tokio::test]
async fn rate_limits_can_be_switched_off_when_the_server_starts() {
    for limits in [None, Some(Limits::new("3/min".parse().unwrap()))] {
        let on = limits.is_some();
        let auth = ApiKeyAuth::builder(MemoryStore::new())
            .format(KeyFormat::new("pb").unwrap())
            .scopes(scopes())
            .rate_limits(limits)
            .build()
            .unwrap();
        let app = Router::new().route("/posts", get(list.layer(auth.guard("posts:read").unwrap())));
        let created = mint(auth.manager(), None).await;
        let mut admitted = 0;
        for _ in 0..10 {
            if call(&app, "/posts", Via::Bearer, created.key.expose_secret())
                .await
                .0
                == StatusCode::OK
            {
                admitted += 1;
            }
        }
        assert_eq!(admitted, if on { 3 } else { 10 });
    }
}

/// `flush` writes the buffered last-used times, so a shutdown loses none.
#[tokio::test]
async fn flush_writes_last_used_times() {
    let store = MemoryStore::new();
    let auth = ApiKeyAuth::builder(store.clone())
        .format(KeyFormat::new("pb").unwrap())
        .scopes(scopes())
        .last_used(std::time::Duration::from_secs(3600))
        .build()
        .unwrap();
    let app = Router::new().route("/posts", get(list.layer(auth.guard("posts:read").unwrap())));
    let created = mint(auth.manager(), None).await;
    assert_eq!(
        call(&app, "/posts", Via::Bearer, created.key.expose_secret())
            .await
            .0,
        StatusCode::OK
    );
    let id = &created.record.id;
    assert!(store.get(id).await.unwrap().unwrap().last_used_at.is_none());
    auth.flush().await.unwrap();
    assert!(store.get(id).await.unwrap().unwrap().last_used_at.is_some());
}

/// Guards of two surfaces stacked on one handler (a key in the header and in the
/// body): the same key is charged once per request; two different keys are each
/// charged, so a second key cannot ride on the first one's charge.
#[tokio::test]
async fn stacked_guards_of_two_surfaces_charge_each_key_once() {
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(KeyFormat::new("pb").unwrap())
        .scopes(scopes())
        .sources(KeySources::bearer())
        .surface("bridge", |surface| surface.sources(KeySources::json_body()))
        .rate_limit("3/min".parse().unwrap())
        .build()
        .unwrap();
    let bridge = auth.surface("bridge").unwrap();
    let both = list
        .layer(bridge.guard("posts:read").unwrap())
        .layer(auth.guard("posts:read").unwrap());
    let app = Router::new().route("/both", any(both)).route(
        "/bridge",
        any(list.layer(bridge.guard("posts:read").unwrap())),
    );
    let call_both = |header: String, body: String| {
        let app = app.clone();
        async move {
            let request = Request::post("/both")
                .header("authorization", format!("Bearer {header}"))
                .header("content-type", "application/json")
                .body(Body::from(
                    serde_json::json!({ "api_key": body }).to_string(),
                ))
                .unwrap();
            app.oneshot(request).await.unwrap().status()
        }
    };

    let one = mint(auth.manager(), None).await;
    let one = one.key.expose_secret().to_owned();
    let mut admitted = 0;
    for _ in 0..6 {
        if call_both(one.clone(), one.clone()).await == StatusCode::OK {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3, "one key, charged once per request");

    let a = mint(auth.manager(), None)
        .await
        .key
        .expose_secret()
        .to_owned();
    let b = mint(auth.manager(), None)
        .await
        .key
        .expose_secret()
        .to_owned();
    for _ in 0..3 {
        assert_eq!(call_both(a.clone(), b.clone()).await, StatusCode::OK);
    }
    // `b` was charged by the inner guard each time: nothing is left of its 3.
    assert_eq!(
        call(&app, "/bridge", Via::Body, &b).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}
