//! Key lifecycle through real routers: last-used tracking and the audit log.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use support::{pb_format, record, ProbeStore};
use tower::ServiceExt;
use tower_api_key::audit::{AuditAction, Auditor, MemorySink};
use tower_api_key::clock::{Clock, ManualClock};
use tower_api_key::manage::LastUsed;
use tower_api_key::store::{CachedStore, KeyStore};
use tower_api_key::{ApiKeyLayer, Authenticator, Owner};

fn app(layer: ApiKeyLayer<ProbeStore>) -> Router {
    Router::new()
        .route(
            "/things/{id}",
            get(|| async { "read" })
                .post(|| async { (StatusCode::CREATED, "made") })
                .delete(|| async { StatusCode::NOT_FOUND }),
        )
        .route_layer(layer)
}

async fn call(app: &Router, method: &str, key: &str) -> StatusCode {
    let req = Request::builder()
        .method(method)
        .uri("/things/42")
        .header("authorization", format!("Bearer {key}"))
        .header("x-request-id", "rid-1")
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap().status()
}

#[tokio::test(start_paused = true)]
async fn last_used_arrives_after_a_flush_without_a_write_per_request() {
    let clock = ManualClock::default();
    let probe = ProbeStore::new();
    let store = CachedStore::builder(probe.clone())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let minted = pb_format().generate(Some("live")).unwrap();
    store
        .insert(&record(&minted, &[], clock.now()))
        .await
        .unwrap();
    let last_used = LastUsed::spawn(store.clone(), Duration::from_secs(5));
    let layer = ApiKeyLayer::new(Authenticator::new(store.clone(), pb_format()))
        .with_last_used(last_used.clone());
    let app = app(layer);
    let writes_before = probe.writes();

    for _ in 0..100 {
        clock.advance(Duration::from_millis(10));
        assert_eq!(
            call(&app, "GET", minted.key.expose_secret()).await,
            StatusCode::OK
        );
    }
    assert_eq!(
        probe.writes(),
        writes_before,
        "a request wrote to the store"
    );
    assert_eq!(
        probe
            .inner
            .get(&minted.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        None
    );
    assert_eq!(last_used.pending(), 1);

    // The flush task runs once per interval: one batched write for all 100 requests.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(probe.writes(), writes_before + 1);
    let stored = probe.inner.get(&minted.id).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(clock.now()));
    assert_eq!(last_used.pending(), 0);
}

#[tokio::test]
async fn last_used_survives_a_failed_flush() {
    let clock = ManualClock::default();
    let probe = ProbeStore::new();
    let minted = pb_format().generate(Some("live")).unwrap();
    probe
        .insert(&record(&minted, &[], clock.now()))
        .await
        .unwrap();
    let last_used = LastUsed::spawn(probe.clone(), Duration::from_secs(3600));
    last_used.touch(minted.id, clock.now());
    probe.set_failing(true);
    assert!(last_used.flush().await.is_err());
    assert_eq!(last_used.pending(), 1);
    probe.set_failing(false);
    last_used.flush().await.unwrap();
    assert_eq!(
        probe
            .inner
            .get(&minted.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(clock.now())
    );
}

#[tokio::test]
async fn writes_are_audited_and_reads_are_not() {
    let clock = ManualClock::default();
    let store = CachedStore::builder(ProbeStore::new())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let minted = pb_format().generate(Some("live")).unwrap();
    store
        .insert(&record(&minted, &[], clock.now()))
        .await
        .unwrap();
    let sink = MemorySink::new();
    let auditor = Auditor::spawn(sink.clone(), 64);
    let layer =
        ApiKeyLayer::new(Authenticator::new(store, pb_format())).with_auditor(auditor.clone());
    let app = app(layer);
    let key = minted.key.expose_secret();

    assert_eq!(call(&app, "GET", key).await, StatusCode::OK);
    assert_eq!(call(&app, "HEAD", key).await, StatusCode::OK);
    assert_eq!(call(&app, "POST", key).await, StatusCode::CREATED);
    assert_eq!(call(&app, "DELETE", key).await, StatusCode::NOT_FOUND);
    // A refused write never reached a handler: not audited as a request.
    assert_eq!(
        call(&app, "POST", "pb_live_bogus").await,
        StatusCode::UNAUTHORIZED
    );
    auditor.flush().await;

    let entries = sink.query(&Owner::organization("acme"), Some(&minted.id));
    let seen: Vec<(AuditAction, &str, u16)> = entries
        .iter()
        .map(|e| (e.action, e.method.as_deref().unwrap(), e.status.unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            (AuditAction::Request, "DELETE", 404),
            (AuditAction::Request, "POST", 201)
        ],
        "newest first, reads excluded"
    );
    assert_eq!(entries[0].path.as_deref(), Some("/things/42"));
    assert_eq!(entries[0].route.as_deref(), Some("/things/{id}"));
    assert_eq!(entries[0].request_id.as_deref(), Some("rid-1"));
    assert_eq!(sink.entries().len(), 2);
}
