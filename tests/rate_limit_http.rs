//! Rate limits and quotas over a real router: 429s, headers, order of checks, rotation.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use http::{HeaderMap, Request, StatusCode};
use support::{pb_format, ProbeStore};
use tower::ServiceExt;
use tower_api_key::audit::{Auditor, MemorySink};
use tower_api_key::clock::ManualClock;
use tower_api_key::manage::{Actor, KeyManager, NewKey};
use tower_api_key::parts::{AuthenticateLayer, KeyVerifier};
use tower_api_key::rate_limit::{Limits, QuotaPolicy, RateLimitLayer};
use tower_api_key::require_scopes::RequireScopesLayer;
use tower_api_key::store::CachedStore;
use tower_api_key::Owner;

struct World {
    clock: ManualClock,
    manager: KeyManager<ProbeStore>,
    app: Router,
    sink: MemorySink,
    auditor: Auditor,
}

fn world(limits: Limits) -> World {
    let clock = ManualClock::default();
    let store = CachedStore::builder(ProbeStore::new())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let model = tower_api_key::presets::performance_blocks::scope_model();
    let manager = KeyManager::new(store.clone(), pb_format(), model.clone());
    let limits = limits.with_clock(clock.clone());
    let rate = RateLimitLayer::new(limits).with_success_headers(true);
    let sink = MemorySink::new();
    let auditor = Auditor::spawn(sink.clone(), 64);
    let app = Router::new()
        .route(
            "/read",
            get(|| async { "ok" })
                .route_layer(rate.clone())
                .route_layer(RequireScopesLayer::new(&model, "employees:read").unwrap()),
        )
        .route(
            "/write",
            post(|| async { "ok" })
                .route_layer(rate.clone())
                .route_layer(RequireScopesLayer::new(&model, "employees:write").unwrap()),
        )
        .layer(
            AuthenticateLayer::new(KeyVerifier::new(store, pb_format()))
                .with_auditor(auditor.clone()),
        );
    World {
        clock,
        manager,
        app,
        sink,
        auditor,
    }
}

async fn key(w: &World, scopes: &[&str]) -> String {
    let created = w
        .manager
        .create(
            NewKey::new("k", Owner::organization("acme"))
                .with_environment("live")
                .with_scopes(scopes.iter().copied()),
            Actor::System("test"),
        )
        .await
        .unwrap();
    created.key.expose_secret().to_owned()
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    key: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let response = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn the_sixth_request_in_a_minute_gets_429_with_headers() {
    let w = world(Limits::new("5/min".parse().unwrap()));
    let k = key(&w, &["employees:read"]).await;
    for n in 0..5 {
        let (status, headers, _) = call(&w.app, "GET", "/read", Some(&k)).await;
        assert_eq!(status, StatusCode::OK, "request {n}");
        assert_eq!(
            header(&headers, "ratelimit-policy"),
            Some(r#""default";q=5;w=60"#)
        );
        assert!(header(&headers, "ratelimit")
            .unwrap()
            .starts_with(&format!("\"default\";r={};t=", 4 - n)));
    }
    let (status, headers, body) = call(&w.app, "GET", "/read", Some(&k)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(header(&headers, "retry-after"), Some("12"));
    assert_eq!(header(&headers, "ratelimit"), Some(r#""default";r=0;t=12"#));
    assert_eq!(
        header(&headers, "ratelimit-policy"),
        Some(r#""default";q=5;w=60"#)
    );
    assert_eq!(
        body,
        r#"{"error":{"code":"rate_limited","message":"Rate limit exceeded; retry after 12 seconds"}}"#
    );
    w.clock.advance(Duration::from_secs(12));
    assert_eq!(
        call(&w.app, "GET", "/read", Some(&k)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&w.app, "GET", "/read", Some(&k)).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn refusals_by_authentication_or_scope_spend_nothing() {
    let w = world(Limits::new("3/min".parse().unwrap()));
    let reader = key(&w, &["employees:read"]).await;
    for _ in 0..10 {
        assert_eq!(
            call(&w.app, "POST", "/write", Some(&reader)).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call(&w.app, "GET", "/read", None).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    for _ in 0..3 {
        assert_eq!(
            call(&w.app, "GET", "/read", Some(&reader)).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(
        call(&w.app, "GET", "/read", Some(&reader)).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_rotation_shares_the_bucket() {
    let w = world(Limits::new("4/min".parse().unwrap()));
    let created = w
        .manager
        .create(
            NewKey::new("k", Owner::organization("acme"))
                .with_environment("live")
                .with_scopes(["employees:read"]),
            Actor::System("test"),
        )
        .await
        .unwrap();
    let old = created.key.expose_secret().to_owned();
    for _ in 0..3 {
        assert_eq!(
            call(&w.app, "GET", "/read", Some(&old)).await.0,
            StatusCode::OK
        );
    }
    let rotated = w
        .manager
        .rotate(
            &Owner::organization("acme"),
            &created.record.id,
            Duration::from_secs(3600),
            Actor::System("test"),
        )
        .await
        .unwrap();
    let new = rotated.key.expose_secret();
    assert_eq!(
        call(&w.app, "GET", "/read", Some(new)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&w.app, "GET", "/read", Some(new)).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        call(&w.app, "GET", "/read", Some(&old)).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_spent_daily_quota_is_403_quota_exceeded_until_midnight() {
    let limits = Limits::new("100/s".parse().unwrap()).with_quota(QuotaPolicy::daily(3).unwrap());
    let w = world(limits);
    let k = key(&w, &["employees:read"]).await;
    let other = key(&w, &["employees:read"]).await;
    assert_eq!(
        call(&w.app, "GET", "/read", Some(&k)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&w.app, "GET", "/read", Some(&other)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&w.app, "GET", "/read", Some(&k)).await.0,
        StatusCode::OK
    );
    let (status, _, body) = call(&w.app, "GET", "/read", Some(&other)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the owner's quota is shared by its keys"
    );
    assert!(body.contains("quota_exceeded"), "{body}");
    w.clock.set(time::macros::datetime!(2026-01-02 0:00 UTC));
    assert_eq!(
        call(&w.app, "GET", "/read", Some(&k)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_limited_write_is_not_audited_as_a_request() {
    let w = world(Limits::new("1/min".parse().unwrap()));
    let k = key(&w, &["employees:write"]).await;
    assert_eq!(
        call(&w.app, "POST", "/write", Some(&k)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&w.app, "POST", "/write", Some(&k)).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    let reader = key(&w, &["employees:read"]).await;
    assert_eq!(
        call(&w.app, "POST", "/write", Some(&reader)).await.0,
        StatusCode::FORBIDDEN
    );
    w.auditor.flush().await;
    let statuses: Vec<Option<u16>> = w.sink.entries().iter().map(|e| e.status).collect();
    assert_eq!(statuses, [Some(200)]);
}

#[test]
fn a_cost_above_the_burst_is_refused_when_built() {
    let limits = Limits::new("5/min".parse().unwrap());
    let err = RateLimitLayer::new(limits.clone())
        .with_cost(6)
        .unwrap_err();
    assert!(err.message().contains('6'), "{err}");
    assert!(RateLimitLayer::new(limits.clone()).with_cost(5).is_ok());
    assert!(RateLimitLayer::new(limits)
        .with_quota_status(StatusCode::OK)
        .is_err());
}
