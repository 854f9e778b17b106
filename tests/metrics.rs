//! RejectionKind counters through the `metrics` facade (own binary: the recorder is global).

mod support;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::Request;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use support::{pb_format, record, ProbeStore};
use tower::ServiceExt;
use tower_api_key::clock::{Clock, ManualClock};
use tower_api_key::parts::{AuthenticateLayer, KeyVerifier};
use tower_api_key::rejection::REQUESTS_METRIC;
use tower_api_key::store::{CachedStore, ManagedKeyStore};

#[tokio::test]
async fn outcomes_are_counted_by_label() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

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
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(AuthenticateLayer::new(
            KeyVerifier::new(store, pb_format()).with_unknown_key_budget("1/min".parse().unwrap()),
        ));
    let key = minted.key.expose_secret().to_owned();
    let forged = || pb_format().generate(Some("live")).unwrap().key;
    let (forged1, forged2) = (forged(), forged());
    for auth in [
        Some(key.as_str()),
        Some(key.as_str()),
        Some("pb_live_x"),
        None,
        Some(forged1.expose_secret()),
        Some(forged2.expose_secret()),
    ] {
        let mut req = Request::get("/");
        if let Some(k) = auth {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        app.clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
    }

    let mut counts = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if key.key().name() != REQUESTS_METRIC {
            continue;
        }
        let outcome = key
            .key()
            .labels()
            .find(|l| l.key() == "outcome")
            .unwrap()
            .value()
            .to_owned();
        if let DebugValue::Counter(n) = value {
            counts.insert(outcome, n);
        }
    }
    let expected: std::collections::BTreeMap<String, u64> = [
        ("authenticated", 2),
        ("malformed", 1),
        ("missing", 1),
        ("unknown", 1),
        ("too_many_unknown_keys", 1),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .into();
    assert_eq!(counts, expected);
}
