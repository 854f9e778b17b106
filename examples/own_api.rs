//! Protect your own API: an invoices service with its own scopes, keys in SQLite, a
//! rate limit, its own error body, and endpoints that create and revoke keys. The
//! README's "Protect your own API" walks through it.
//!
//! Run with:
//!
//! ```sh
//! cargo run --example own_api --features sqlite     # serves on 127.0.0.1:3000
//! cargo test --example own_api --features sqlite    # its four tests
//! ```
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;

use axum::extract::{Path, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tower_api_key::clock::{Clock, SystemClock};
use tower_api_key::key::KeyId;
use tower_api_key::prelude::*;

/// Authentication, key management and guards, as the handlers see them.
type Auth = ApiKeyAuth<SqliteStore, RateLimitLayer<MemoryLimiter>>;

/// The API's own scopes: `invoices:write` implies `invoices:read`.
fn scopes() -> Result<ScopeModel, ConfigError> {
    ScopeModel::builder()
        .resource("invoices", ["read", "write"])
        .resource("keys", ["write"])
        .action_implies("write", "read")
        .build()
}

/// The router, and the `ApiKeyAuth` behind it (one cache for guards and manager).
async fn build(store: SqliteStore, clock: impl Clock) -> Result<(Router, Auth), ConfigError> {
    let auth = ApiKeyAuth::builder(store)
        .format(KeyFormat::new("inv")?.with_environments(["live", "test"])?)
        .scopes(scopes()?)
        .clock(clock)
        .rate_limit("60/min".parse()?)
        .respond_with(|refusal| {
            let body = json!({ "error": refusal.code(), "detail": refusal.message() });
            (refusal.status(), Json(body))
        })
        .build()?;
    let app = Router::new()
        .route(
            "/invoices",
            get(list_invoices.layer(auth.guard("invoices:read")?))
                .post(create_invoice.layer(auth.guard("invoices:write")?)),
        )
        .route("/keys", post(create_key.layer(auth.guard("keys:write")?)))
        .route(
            "/keys/{id}",
            delete(revoke_key.layer(auth.guard("keys:write")?)),
        )
        .with_state(auth.clone());
    Ok((app, auth))
}

async fn list_invoices(key: Principal) -> Json<Value> {
    Json(json!({ "organization": key.owner().id(), "invoices": [] }))
}

async fn create_invoice(key: Principal, Json(invoice): Json<Value>) -> (StatusCode, Json<Value>) {
    (
        StatusCode::CREATED,
        Json(json!({ "created_by": key.key_id(), "invoice": invoice })),
    )
}

#[derive(Deserialize)]
struct KeyRequest {
    name: String,
    scopes: Vec<String>,
}

/// Creates a key of the caller's organization and environment; the manager refuses
/// scopes the caller does not hold. The full key is in this response only.
async fn create_key(
    State(auth): State<Auth>,
    key: Principal,
    Json(request): Json<KeyRequest>,
) -> Result<(StatusCode, Json<Value>), Response> {
    let mut new = NewKey::new(request.name, key.owner().clone()).with_scopes(request.scopes);
    if let Some(environment) = key.environment() {
        new = new.with_environment(environment.as_str());
    }
    let created = auth
        .manager()
        .create(new, Actor::Key(&key))
        .await
        .map_err(|error| auth.respond(&error))?;
    let body = json!({ "id": created.record.id, "key": created.key.expose_secret() });
    Ok((StatusCode::CREATED, Json(body)))
}

/// Revokes a key at once: the next request with it is refused.
async fn revoke_key(
    State(auth): State<Auth>,
    key: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, Response> {
    // The key manager's refusals answer in the guards' style: one error body.
    let refuse = |error: ManageError| auth.respond(&error);
    let id = KeyId::new(&id).map_err(|_| refuse(ManageError::NotFound))?;
    auth.manager()
        .revoke(key.owner(), &id, Actor::Key(&key))
        .await
        .map_err(refuse)?;
    Ok(StatusCode::NO_CONTENT)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = SqliteStore::connect("sqlite://invoices.db").await?;
    store.migrate().await?;
    let (app, auth) = build(store, SystemClock).await?;
    let admin = NewKey::new("admin", Owner::organization("acme"))
        .with_environment("live")
        .with_scopes(["invoices:write", "keys:write"]);
    if let Some(created) = auth
        .manager()
        .ensure_key(admin, Actor::System("bootstrap"))
        .await?
    {
        println!("admin key (shown once): {}", created.key.expose_secret());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://127.0.0.1:3000");
    // The peer address is the client whose unknown keys are budgeted.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    use tower_api_key::clock::ManualClock;

    use super::*;

    struct App {
        router: Router,
        admin: String,
        clock: ManualClock,
    }

    async fn app() -> App {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let clock = ManualClock::default();
        let (router, auth) = build(store, clock.clone()).await.unwrap();
        let admin = NewKey::new("admin", Owner::organization("acme"))
            .with_environment("live")
            .with_scopes(["invoices:write", "keys:write"]);
        let created = auth
            .manager()
            .ensure_key(admin, Actor::System("test"))
            .await
            .unwrap();
        let admin = created.unwrap().key.expose_secret().to_owned();
        App {
            router,
            admin,
            clock,
        }
    }

    async fn send(
        app: &App,
        method: &str,
        path: &str,
        key: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = app.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn new_key(app: &App, with: &str, scopes: &[&str]) -> (StatusCode, Value) {
        send(
            app,
            "POST",
            "/keys",
            with,
            json!({ "name": "k", "scopes": scopes }),
        )
        .await
    }

    #[tokio::test]
    async fn a_read_key_lists_invoices_but_cannot_create_one() {
        let app = app().await;
        let (_, created) = new_key(&app, &app.admin, &["invoices:read"]).await;
        let reader = created["key"].as_str().unwrap();
        assert_eq!(
            send(&app, "GET", "/invoices", reader, Value::Null).await.0,
            StatusCode::OK
        );
        let (status, body) = send(&app, "POST", "/invoices", reader, json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body,
            json!({ "error": "permission_denied", "detail": "Required scope: invoices:write" })
        );
    }

    #[tokio::test]
    async fn a_revoked_key_is_refused_by_the_next_request() {
        let app = app().await;
        let (status, created) = new_key(&app, &app.admin, &["invoices:write"]).await;
        assert_eq!(status, StatusCode::CREATED);
        let key = created["key"].as_str().unwrap();
        assert_eq!(
            send(&app, "POST", "/invoices", key, json!({})).await.0,
            StatusCode::CREATED
        );
        let path = format!("/keys/{}", created["id"].as_str().unwrap());
        assert_eq!(
            send(&app, "DELETE", &path, &app.admin, Value::Null).await.0,
            StatusCode::NO_CONTENT
        );
        let (status, body) = send(&app, "POST", "/invoices", key, json!({})).await;
        assert_eq!(
            (status, &body["error"]),
            (StatusCode::UNAUTHORIZED, &json!("authentication_required"))
        );
    }

    #[tokio::test]
    async fn a_key_cannot_create_a_stronger_one() {
        let app = app().await;
        let (_, created) = new_key(&app, &app.admin, &["keys:write"]).await;
        let key_admin = created["key"].as_str().unwrap();
        let (status, body) = new_key(&app, key_admin, &["invoices:write"]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body,
            json!({
                "error": "permission_denied",
                "detail": "Cannot grant scope invoices:write: the acting key does not hold it"
            })
        );
    }

    /// The key manager's refusals and the guards' share one body: the application's.
    #[tokio::test]
    async fn key_endpoints_refuse_in_the_same_body_as_the_guards() {
        let app = app().await;
        for path in ["/keys/nokey000000", "/keys/not%20an%20id"] {
            let (status, body) = send(&app, "DELETE", path, &app.admin, Value::Null).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(body["error"], "not_found", "{path}: {body}");
            assert!(body["detail"].is_string(), "{path}: {body}");
        }
    }

    #[tokio::test]
    async fn sixty_requests_a_minute_then_429_until_time_passes() {
        let app = app().await;
        for _ in 0..60 {
            assert_eq!(
                send(&app, "GET", "/invoices", &app.admin, Value::Null)
                    .await
                    .0,
                StatusCode::OK
            );
        }
        let (status, body) = send(&app, "GET", "/invoices", &app.admin, Value::Null).await;
        assert_eq!(
            (status, &body["error"]),
            (StatusCode::TOO_MANY_REQUESTS, &json!("rate_limited"))
        );
        app.clock.advance(Duration::from_secs(1));
        assert_eq!(
            send(&app, "GET", "/invoices", &app.admin, Value::Null)
                .await
                .0,
            StatusCode::OK
        );
    }
}
