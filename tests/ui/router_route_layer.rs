//! `Router::route_layer`: the read guard would cover every route and method added before it.
use axum::routing::get;
use axum::Router;
use tower_api_key::prelude::*;

async fn list() -> &'static str {
    "list"
}

async fn create() -> &'static str {
    "created"
}

fn main() -> Result<(), ConfigError> {
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(KeyFormat::new("inv")?)
        .scopes(ScopeModel::builder().resource("invoices", ["read", "write"]).build()?)
        .build()?;
    let _app: Router = Router::new()
        .route("/invoices", get(list).post(create))
        .route_layer(auth.guard("invoices:read")?);
    Ok(())
}
