//! The quick start: an axum router behind `AuthenticateLayer`, keys from
//! `Authorization: Bearer` (or `X-API-Key`), and a scope guard on one route.
//!
//! Run with:
//!
//! ```sh
//! cargo run --example bearer
//! curl -H "Authorization: Bearer $KEY" localhost:3000/v1/session          # 200
//! curl -X POST -H "Authorization: Bearer $KEY" localhost:3000/v1/observations  # 403
//! ```
#![allow(clippy::print_stdout)]

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_api_key::key::KeyFormat;
use tower_api_key::require_scopes::RequireScopesLayer;
use tower_api_key::store::{CachedStore, KeyRecord, ManagedKeyStore, MemoryStore, Owner};
use tower_api_key::{AuthenticateLayer, KeyVerifier, Principal};

async fn session(principal: Principal) -> Json<Value> {
    Json(json!({ "key_id": principal.key_id(), "organization_id": principal.owner().id() }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let format = KeyFormat::new("pb")?.with_environments(["live", "test"])?;
    let model = tower_api_key::presets::performance_blocks::scope_model();
    let store = CachedStore::builder(MemoryStore::new()).build()?;

    // One read-only key, shown once.
    let minted = format.generate(Some("live"))?;
    let now = time::OffsetDateTime::now_utc();
    let scopes = vec!["observations:read".to_owned()];
    store
        .insert(&KeyRecord::new(
            &minted,
            "BI dashboard",
            Owner::organization("acme"),
            scopes,
            now,
        ))
        .await?;
    println!("KEY={}", minted.key.expose_secret());

    let write = RequireScopesLayer::new(&model, "observations:write")?;
    let app = Router::new()
        .route("/v1/session", get(session))
        .route(
            "/v1/observations",
            post(|| async { "created" }).route_layer(write),
        )
        .layer(AuthenticateLayer::new(KeyVerifier::new(store, format)).with_scope_model(model));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    // The peer address is the client the unknown-key budget is counted against.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await?;
    Ok(())
}
