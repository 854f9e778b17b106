//! The one entry point over real routers: one cache for the layer, the manager and the
//! guards; guards that check in order, on one method; configuration mistakes refused
//! when the router is built.

use std::time::Duration;

use axum::body::Body;
use axum::handler::Handler;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use tower::ServiceExt;
use tower_api_key::auth::ApiKeyAuth;
use tower_api_key::clock::ManualClock;
use tower_api_key::key::KeyFormat;
use tower_api_key::manage::{Actor, NewKey};
use tower_api_key::store::MemoryStore;
use tower_api_key::{Owner, ScopeModel};

fn scopes() -> ScopeModel {
    ScopeModel::builder()
        .resource("invoices", ["read", "write"])
        .action_implies("write", "read")
        .build()
        .unwrap()
}

fn format() -> KeyFormat {
    KeyFormat::new("inv")
        .unwrap()
        .with_environments(["live", "test"])
        .unwrap()
}

async fn list() -> &'static str {
    "list"
}

async fn create() -> (StatusCode, &'static str) {
    (StatusCode::CREATED, "created")
}

async fn call(app: &Router, method: &str, path: &str, key: Option<&str>) -> (StatusCode, String) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn key(auth: &ApiKeyAuth<MemoryStore, impl Clone>, scopes: &[&str]) -> String {
    let created = auth
        .manager()
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

#[tokio::test]
async fn a_revocation_is_seen_by_the_next_request_through_every_guard() {
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(format())
        .scopes(scopes())
        // A TTL far longer than the test: only the shared cache makes this work.
        .cache(|cache| cache.with_ttl(Duration::from_secs(3_600)))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/invoices",
            get(list.layer(auth.guard("invoices:read").unwrap()))
                .post(create.layer(auth.guard("invoices:write").unwrap())),
        )
        .route("/everything", get(list).layer(auth.layer()));
    let key = key(&auth, &["invoices:write"]).await;
    assert_eq!(
        call(&app, "GET", "/invoices", Some(&key)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "POST", "/invoices", Some(&key)).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        call(&app, "GET", "/everything", Some(&key)).await.0,
        StatusCode::OK
    );

    let id = auth
        .manager()
        .list(&Owner::organization("acme"), Actor::System("t"))
        .await
        .unwrap()[0]
        .id;
    auth.manager()
        .revoke(&Owner::organization("acme"), &id, Actor::System("t"))
        .await
        .unwrap();
    for (method, path) in [
        ("GET", "/invoices"),
        ("POST", "/invoices"),
        ("GET", "/everything"),
    ] {
        assert_eq!(
            call(&app, method, path, Some(&key)).await.0,
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn a_guard_guards_only_its_method_and_checks_scopes_before_spending_the_limit() {
    let clock = ManualClock::default();
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(format())
        .scopes(scopes())
        .clock(clock.clone())
        .rate_limit("2/min".parse().unwrap())
        .build()
        .unwrap();
    let app = Router::new().route(
        "/invoices",
        get(list).post(create.layer(auth.guard("invoices:write").unwrap())),
    );
    // GET carries no guard at all.
    assert_eq!(call(&app, "GET", "/invoices", None).await.0, StatusCode::OK);
    assert_eq!(
        call(&app, "POST", "/invoices", None).await.0,
        StatusCode::UNAUTHORIZED
    );

    let reader = key(&auth, &["invoices:read"]).await;
    for _ in 0..5 {
        let (status, body) = call(&app, "POST", "/invoices", Some(&reader)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("Required scope: invoices:write"), "{body}");
    }
    // The 403s spent nothing; the writer's own limit of 2 holds.
    let writer = key(&auth, &["invoices:write"]).await;
    for expected in [
        StatusCode::CREATED,
        StatusCode::CREATED,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        assert_eq!(
            call(&app, "POST", "/invoices", Some(&writer)).await.0,
            expected
        );
    }
}

#[tokio::test]
async fn refusals_from_every_guard_use_the_configured_responder() {
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(format())
        .scopes(scopes())
        .responder(tower_api_key::presets::promptfloe::error_style())
        .build()
        .unwrap();
    let app = Router::new().route(
        "/invoices",
        get(list.layer(auth.guard("invoices:write").unwrap())),
    );
    let (status, body) = call(&app, "GET", "/invoices", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("invalid_key"), "{body}");
    let reader = key(&auth, &["invoices:read"]).await;
    let (status, body) = call(&app, "GET", "/invoices", Some(&reader)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("missing_scope"), "{body}");
}

/// An application's own error type, reused for refusals.
struct AppError {
    status: StatusCode,
    code: &'static str,
    detail: String,
}

impl axum::response::IntoResponse for AppError {
    fn into_response(self) -> axum::response::Response {
        let body = serde_json::json!({"problem": self.code, "detail": self.detail});
        (self.status, axum::Json(body)).into_response()
    }
}

#[tokio::test]
async fn a_custom_error_body_is_a_closure_returning_the_apps_own_error() {
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(format())
        .scopes(scopes())
        .rate_limit("1/min".parse().unwrap())
        .respond_with(|rejection| AppError {
            status: rejection.status(),
            code: rejection.code(),
            detail: rejection.message().into_owned(),
        })
        .build()
        .unwrap();
    let app = Router::new().route(
        "/invoices",
        get(list.layer(auth.guard("invoices:read").unwrap())),
    );
    let (status, body) = call(&app, "GET", "/invoices", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        r#"{"detail":"API key is missing or invalid","problem":"authentication_required"}"#
    );
    let key = key(&auth, &["invoices:read"]).await;
    assert_eq!(
        call(&app, "GET", "/invoices", Some(&key)).await.0,
        StatusCode::OK
    );
    let request = Request::get("/invoices")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let limited = app.clone().oneshot(request).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    // The layer still adds Retry-After, computed as the crate does.
    assert_eq!(limited.headers()["retry-after"], "60");
    let body = axum::body::to_bytes(limited.into_body(), 1 << 16)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["problem"], "rate_limited");
    assert_eq!(
        json["detail"],
        "Rate limit exceeded; retry after 60 seconds"
    );
}

#[tokio::test]
async fn the_unknown_key_budget_is_set_through_the_builder() {
    for (budget, third) in [
        (
            Some("2/min".parse().unwrap()),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        (None, StatusCode::UNAUTHORIZED),
    ] {
        let auth = ApiKeyAuth::builder(MemoryStore::new())
            .format(format())
            .scopes(scopes())
            .unknown_key_budget(budget)
            .build()
            .unwrap();
        let app = Router::new().route(
            "/invoices",
            get(list.layer(auth.guard("invoices:read").unwrap())),
        );
        // Well-formed keys that were never stored: each costs a lookup.
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let forged = format().generate(Some("live")).unwrap();
            let key = forged.key.expose_secret().to_owned();
            statuses.push(call(&app, "GET", "/invoices", Some(&key)).await.0);
        }
        assert_eq!(
            statuses,
            [StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED, third]
        );
    }
}

#[test]
fn mistakes_are_refused_when_the_router_is_built() {
    let no_format = ApiKeyAuth::builder(MemoryStore::new())
        .scopes(scopes())
        .build();
    assert!(no_format.unwrap_err().message().contains(".format("));
    let no_scopes = ApiKeyAuth::builder(MemoryStore::new())
        .format(format())
        .build();
    assert!(no_scopes.unwrap_err().message().contains(".scopes("));

    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(format())
        .scopes(scopes())
        .build()
        .unwrap();
    for bad in ["invoices:delete", "invoices:read AND", ""] {
        assert!(auth.guard(bad).is_err(), "{bad:?} was accepted");
    }
    let realm = ApiKeyAuth::builder(MemoryStore::new())
        .format(format())
        .scopes(scopes())
        .configure(|layer| layer.with_realm("bad\"realm"))
        .build();
    assert!(realm.is_err());
}

/// Two front doors over clones of one store would keep two caches (a key revoked
/// through one admitted by the other until its TTL) and two sets of limits: the second
/// is refused when built, naming the fix, and a store of its own (or, for the SQL
/// stores, another table prefix) is another instance.
#[tokio::test]
async fn a_second_front_door_over_a_clone_of_one_store_is_refused() {
    let build = |store: MemoryStore| {
        ApiKeyAuth::builder(store)
            .format(format())
            .scopes(scopes())
            .build()
    };
    let store = MemoryStore::new();
    let first = build(store.clone()).unwrap();
    let error = build(store.clone()).unwrap_err().to_string();
    assert!(
        error.contains("build one ApiKeyAuth and clone it"),
        "{error}"
    );
    // Clones of the first share everything: no second door.
    let clone = first.clone();
    assert!(build(MemoryStore::new()).is_ok(), "another store");
    drop(first);
    assert!(
        build(store.clone()).is_err(),
        "a clone still holds the door"
    );
    // A layer still serving a router holds it too, its front door dropped or not.
    let layer = clone.layer();
    drop(clone);
    assert!(
        build(store.clone()).is_err(),
        "the layer still holds the door"
    );
    drop(layer);
    assert!(build(store).is_ok(), "released with the last clone");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_second_front_door_over_one_sql_store_is_refused_per_table_prefix() {
    use tower_api_key::store::sql::SqliteStore;
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let build = |store: SqliteStore| {
        ApiKeyAuth::builder(store)
            .format(format())
            .scopes(scopes())
            .build()
    };
    let _first = build(store.clone()).unwrap();
    assert!(build(store.clone()).is_err());
    assert!(build(store.with_table_prefix("other_").unwrap()).is_ok());
}

/// `RateLimit` headers on admitted responses, through the builder; none unless asked.
#[tokio::test]
async fn rate_limit_headers_on_success_are_one_builder_call() {
    for headers in [false, true] {
        let builder = ApiKeyAuth::builder(MemoryStore::new())
            .format(format())
            .scopes(scopes())
            .rate_limit("10/min".parse().unwrap());
        let builder = if headers {
            builder.rate_limit_headers()
        } else {
            builder
        };
        let auth = builder.build().unwrap();
        let app = Router::new().route(
            "/invoices",
            get(list.layer(auth.guard("invoices:read").unwrap())),
        );
        let reader = key(&auth, &["invoices:read"]).await;
        let response = app
            .clone()
            .oneshot(
                Request::get("/invoices")
                    .header("authorization", format!("Bearer {reader}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers().contains_key("ratelimit"), headers);
        assert_eq!(response.headers().contains_key("ratelimit-policy"), headers);
    }
}
