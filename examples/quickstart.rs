//! Mint a key, authenticate a request with it through a guard, revoke it: the next
//! request is refused, with no cache delay.
//!
//! Run with:
//!
//! ```sh
//! cargo run --example quickstart
//! ```
#![allow(clippy::print_stdout)]

use axum::body::Body;
use axum::handler::Handler;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use tower::ServiceExt;
use tower_api_key::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(KeyFormat::new("pb")?.with_environments(["live", "test"])?)
        .scopes(
            ScopeModel::builder()
                .resource("employees", ["read"])
                .build()?,
        )
        .build()?;
    let created = auth
        .manager()
        .create(
            NewKey::new("BI dashboard", Owner::organization("acme"))
                .with_environment("live")
                .with_scopes(["employees:read"]),
            Actor::System("quickstart"),
        )
        .await?;
    println!("minted (shown once): {}", created.key.expose_secret());
    println!("as logged:           {:?}", created.key);

    let employees =
        |principal: Principal| async move { format!("hello, {}", principal.owner().id()) };
    let app: Router = Router::new().route(
        "/employees",
        get(employees.layer(auth.guard("employees:read")?)),
    );
    let request = || {
        Request::get("/employees")
            .header(
                "authorization",
                format!("Bearer {}", created.key.expose_secret()),
            )
            .body(Body::empty())
    };
    let response = app.clone().oneshot(request()?).await?;
    println!("authenticated:       HTTP {}", response.status());

    auth.manager()
        .revoke(
            &created.record.owner,
            &created.record.id,
            Actor::System("quickstart"),
        )
        .await?;
    let response = app.oneshot(request()?).await?;
    println!("after revoke:        HTTP {}", response.status());
    Ok(())
}
