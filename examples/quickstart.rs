//! Mint a key, authenticate it through the cached store, revoke it.
//!
//! Run with:
//!
//! ```sh
//! cargo run --example quickstart
//! ```
#![allow(clippy::print_stdout)]

use tower_api_key::key::KeyFormat;
use tower_api_key::store::{CachedStore, KeyRecord, ManagedKeyStore, MemoryStore, Owner};
use tower_api_key::KeyVerifier;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let format = KeyFormat::new("pb")?.with_environments(["live", "test"])?;
    let store = CachedStore::builder(MemoryStore::new()).build()?;
    let now = time::OffsetDateTime::now_utc();

    let minted = format.generate(Some("live"))?;
    let record = KeyRecord::new(
        &minted,
        "BI dashboard",
        Owner::organization("acme"),
        vec!["employees:read".into()],
        now,
    );
    store.insert(&record).await?;
    println!("minted (shown once): {}", minted.key.expose_secret());
    println!("as logged:           {:?}", minted.key);

    let auth = KeyVerifier::new(store.clone(), format);
    let principal = auth.authenticate(minted.key.expose_secret()).await?;
    println!("authenticated:       {principal:?}");

    store
        .revoke(&minted.id, time::OffsetDateTime::now_utc())
        .await?;
    let refused = auth
        .authenticate(minted.key.expose_secret())
        .await
        .unwrap_err();
    println!("after revoke:        {refused} (HTTP {})", refused.status());
    Ok(())
}
