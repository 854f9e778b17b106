//! The right place: one guard per handler, stacked guards for "A and B", with a rate
//! limit, with state and extractors.
use axum::extract::State;
use axum::handler::Handler;
use axum::routing::get;
use axum::Router;
use tower_api_key::prelude::*;

async fn list() -> &'static str {
    "list"
}

async fn create(State(name): State<&'static str>, key: Principal, body: String) -> String {
    format!("{name} {} {body}", key.key_id())
}

fn main() -> Result<(), ConfigError> {
    let scopes = ScopeModel::builder()
        .resource("invoices", ["read", "write"])
        .resource("ledger", ["write"])
        .build()?;
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(KeyFormat::new("inv")?)
        .scopes(scopes)
        .rate_limit("10/min".parse()?)
        .build()?;
    let _app: Router = Router::new()
        .route(
            "/invoices",
            get(list.layer(auth.guard("invoices:read")?)).post(
                create
                    .layer(auth.guard("invoices:write")?)
                    .layer(auth.guard("ledger:write")?),
            ),
        )
        .with_state("invoices");
    Ok(())
}
