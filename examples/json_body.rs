//! A ProductBridge-style POST surface: the key travels as `api_key` in the JSON body.
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

use axum::{routing::post, Json, Router};
use serde_json::{json, Value};
use tower_api_key::credentials::KeySources;
use tower_api_key::key::KeyFormat;
use tower_api_key::store::{CachedStore, KeyRecord, ManagedKeyStore, MemoryStore, Owner};
use tower_api_key::{AuthenticateLayer, KeyVerifier, Principal};

async fn list(principal: Principal, Json(body): Json<Value>) -> Json<Value> {
    let limit = body["limit"].as_u64().unwrap_or(25);
    Json(
        json!({ "items": [], "has_next_page": false, "cursor": null, "limit": limit,
                 "organization": principal.owner().id() }),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let format = KeyFormat::new("pb")?.with_environments(["live", "test"])?;
    let store = CachedStore::builder(MemoryStore::new()).build()?;
    let minted = format.generate(Some("live"))?;
    let now = time::OffsetDateTime::now_utc();
    let org = Owner::organization("acme");
    store
        .insert(&KeyRecord::new(
            &minted,
            "public API",
            org,
            vec!["public_api".into()],
            now,
        ))
        .await?;
    println!("api_key (shown once): {}", minted.key.expose_secret());

    let layer = AuthenticateLayer::new(KeyVerifier::new(store, format))
        .with_sources(KeySources::json_body())
        .with_responder(tower_api_key::presets::product_bridge::error_style());
    let app = Router::new()
        .route("/api/external/v1/feedback-posts/list", post(list))
        .layer(layer);

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
