//! Logging: one event per outcome, with the key id and request id, never the secret.
//!
//! In its own test binary, with a global subscriber: tracing caches callsite interest
//! process-wide, so a thread-local subscriber can miss events while other tests run.

mod support;

use support::Captured;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::Request;
use support::{pb_format, record, ProbeStore};
use tower::ServiceExt;
use tower_api_key::clock::{Clock, ManualClock};
use tower_api_key::parts::{AuthenticateLayer, KeyVerifier};
use tower_api_key::store::{CachedStore, ManagedKeyStore};
use tower_api_key::Principal;

#[tokio::test(flavor = "current_thread")]
async fn each_outcome_is_logged_once_with_ids_and_never_the_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let clock = ManualClock::default();
    let store = CachedStore::builder(ProbeStore::new())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let live = pb_format().generate(Some("live")).unwrap();
    let revoked = pb_format().generate(Some("live")).unwrap();
    store
        .insert(&record(&live, &[], clock.now()))
        .await
        .unwrap();
    store
        .insert(&record(&revoked, &[], clock.now()))
        .await
        .unwrap();
    store.revoke(&revoked.id, clock.now()).await.unwrap();
    let app = Router::new()
        .route(
            "/whoami",
            get(|p: Principal| async move { p.key_id().to_string() }),
        )
        .layer(AuthenticateLayer::new(KeyVerifier::new(store, pb_format())));
    for (key, request_id) in [(&live, "r-ok"), (&revoked, "r-bad")] {
        let req = Request::get("/whoami")
            .header(
                "authorization",
                format!("Bearer {}", key.key.expose_secret()),
            )
            .header("x-request-id", request_id)
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(req).await.unwrap();
    }

    let logs = captured.text();
    assert!(!logs.contains(live.key.expose_secret()), "{logs}");
    assert!(!logs.contains(revoked.key.expose_secret()), "{logs}");
    let refused: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("request refused"))
        .collect();
    assert_eq!(refused.len(), 1, "{logs}");
    assert!(refused[0].contains("outcome=\"revoked\""), "{logs}");
    assert!(refused[0].contains(revoked.id.as_str()), "{logs}");
    assert!(refused[0].contains("r-bad"), "{logs}");
    let admitted: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("request authenticated"))
        .collect();
    assert_eq!(admitted.len(), 1, "{logs}");
    assert!(admitted[0].contains(live.id.as_str()), "{logs}");
    assert!(admitted[0].contains("r-ok"), "{logs}");

    // A guard with no authentication in front (a route added after `Router::layer`):
    // 500 on every request, and one log line naming the fix.
    let model = tower_api_key::presets::performance_blocks::scope_model();
    let guard =
        tower_api_key::require_scopes::RequireScopesLayer::new(&model, "employees:read").unwrap();
    let unguarded = Router::new().route("/late", get(|| async { "no" }).route_layer(guard));
    for _ in 0..3 {
        let req = Request::get("/late").body(Body::empty()).unwrap();
        let response = unguarded.clone().oneshot(req).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
    }
    let logs = captured.text();
    assert_eq!(
        logs.matches("without an AuthenticateLayer in front")
            .count(),
        1,
        "{logs}"
    );
    assert!(logs.contains("ApiKeyAuth::guard"), "{logs}");
}
