//! The authentication middleware: [`ApiKeyLayer`] and [`ApiKeyService`], around the
//! [`Authenticator`] that checks one presented key.
//!
//! Every request either reaches the inner service carrying a verified
//! [`Principal`](crate::Principal) in its extensions, or is answered with the
//! documented refusal (see [`rejection`](crate::rejection)).
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower_api_key::{ApiKeyLayer, Authenticator, Principal};
//! use tower_api_key::key::KeyFormat;
//! use tower_api_key::store::{CachedStore, MemoryStore};
//!
//! # fn main() -> Result<(), tower_api_key::ConfigError> {
//! let format = KeyFormat::new("pb")?.with_environments(["live", "test"])?;
//! let store = CachedStore::builder(MemoryStore::new()).build()?;
//! let auth = Authenticator::new(store, format);
//!
//! let app: Router = Router::new()
//!     .route("/v1/session", get(|p: Principal| async move { p.name().to_owned() }))
//!     .layer(ApiKeyLayer::new(auth));
//! # Ok(())
//! # }
//! ```

mod authenticator;
mod layer;
mod service;

pub use self::authenticator::Authenticator;
pub use self::layer::ApiKeyLayer;
pub use self::service::ApiKeyService;
