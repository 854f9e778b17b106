//! The parts [`ApiKeyAuth`](crate::auth::ApiKeyAuth) is made of, for a stack of your
//! own: the authentication middleware and the [`KeyVerifier`] it wraps, the scope and
//! rate-limit middlewares, the cache, the last-used buffer, and the response types they
//! share.
//!
//! [`ApiKeyAuth`](crate::auth::ApiKeyAuth) builds all of them over one cache and puts
//! them in the right order on each handler; reach for the parts when you need what it
//! does not offer (a `KeyVerifier` behind another transport, a gRPC or WebSocket
//! handshake, a layer over a whole router with optional keys). Wired by hand, the order
//! and the sharing are yours to keep: one [`CachedStore`] for the layer and the
//! [`KeyManager`](crate::manage::KeyManager), authentication outermost, the scope check
//! before the rate limit.
//!
//! Every request either reaches the inner service carrying a verified
//! [`Principal`](crate::Principal) in its extensions, or is answered with the
//! documented refusal (see [`rejection`](crate::rejection)).
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower_api_key::parts::{AuthenticateLayer, CachedStore, KeyVerifier};
//! use tower_api_key::{KeyFormat, MemoryStore, Principal};
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

pub use crate::authenticate::{
    Authenticate, AuthenticateLayer, KeyVerifier, UNIDENTIFIED_CLIENTS_METRIC,
};
pub use crate::pipeline::{ResponseBody, ResponseFuture};
pub use crate::rate_limit::{RateLimit, RateLimitLayer};
pub use crate::require_scopes::{RequireScopes, RequireScopesLayer};
pub use crate::store::{CachedStore, CachedStoreBuilder, LastUsed};
