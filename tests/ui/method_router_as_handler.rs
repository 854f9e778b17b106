//! A `MethodRouter` is itself an axum `Handler`: `Handler::layer` on it would put the
//! read guard on `POST` as well.
use axum::handler::Handler;
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
    let both = get(list).post(create);
    let _app: Router = Router::new().route(
        "/invoices",
        get(Handler::layer(both, auth.guard("invoices:read")?)),
    );
    Ok(())
}
