//! A read-only key store over an application's existing database: each row of its own
//! `users` table holds the id and SHA-256 digest of that user's API key, and the user's
//! plan decides the key's scopes. The request path needs nothing more than
//! [`KeyStore::get`]: the store is 32 lines of code, and the keys are managed by the
//! application as it always has (no `KeyManager`, which needs a `ManagedKeyStore`).
//!
//! Run with:
//!
//! ```sh
//! cargo run --example users_store --features sqlite    # prints a key and a curl line
//! cargo test --example users_store --features sqlite   # its test
//! ```
#![allow(clippy::print_stdout)]

use axum::handler::Handler;
use axum::routing::get;
use axum::Router;
use sqlx::SqlitePool;
use time::OffsetDateTime;
use tower_api_key::key::{Digest, KeyFormat, KeyId, MintedKey};
use tower_api_key::prelude::*;
use tower_api_key::store::StoreError;

// ---- the store: everything the authentication layer needs ----

/// The application's own users table, read-only.
#[derive(Clone)]
struct UsersStore {
    pool: SqlitePool,
}

impl KeyStore for UsersStore {
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let row: Option<(Vec<u8>, String, String, i64)> = sqlx::query_as(
            "SELECT api_key_digest, email, plan, created_at FROM users WHERE api_key_id = ?",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::unavailable)?;
        let Some((digest, email, plan, created_at)) = row else {
            return Ok(None);
        };
        let digest = <[u8; 32]>::try_from(digest)
            .map_err(|_| StoreError::Corrupt(format!("digest of key {id} is not 32 bytes")))?;
        let created_at = OffsetDateTime::from_unix_timestamp(created_at)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let scopes = match plan.as_str() {
            "pro" => vec!["reports:read".to_owned(), "reports:write".to_owned()],
            _ => vec!["reports:read".to_owned()],
        };
        let prefix = format!("acme_{id}");
        let owner = Owner::user(email);
        let digest = Digest::from_bytes(digest);
        let mut record = KeyRecord::imported(*id, digest, prefix, "api", owner, scopes, created_at);
        record.imported = false;
        Ok(Some(record))
    }
}

// ---- the application ----

fn scopes() -> Result<ScopeModel, ConfigError> {
    ScopeModel::builder()
        .resource("reports", ["read", "write"])
        .action_implies("write", "read")
        .build()
}

async fn app(pool: SqlitePool) -> Result<Router, ConfigError> {
    let auth = ApiKeyAuth::builder(UsersStore { pool })
        .format(KeyFormat::new("acme")?)
        .scopes(scopes()?)
        .build()?;
    async fn read() -> &'static str {
        "the reports"
    }
    async fn write() -> &'static str {
        "report saved"
    }
    Ok(Router::new().route(
        "/reports",
        get(read.layer(auth.guard("reports:read")?))
            .post(write.layer(auth.guard("reports:write")?)),
    ))
}

/// The application's existing schema, and a user signing up: the key is minted with
/// the crate's format (checksummed, so typos never reach the database) and only its id
/// and digest are stored.
async fn users_db() -> Result<SqlitePool, Box<dyn std::error::Error>> {
    let pool = SqlitePool::connect("sqlite::memory:").await?;
    sqlx::query(
        "CREATE TABLE users (email TEXT PRIMARY KEY, plan TEXT NOT NULL, \
         api_key_id TEXT UNIQUE, api_key_digest BLOB, created_at INTEGER NOT NULL)",
    )
    .execute(&pool)
    .await?;
    Ok(pool)
}

async fn sign_up(
    pool: &SqlitePool,
    email: &str,
    plan: &str,
) -> Result<MintedKey, Box<dyn std::error::Error>> {
    let minted = KeyFormat::new("acme")?.generate(None)?;
    sqlx::query("INSERT INTO users VALUES (?, ?, ?, ?, ?)")
        .bind(email)
        .bind(plan)
        .bind(minted.id.as_str())
        .bind(minted.digest.as_bytes().as_slice())
        .bind(OffsetDateTime::now_utc().unix_timestamp())
        .execute(pool)
        .await?;
    Ok(minted)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = users_db().await?;
    let minted = sign_up(&pool, "ada@example.com", "free").await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!(
        "curl -H 'Authorization: Bearer {}' http://127.0.0.1:3001/reports",
        minted.key.expose_secret()
    );
    axum::serve(listener, app(pool).await?).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn call(app: &Router, method: &str, key: &str) -> StatusCode {
        let request = Request::builder()
            .method(method)
            .uri("/reports")
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn the_users_table_decides_who_reads_and_who_writes() {
        let pool = users_db().await.unwrap();
        let free = sign_up(&pool, "ada@example.com", "free").await.unwrap();
        let pro = sign_up(&pool, "grace@example.com", "pro").await.unwrap();
        let app = app(pool.clone()).await.unwrap();
        let (free, pro) = (free.key.expose_secret(), pro.key.expose_secret());

        assert_eq!(call(&app, "GET", free).await, StatusCode::OK);
        assert_eq!(call(&app, "POST", free).await, StatusCode::FORBIDDEN);
        assert_eq!(call(&app, "POST", pro).await, StatusCode::OK);

        // A key the table does not hold, and a row whose key was replaced.
        let stranger = KeyFormat::new("acme").unwrap().generate(None).unwrap();
        assert_eq!(
            call(&app, "GET", stranger.key.expose_secret()).await,
            StatusCode::UNAUTHORIZED
        );
        sqlx::query("UPDATE users SET api_key_digest = zeroblob(32) WHERE plan = 'pro'")
            .execute(&pool)
            .await
            .unwrap();
        let app = super::app(pool).await.unwrap();
        assert_eq!(call(&app, "GET", pro).await, StatusCode::UNAUTHORIZED);
    }
}
