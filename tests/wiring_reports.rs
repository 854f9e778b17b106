//! Mistakes that compile and would otherwise misbehave without a word are said: a router
//! served without `ConnectInfo` while the unknown-key budget is on (one WARN naming the
//! fix, every such request counted), and a store whose tables were never migrated (503,
//! and an ERROR naming `migrate()`, at most once per interval). Own binary: the recorder
//! and the subscriber are global.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use metrics_util::debugging::{DebugValue, Snapshotter};
use support::{pb_format, record, Captured, ProbeStore};
use tower::ServiceExt;
use tower_api_key::clock::{Clock, ManualClock};
use tower_api_key::parts::UNIDENTIFIED_CLIENTS_METRIC;
use tower_api_key::parts::{AuthenticateLayer, KeyVerifier};
use tower_api_key::store::{CachedStore, ManagedKeyStore};

fn counter(snapshotter: &Snapshotter, name: &str) -> u64 {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == name)
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => n,
            _ => 0,
        })
        .sum()
}

async fn status(app: &Router, key: &str) -> StatusCode {
    let req = Request::get("/")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(req).await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiring_mistakes_are_reported() {
    let (snapshotter, captured) = Captured::install();

    no_connect_info_is_said_once_and_counted(&snapshotter, &captured).await;
    #[cfg(feature = "sqlite")]
    a_store_never_migrated_is_an_error_naming_migrate(&captured).await;
    store_outages_are_logged_with_their_cause_at_most_once_per_interval(&captured).await;
}

/// Served without `into_make_service_with_connect_info`: every miss shares one budget.
async fn no_connect_info_is_said_once_and_counted(snapshotter: &Snapshotter, captured: &Captured) {
    let clock = ManualClock::default();
    let store = CachedStore::builder(ProbeStore::new())
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(AuthenticateLayer::new(KeyVerifier::new(store, pb_format())));
    let forged = || {
        pb_format()
            .generate(Some("live"))
            .unwrap()
            .key
            .expose_secret()
            .to_owned()
    };
    for _ in 0..3 {
        assert_eq!(status(&app, &forged()).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(counter(snapshotter, UNIDENTIFIED_CLIENTS_METRIC), 3);
    let log = captured.text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("into_make_service_with_connect_info"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");

    // Without a budget nothing is shared, so nothing is said or counted.
    let unbudgeted = CachedStore::builder(ProbeStore::new()).build().unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(AuthenticateLayer::new(
            KeyVerifier::new(unbudgeted, pb_format()).without_unknown_key_budget(),
        ));
    assert_eq!(status(&app, &forged()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(counter(snapshotter, UNIDENTIFIED_CLIENTS_METRIC), 0);
}

/// The first request after forgetting `migrate()`: 503 (our outage, never a 401), and
/// an ERROR that says what to do.
#[cfg(feature = "sqlite")]
async fn a_store_never_migrated_is_an_error_naming_migrate(captured: &Captured) {
    use tower_api_key::store::sql::SqliteStore;
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let cache = CachedStore::builder(store).build().unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(AuthenticateLayer::new(KeyVerifier::new(cache, pb_format())));
    let key = pb_format().generate(Some("live")).unwrap();
    assert_eq!(
        status(&app, key.key.expose_secret()).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let log = captured.text();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("run migrate() at start-up")),
        "{log}"
    );
    assert!(
        !log.contains(key.key.expose_secret()),
        "a key reached the log"
    );
}

/// A store that fails: WARN with the cause, once per ten seconds however many requests.
async fn store_outages_are_logged_with_their_cause_at_most_once_per_interval(captured: &Captured) {
    let clock = ManualClock::default();
    let probe = ProbeStore::new();
    let cache = CachedStore::builder(probe.clone())
        .with_clock(clock.clone())
        .with_stale_if_error(Duration::ZERO)
        .build()
        .unwrap();
    let minted = pb_format().generate(Some("live")).unwrap();
    probe
        .insert(&record(&minted, &[], clock.now()))
        .await
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(AuthenticateLayer::new(
            KeyVerifier::new(cache, pb_format()).without_unknown_key_budget(),
        ));
    probe.set_failing(true);
    let outage_lines = || {
        captured
            .text()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("database down"))
            .count()
    };
    let before = outage_lines();
    for _ in 0..20 {
        let status = status(&app, minted.key.expose_secret()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(outage_lines() - before, 1, "{}", captured.text());
    clock.advance(Duration::from_secs(11));
    assert_eq!(
        status(&app, minted.key.expose_secret()).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(outage_lines() - before, 2);
}
