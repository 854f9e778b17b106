//! A ProductBridge-style POST surface: the key travels as `api_key` in the JSON body,
//! and refusals are ProductBridge's generic 401.
//!
//! Run with:
//!
//! ```sh
//! cargo run --example json_body
//! ```
//!
//! then call it with the key it prints:
//!
//! ```sh
//! curl -X POST localhost:3001/api/external/v1/feedback-posts/list \
//!   -H 'Content-Type: application/json' -d '{"api_key":"pb_live_…","limit":25}'
//! ```
#![allow(clippy::print_stdout)]

use axum::handler::Handler;
use axum::{routing::post, Json, Router};
use serde_json::{json, Value};
use tower_api_key::prelude::*;
use tower_api_key::presets;

async fn list(principal: Principal, Json(body): Json<Value>) -> Json<Value> {
    let limit = body["limit"].as_u64().unwrap_or(25);
    Json(
        json!({ "items": [], "has_next_page": false, "cursor": null, "limit": limit,
                 "organization": principal.owner().id() }),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(KeyFormat::new("pb")?.with_environments(["live", "test"])?)
        .scopes(ScopeModel::builder().scope("public_api").build()?)
        .sources(KeySources::json_body())
        .responder(presets::product_bridge::error_style())
        .build()?;
    let created = auth
        .manager()
        .create(
            NewKey::new("public API", Owner::organization("acme"))
                .with_environment("live")
                .with_scopes(["public_api"]),
            Actor::System("example"),
        )
        .await?;
    println!("api_key (shown once): {}", created.key.expose_secret());

    let app = Router::new().route(
        "/api/external/v1/feedback-posts/list",
        post(list.layer(auth.guard("public_api")?)),
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("listening on http://{}", listener.local_addr()?);
    // The peer address is the client the unknown-key budget is counted against.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await?;
    Ok(())
}
