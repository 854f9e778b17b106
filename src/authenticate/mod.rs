//! The authentication middleware: [`AuthenticateLayer`] and [`Authenticate`], around the
//! [`KeyVerifier`] that checks one presented key.
//!
//! Every request either reaches the inner service carrying a verified
//! [`Principal`](crate::Principal) in its extensions, or is answered with the
//! documented refusal (see [`rejection`](crate::rejection)).
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower_api_key::{AuthenticateLayer, KeyVerifier, Principal};
//! use tower_api_key::key::KeyFormat;
//! use tower_api_key::store::{CachedStore, MemoryStore};
//!
//! # fn main() -> Result<(), tower_api_key::ConfigError> {
//! let format = KeyFormat::new("pb")?.with_environments(["live", "test"])?;
//! let store = CachedStore::builder(MemoryStore::new()).build()?;
//! let auth = KeyVerifier::new(store, format);
//!
//! let app: Router = Router::new()
//!     .route("/v1/session", get(|p: Principal| async move { p.name().to_owned() }))
//!     .layer(AuthenticateLayer::new(auth));
//! # Ok(())
//! # }
//! ```

mod authenticator;
mod config;
mod layer;
mod service;

pub use self::authenticator::{KeyVerifier, UNIDENTIFIED_CLIENTS_METRIC};
pub use self::layer::AuthenticateLayer;
pub use self::service::Authenticate;
