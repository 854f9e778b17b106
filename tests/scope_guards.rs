//! Scope guards over real routers: per-route layers and typed extractors.

mod support;

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use support::{pb_format, record, ProbeStore};
use tower::ServiceExt;
use tower_api_key::clock::{Clock, ManualClock};
use tower_api_key::key::MintedKey;
use tower_api_key::parts::{AuthenticateLayer, KeyVerifier};
use tower_api_key::require_scopes::{RequireScopesLayer, Scoped};
use tower_api_key::store::{CachedStore, ManagedKeyStore};
use tower_api_key::{scope_guard, Principal, RejectionKind, ScopeModel};

scope_guard!(
    /// `observations:write`.
    ObservationsWrite = ["observations:write"]
);
scope_guard!(
    /// Not declared by the Performance Blocks model.
    Bogus = ["bogus:write"]
);

struct World {
    store: CachedStore<ProbeStore>,
    clock: ManualClock,
}

impl World {
    async fn new() -> Self {
        let clock = ManualClock::default();
        let store = CachedStore::builder(ProbeStore::new())
            .with_clock(clock.clone())
            .build()
            .unwrap();
        Self { store, clock }
    }

    async fn key(&self, scopes: &[&str]) -> MintedKey {
        let minted = pb_format().generate(Some("live")).unwrap();
        self.store
            .insert(&record(&minted, scopes, self.clock.now()))
            .await
            .unwrap();
        minted
    }

    fn layer(&self) -> AuthenticateLayer<ProbeStore> {
        AuthenticateLayer::new(KeyVerifier::new(self.store.clone(), pb_format()))
            .with_scope_model(tower_api_key::presets::performance_blocks::scope_model())
    }
}

fn router(model: &ScopeModel) -> Router {
    let guard = |expr: &str| RequireScopesLayer::new(model, expr).unwrap();
    Router::new()
        .route(
            "/v1/observations",
            post(|| async { "created" }).route_layer(guard("observations:write")),
        )
        .route(
            "/v1/observations/list",
            get(|| async { "listed" }).route_layer(guard("observations:read")),
        )
        .route(
            "/v1/either",
            get(|| async { "either" })
                .route_layer(guard("employees:write OR summaries:read AND search:read")),
        )
        .route(
            "/v1/session",
            get(|p: Principal| async move { p.name().to_owned() }),
        )
        .route(
            "/v1/typed",
            post(|Scoped(p, ..): Scoped<ObservationsWrite>| async move { p.key_id().to_string() }),
        )
        .route("/v1/bogus", get(|_: Scoped<Bogus>| async { "never" }))
}

struct Reply {
    status: StatusCode,
    challenge: Option<String>,
    body: String,
}

async fn send(app: &Router, method: &str, path: &str, key: Option<&str>) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let response = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    Reply {
        status,
        challenge,
        body,
    }
}

#[tokio::test]
async fn a_missing_scope_is_403_naming_it() {
    let world = World::new().await;
    let model = tower_api_key::presets::performance_blocks::scope_model();
    let app = router(&model).layer(world.layer());
    let reader = world.key(&["observations:read"]).await;

    let reply = send(
        &app,
        "POST",
        "/v1/observations",
        Some(reader.key.expose_secret()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.body,
        r#"{"error":{"code":"permission_denied","message":"Required scope: observations:write"}}"#
    );
    assert_eq!(
        reply.challenge.as_deref(),
        Some(r#"Bearer realm="api", error="insufficient_scope", scope="observations:write""#)
    );
    // The neighbouring route's guard is its own.
    let reply = send(
        &app,
        "GET",
        "/v1/observations/list",
        Some(reader.key.expose_secret()),
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "listed")
    );
    // No guard at all on /v1/session; every key may call it.
    let reply = send(&app, "GET", "/v1/session", Some(reader.key.expose_secret())).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn write_implies_read_through_the_guard() {
    let world = World::new().await;
    let model = tower_api_key::presets::performance_blocks::scope_model();
    let app = router(&model).layer(world.layer());
    let writer = world.key(&["observations:write"]).await;
    for (method, path) in [
        ("POST", "/v1/observations"),
        ("GET", "/v1/observations/list"),
    ] {
        let reply = send(&app, method, path, Some(writer.key.expose_secret())).await;
        assert_eq!(reply.status, StatusCode::OK, "{method} {path}");
    }
}

#[tokio::test]
async fn expressions_follow_precedence() {
    let world = World::new().await;
    let model = tower_api_key::presets::performance_blocks::scope_model();
    let app = router(&model).layer(world.layer());
    // employees:write OR (summaries:read AND search:read)
    let cases: [(&[&str], StatusCode); 5] = [
        (&["employees:write"], StatusCode::OK),
        (&["summaries:read", "search:read"], StatusCode::OK),
        (&["summaries:write", "search:read"], StatusCode::OK),
        (&["summaries:read"], StatusCode::FORBIDDEN),
        (&["search:read"], StatusCode::FORBIDDEN),
    ];
    for (scopes, expected) in cases {
        let key = world.key(scopes).await;
        let reply = send(&app, "GET", "/v1/either", Some(key.key.expose_secret())).await;
        assert_eq!(reply.status, expected, "{scopes:?}");
    }
    let key = world.key(&["search:read"]).await;
    let reply = send(&app, "GET", "/v1/either", Some(key.key.expose_secret())).await;
    assert_eq!(
        reply.challenge.as_deref(),
        Some(r#"Bearer realm="api", error="insufficient_scope", scope="employees:write""#)
    );
}

#[tokio::test]
async fn typed_guards_check_their_scope() {
    let world = World::new().await;
    let model = tower_api_key::presets::performance_blocks::scope_model();
    let app = router(&model).layer(world.layer());
    let writer = world.key(&["observations:write"]).await;
    let reader = world.key(&["observations:read"]).await;

    let ok = send(&app, "POST", "/v1/typed", Some(writer.key.expose_secret())).await;
    assert_eq!(
        (ok.status, ok.body.as_str()),
        (StatusCode::OK, writer.id.as_str())
    );
    let refused = send(&app, "POST", "/v1/typed", Some(reader.key.expose_secret())).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("Required scope: observations:write"));
    // A marker naming an undeclared scope fails closed.
    let bogus = send(&app, "GET", "/v1/bogus", Some(writer.key.expose_secret())).await;
    assert_eq!(bogus.status, StatusCode::INTERNAL_SERVER_ERROR);
    // …and says exactly that, in the layer's own style, not "not configured".
    assert!(
        bogus
            .body
            .contains("This route requires a scope that the API does not declare"),
        "{}",
        bogus.body
    );
}

#[tokio::test]
async fn guards_without_the_layer_fail_closed() {
    let world = World::new().await;
    let model = tower_api_key::presets::performance_blocks::scope_model();
    let writer = world.key(&["observations:write"]).await;
    let unprotected = router(&model);
    for (method, path) in [("POST", "/v1/observations"), ("POST", "/v1/typed")] {
        let reply = send(&unprotected, method, path, Some(writer.key.expose_secret())).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
    }
    // A layer without a scope model: route guards work, typed guards refuse with 500.
    let no_model = router(&model).layer(AuthenticateLayer::new(KeyVerifier::new(
        world.store.clone(),
        pb_format(),
    )));
    let reply = send(
        &no_model,
        "POST",
        "/v1/observations",
        Some(writer.key.expose_secret()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = send(
        &no_model,
        "POST",
        "/v1/typed",
        Some(writer.key.expose_secret()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn an_anonymous_request_on_an_optional_layer_meets_a_guard_with_401() {
    let world = World::new().await;
    let model = tower_api_key::presets::performance_blocks::scope_model();
    let app = router(&model).layer(world.layer().with_optional(true));
    let reply = send(&app, "POST", "/v1/observations", None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.challenge.as_deref(), Some(r#"Bearer realm="api""#));
}

#[test]
fn bad_requirements_are_refused_when_the_router_is_built() {
    let model = tower_api_key::presets::performance_blocks::scope_model();
    let err = RequireScopesLayer::new(&model, "nope:read").unwrap_err();
    assert!(err.message().contains("nope:read"), "{err}");
    let err = RequireScopesLayer::new(&model, "(employees:read OR search:read").unwrap_err();
    assert!(err.message().contains('('), "{err}");
    assert!(RequireScopesLayer::new(&model, "Employees:Read").is_err());
    assert!(RequireScopesLayer::all_of(&model, ["employees:read", "x y"]).is_err());
}

#[tokio::test]
async fn organization_isolation() {
    let world = World::new().await;
    let key = world.key(&["observations:write"]).await;
    let auth = KeyVerifier::new(world.store.clone(), pb_format());
    let principal = auth.authenticate(key.key.expose_secret()).await.unwrap();
    assert_eq!(principal.check_organization("acme"), Ok(()));
    assert_eq!(
        principal.check_organization("globex"),
        Err(RejectionKind::ForeignResource)
    );
    assert_eq!(
        RejectionKind::ForeignResource.status(),
        StatusCode::FORBIDDEN
    );
}
