//! A wiring mistake that remains possible (a handler taking `Principal`, or a
//! hand-wired guard, on a route no authentication layer covers) answers 500 in the
//! default envelope: no front door ran, so none of the application's styles applies, and
//! building an `ApiKeyAuth` sets no process-wide style (it used to: the first one built
//! won).

use axum::body::Body;
use axum::routing::get;
use axum::{Json, Router};
use http::{Request, StatusCode};
use serde_json::json;
use tower::ServiceExt;
use tower_api_key::auth::ApiKeyAuth;
use tower_api_key::key::KeyFormat;
use tower_api_key::require_scopes::RequireScopesLayer;
use tower_api_key::store::MemoryStore;
use tower_api_key::{Principal, ScopeModel};

#[tokio::test]
async fn a_route_without_authentication_answers_500_in_the_default_envelope() {
    let scopes = ScopeModel::builder()
        .resource("invoices", ["read", "write"])
        .build()
        .unwrap();
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(KeyFormat::new("inv").unwrap())
        .scopes(scopes.clone())
        .respond_with(|refusal| {
            let body = json!({ "problem": refusal.code(), "detail": refusal.message() });
            (refusal.status(), Json(body))
        })
        .build()
        .unwrap();
    let app = Router::new()
        // Forgot the guard, but the handler wants a key.
        .route(
            "/whoami",
            get(|p: Principal| async move { p.key_id().to_string() }),
        )
        // Wired by hand, without the authentication layer.
        .route(
            "/late",
            get(|| async { "open?" })
                .route_layer(RequireScopesLayer::new(&scopes, "invoices:read").unwrap()),
        )
        .route("/fine", get(|| async { "ok" }).layer(auth.layer()));
    for path in ["/whoami", "/late"] {
        let response = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{path}"
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            json!({"error": {
                "code": "internal_error",
                "message": "authentication is not configured for this route"
            }}),
            "{path}"
        );
    }
}
