//! The quick start: an axum router behind one `ApiKeyAuth`, keys from
//! `Authorization: Bearer` (or `X-API-Key`), and a scope guard on each handler.
//!
//! Run with:
//!
//! ```sh
//! cargo run --example bearer
//! curl -H "Authorization: Bearer $KEY" localhost:3000/v1/session          # 200
//! curl -X POST -H "Authorization: Bearer $KEY" localhost:3000/v1/observations  # 403
//! ```
#![allow(clippy::print_stdout)]

use axum::handler::Handler;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_api_key::prelude::*;
use tower_api_key::presets::performance_blocks;

async fn session(principal: Principal) -> Json<Value> {
    Json(json!({ "key_id": principal.key_id(), "organization_id": principal.owner().id() }))
}

async fn create() -> &'static str {
    "created"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(performance_blocks::key_format())
        .scopes(performance_blocks::scope_model())
        .build()?;

    // One read-only key, shown once.
    let created = auth
        .manager()
        .create(
            NewKey::new("BI dashboard", Owner::organization("acme"))
                .with_environment("live")
                .with_scopes(["observations:read"]),
            Actor::System("example"),
        )
        .await?;
    println!("KEY={}", created.key.expose_secret());

    let app = Router::new()
        .route(
            "/v1/session",
            get(session.layer(auth.guard("observations:read")?)),
        )
        .route(
            "/v1/observations",
            post(create.layer(auth.guard("observations:write")?)),
        );

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
