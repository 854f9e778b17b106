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
use tower_api_key::parts::{AuthenticateLayer, KeyVerifier};
use tower_api_key::store::LastUsed;
use tower_api_key::store::{CachedStore, KeyStore, ManagedKeyStore};
use tower_api_key::Owner;

fn app(layer: AuthenticateLayer<ProbeStore>) -> Router {
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
    let layer = AuthenticateLayer::new(KeyVerifier::new(store.clone(), pb_format()))
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
        AuthenticateLayer::new(KeyVerifier::new(store, pb_format())).with_auditor(auditor.clone());
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
    // The entry says which key, by its prefix and environment, made the request.
    assert_eq!(entries[0].prefix.as_deref(), Some(minted.prefix.as_str()));
    assert_eq!(entries[0].environment, minted.environment);
    assert_eq!(
        entries[0].actor,
        tower_api_key::audit::AuditActor::Key(minted.id)
    );
    assert_eq!(sink.entries().len(), 2);
}

// ---- KeyManager ----

mod manager {
    use std::time::Duration;

    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use http::{Request, StatusCode};
    use tower::ServiceExt;
    use tower_api_key::audit::{AuditAction, AuditQuery};
    use tower_api_key::clock::{Clock, ManualClock};
    use tower_api_key::manage::{Actor, Expiry, KeyManager, ManageError, NewKey};

    use tower_api_key::parts::{AuthenticateLayer, KeyVerifier};
    use tower_api_key::store::{CachedStore, MemoryStore};
    use tower_api_key::Owner;

    use crate::support::pb_format;

    struct World {
        clock: ManualClock,
        memory: MemoryStore,
        manager: KeyManager<MemoryStore>,
        app: Router,
    }

    fn acme() -> Owner {
        Owner::organization("acme")
    }

    async fn world() -> World {
        let clock = ManualClock::default();
        let memory = MemoryStore::new();
        let store = CachedStore::builder(memory.clone())
            .with_clock(clock.clone())
            .build()
            .unwrap();
        let manager = KeyManager::new(
            store.clone(),
            pb_format(),
            tower_api_key::presets::performance_blocks::scope_model(),
        );
        let app = Router::new()
            .route("/v1/session", get(|| async { "ok" }))
            .layer(
                AuthenticateLayer::new(KeyVerifier::new(store, pb_format()))
                    .with_responder(tower_api_key::presets::promptfloe::error_style()),
            );
        World {
            clock,
            memory,
            manager,
            app,
        }
    }

    async fn call(app: &Router, key: &str) -> (StatusCode, Option<String>, String) {
        let req = Request::get("/v1/session")
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let sunset = response
            .headers()
            .get("sunset")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, sunset, String::from_utf8(body.to_vec()).unwrap())
    }

    fn new_key(name: &str, scopes: &[&str]) -> NewKey {
        NewKey::new(name, acme())
            .with_environment("live")
            .with_scopes(scopes.iter().copied())
    }

    #[tokio::test]
    async fn the_full_key_appears_only_in_create() {
        let w = world().await;
        let created = w
            .manager
            .create(new_key("ci", &["employees:read"]), Actor::System("admin"))
            .await
            .unwrap();
        let secret = created.key.expose_secret().to_owned();
        let secret_part = &secret[created.record.prefix.len()..];
        let listed = w
            .manager
            .list(&acme(), Actor::System("admin"))
            .await
            .unwrap();
        let audit = w
            .manager
            .audit_log(AuditQuery::new(acme()), Actor::System("admin"))
            .await
            .unwrap();
        let shown = [
            serde_json::to_string(&listed).unwrap(),
            format!("{listed:?}"),
            format!("{created:?}"),
            serde_json::to_string(&audit).unwrap(),
            format!("{audit:?}"),
            format!(
                "{:?}",
                w.manager
                    .get(&acme(), &created.record.id, Actor::System("admin"))
                    .await
                    .unwrap()
            ),
        ];
        for text in shown {
            assert!(!text.contains(secret_part), "secret leaked: {text}");
        }
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].created_by.as_deref(), Some("admin"));
        assert_eq!(call(&w.app, &secret).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn rotation_with_grace_overlaps_then_expires() {
        let w = world().await;
        let old = w
            .manager
            .create(
                new_key("prod", &["observations:write"]),
                Actor::System("admin"),
            )
            .await
            .unwrap();
        let new = w
            .manager
            .rotate(
                &acme(),
                &old.record.id,
                Duration::from_secs(24 * 3600),
                Actor::System("admin"),
            )
            .await
            .unwrap();
        assert_eq!(new.record.name, "prod");
        assert_eq!(new.record.scopes, ["observations:write"]);
        assert_eq!(new.record.environment, old.record.environment);
        assert_eq!(new.record.family, old.record.family);
        assert_ne!(new.record.id, old.record.id);

        let (status, sunset, _) = call(&w.app, old.key.expose_secret()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(sunset.as_deref(), Some("Fri, 02 Jan 2026 00:00:00 GMT"));
        let (status, sunset, _) = call(&w.app, new.key.expose_secret()).await;
        assert_eq!((status, sunset), (StatusCode::OK, None));

        w.clock.advance(Duration::from_secs(24 * 3600 - 1));
        assert_eq!(
            call(&w.app, old.key.expose_secret()).await.0,
            StatusCode::OK
        );
        w.clock.advance(Duration::from_secs(1));
        let (status, _, body) = call(&w.app, old.key.expose_secret()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("expired_key"), "{body}");
        assert_eq!(
            call(&w.app, new.key.expose_secret()).await.0,
            StatusCode::OK
        );

        let rotated: Vec<_> = w
            .manager
            .audit_log(AuditQuery::new(acme()), Actor::System("admin"))
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == AuditAction::KeyRotated)
            .collect();
        assert_eq!(rotated.len(), 1);
        assert_eq!(rotated[0].api_key_id, old.record.id);
        assert_eq!(rotated[0].successor_key_id, Some(new.record.id));
    }

    #[tokio::test]
    async fn bad_input_is_refused_and_changes_nothing() {
        let w = world().await;
        let existing = w
            .manager
            .create(new_key("ok", &[]), Actor::System("admin"))
            .await
            .unwrap();
        let before = w.memory.len();
        let long = "x".repeat(101);
        let past = w.clock.now() - time::Duration::seconds(1);
        let cases = [
            (new_key("", &[]), "InvalidName"),
            (new_key("   ", &[]), "InvalidName"),
            (new_key(&long, &[]), "InvalidName"),
            (new_key("tab\there", &[]), "InvalidName"),
            (new_key("k", &["employees:delete"]), "UnknownScope"),
            (
                new_key("k", &[]).with_expiry(Expiry::At(past)),
                "ExpiryInPast",
            ),
            (
                NewKey::new("k", acme()).with_environment("prod"),
                "InvalidEnvironment",
            ),
        ];
        for (request, expected) in cases {
            let err = w
                .manager
                .create(request, Actor::System("admin"))
                .await
                .unwrap_err();
            assert!(format!("{err:?}").starts_with(expected), "{err:?}");
        }
        assert_eq!(w.memory.len(), before);

        let globex = Owner::organization("globex");
        let id = existing.record.id;
        assert!(matches!(
            w.manager.revoke(&globex, &id, Actor::System("x")).await,
            Err(ManageError::NotFound)
        ));
        assert!(matches!(
            w.manager.get(&globex, &id, Actor::System("x")).await,
            Err(ManageError::NotFound)
        ));
        assert!(matches!(
            w.manager
                .rotate(&globex, &id, Duration::ZERO, Actor::System("x"))
                .await,
            Err(ManageError::NotFound)
        ));
        assert!(w
            .manager
            .get(&acme(), &id, Actor::System("x"))
            .await
            .unwrap()
            .revoked_at
            .is_none());

        w.manager
            .revoke(&acme(), &id, Actor::System("x"))
            .await
            .unwrap();
        assert!(matches!(
            w.manager
                .rotate(&acme(), &id, Duration::ZERO, Actor::System("x"))
                .await,
            Err(ManageError::Conflict)
        ));
        assert_eq!(
            w.memory.len(),
            before,
            "a refused rotation stores no new key"
        );
    }

    #[tokio::test]
    async fn expiry_presets_and_creation_audit() {
        let w = world().await;
        let now = w.clock.now();
        for (expiry, days) in [
            (Expiry::Days30, 30),
            (Expiry::Days90, 90),
            (Expiry::Days365, 365),
        ] {
            let created = w
                .manager
                .create(
                    new_key("exp", &[]).with_expiry(expiry),
                    Actor::System("admin"),
                )
                .await
                .unwrap();
            assert_eq!(
                created.record.expires_at,
                Some(now + time::Duration::days(days))
            );
        }
        let never = w
            .manager
            .create(new_key("forever", &[]), Actor::System("admin"))
            .await
            .unwrap();
        assert_eq!(never.record.expires_at, None);
        let created = w
            .manager
            .audit_log(
                AuditQuery::new(acme()).for_key(never.record.id),
                Actor::System("admin"),
            )
            .await
            .unwrap();
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].action, AuditAction::KeyCreated);
        assert_eq!(
            created[0].actor,
            tower_api_key::audit::AuditActor::System("admin".into())
        );
    }

    #[tokio::test]
    async fn ensure_key_makes_one_usable_key_per_name() {
        let w = world().await;
        let admin = || new_key("admin", &["employees:write"]);
        let system = Actor::System("bootstrap");
        let first = w.manager.ensure_key(admin(), system).await.unwrap();
        let first = first.expect("the first call creates the key");
        assert!(w
            .manager
            .ensure_key(admin(), system)
            .await
            .unwrap()
            .is_none());
        assert_eq!(w.memory.len(), 1);
        // Once it is revoked, the next call makes a new one.
        w.manager
            .revoke(&acme(), &first.record.id, system)
            .await
            .unwrap();
        let second = w.manager.ensure_key(admin(), system).await.unwrap();
        assert!(second.is_some());
        assert_eq!(w.memory.len(), 2);
        // Another name is another key.
        assert!(w
            .manager
            .ensure_key(new_key("ci", &[]), system)
            .await
            .unwrap()
            .is_some());
    }
}
