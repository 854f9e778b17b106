//! API-key authentication for [tower] and [axum].
//!
//! Keys such as `pb_live_…` are taken from `Authorization: Bearer`, `X-API-Key` or a
//! JSON body's `api_key`, resolved through a bounded, single-flight cache in front of
//! a pluggable key store, checked against per-route scopes, and refused with the
//! documented 401/403/429 bodies.
//!
//! # Quick start
//!
//! [`ApiKeyAuth`] builds everything over one cache: the key manager,
//! and one guard per handler (authentication, the route's scopes, the rate limit): a
//! guard goes on a handler, `handler.layer(guard)`, and does not compile on a whole
//! method router or router, where it would cover methods it was not written for.
//! `examples/own_api.rs` is a complete service built this way, with SQLite and tests.
//!
//! ```
//! use axum::handler::Handler;
//! use axum::routing::get;
//! use axum::Router;
//! use tower_api_key::prelude::*;
//!
//! async fn list() -> &'static str { "the invoices" }
//! async fn create() -> &'static str { "created" }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let scopes = ScopeModel::builder()
//!     .resource("invoices", ["read", "write"])
//!     .action_implies("write", "read")
//!     .build()?;
//! let auth = ApiKeyAuth::builder(MemoryStore::new())
//!     .format(KeyFormat::new("inv")?.with_environments(["live", "test"])?)
//!     .scopes(scopes)
//!     .rate_limit("100/min".parse()?)
//!     .build()?;
//!
//! // Keys are minted by the manager (scopes validated, the creation audited); the full
//! // key is shown once, and only its digest is stored.
//! let created = auth
//!     .manager()
//!     .create(
//!         NewKey::new("BI dashboard", Owner::organization("acme"))
//!             .with_environment("live")
//!             .with_scopes(["invoices:read"]),
//!         Actor::System("bootstrap"),
//!     )
//!     .await?;
//! println!("shown once: {}", created.key.expose_secret());
//!
//! let app: Router = Router::new().route(
//!     "/invoices",
//!     get(list.layer(auth.guard("invoices:read")?))
//!         .post(create.layer(auth.guard("invoices:write")?)),
//! );
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! Serve it with the peer address, which the [unknown-key budget](budget) counts
//! against (without it every client shares one budget):
//! `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())`.
//! The parts ([`AuthenticateLayer`](parts::AuthenticateLayer), [`RequireScopesLayer`](require_scopes::RequireScopesLayer),
//! [`RateLimitLayer`](rate_limit::RateLimitLayer)) can also be wired by hand
//! (`examples/bearer.rs`).
//!
//! # Plain tower
//!
//! The layer wraps any `tower::Service<http::Request<B>>` whose body can be rebuilt
//! from bytes (`B: From<Bytes>`, as axum's `Body` and `Full<Bytes>` are):
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_api_key::key::KeyFormat;
//! use tower_api_key::store::{CachedStore, MemoryStore};
//! use tower_api_key::Principal;
//! use tower_api_key::parts::{AuthenticateLayer, KeyVerifier};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = KeyVerifier::new(
//!     CachedStore::builder(MemoryStore::new()).build()?,
//!     KeyFormat::new("pf")?.with_environments(["live", "test", "dev"])?,
//! );
//! let svc = ServiceBuilder::new()
//!     .layer(AuthenticateLayer::new(auth))
//!     .service_fn(|req: Request<Full<Bytes>>| async move {
//!         let who = req.extensions().get::<Principal>().map(|p| p.key_id().to_string());
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(who.unwrap_or_default()))))
//!     });
//! let response = svc.oneshot(Request::new(Full::new(Bytes::new()))).await?;
//! assert_eq!(response.status(), 401);
//! # Ok(())
//! # }
//! ```
//!
//! # Modules
//!
//! The crate reads in one direction: each module imports only from rows below its own,
//! never from its row or above, and no two files import each other
//! (`tests/layering.rs` checks both against this table). The three middlewares share
//! a row: none imports another; what they share is the private `pipeline` below them.
//!
//! | row | modules | what they hold |
//! |---|---|---|
//! | 8 | [`management`] | the key-management API as a router of one surface, mounted in one line: create, list (paginated, filtered), get, update, rotate, revoke, audit log |
//! | 7 | [`prelude`], [`presets`], [`parts`], `openapi` | what protecting an API needs, in one `use`; the parts of the entry point, for a stack of your own; the five documented products' scope models, key formats, sources and error styles; (feature `utoipa`) the OpenAPI description of the layers and guards: security schemes, scopes per operation, refusals |
//! | 6 | [`auth`] | [`ApiKeyAuth`]: the one entry point, building the authentication layer, the key manager and per-route guards over one cache |
//! | 5 | `authenticate`, [`require_scopes`], [`rate_limit`] | the middlewares: [`AuthenticateLayer`](parts::AuthenticateLayer) (and the [`KeyVerifier`](parts::KeyVerifier) it wraps, for other transports), [`RequireScopesLayer`](require_scopes::RequireScopesLayer) and the typed [`Scoped`](require_scopes::Scoped) extractor, [`RateLimitLayer`](rate_limit::RateLimitLayer) with per-key GCRA limits and per-owner quotas |
//! | 4 | `pipeline`, [`manage`] | what the middlewares share (the [`ResponseFuture`](parts::ResponseFuture), the one [`ResponseBody`](parts::ResponseBody), the request context they pass along); [`KeyManager`] with its authority rules |
//! | 3 | [`audit`], [`credentials`], `principal`, [`usage`] | audit sinks and the non-blocking request [`Auditor`](audit::Auditor); where keys are read from; the [`Principal`] a handler sees; usage per key, counted beside the cached key and written behind |
//! | 2 | [`store`], [`rejection`], [`budget`] | the [`KeyStore`] / [`ManagedKeyStore`] traits, [`MemoryStore`], the revocation-safe [`CachedStore`](store::CachedStore), the SQL stores, the write-behind [`LastUsed`](store::LastUsed) buffer; [`RejectionKind`] → response styles; the unknown-key budget |
//! | 1 | [`key`], [`scope`], [`clock`], [`client`] | the key format, CSPRNG generation, CRC32 checksum and SHA-256 digests; scope models and requirements; clocks; client addresses |
//! | 0 | `error` | [`ConfigError`], which every setting returns |
//!
//! # Features
//!
//! | feature | adds |
//! |---|---|
//! | `sqlite` | `store::sql::SqliteStore`: a durable key store and audit sink in a SQLite file (bundled SQLite, through sqlx) |
//! | `postgres` | `store::sql::PostgresStore`: a key store and audit sink shared by every instance, with LISTEN/NOTIFY cache invalidation |
//! | `redis` | `rate_limit::RedisLimiter`: rate limits and quotas shared by every instance through Redis, falling back to local limits while it is down |
//! | `utoipa` | `openapi`: OpenAPI security schemes, per-operation scope requirements and refusal responses generated from the layers and guards that enforce them (utoipa 5, utoipa-axum) |
//!
//! No feature is on by default, and nothing SQL, Redis or OpenAPI is compiled without one.
//!
//! # Security and deployment
//!
//! - Only SHA-256 digests of keys are stored; comparisons are constant-time.
//! - `Debug` and `Display` of every type that holds a key show only its public
//!   prefix and id, and no log event carries a key.
//! - A store outage is [`RejectionKind::StoreUnavailable`] (503), never a 401 and never a
//!   pass. A guard with no [`AuthenticateLayer`](parts::AuthenticateLayer) in front answers 500: misconfiguration
//!   fails closed.
//! - Revocation is seen by the next request on the instance that made it; other
//!   instances see it within the cache TTL (30 s by default) unless they are told
//!   through [`CachedStore::invalidate`](store::CachedStore::invalidate). With the
//!   PostgreSQL store and its invalidation listener, they see it within a second while
//!   the listener is connected.
//! - No key can obtain or affect more than it was given: every lifecycle operation
//!   by a key passes [`KeyManager`'s authority rules](manage::KeyManager#authority)
//!   (own owner, own environment unless privileged, no scope it does not hold, no key
//!   stronger than itself), and every change is written by the store together with its
//!   audit entry, atomically.
//! - Put tower-http's `SetRequestIdLayer` outside the layer: every refusal then
//!   carries `X-Request-Id`, and every log event the request id. An id over 128
//!   characters or outside visible ASCII is ignored
//!   ([`rejection::is_valid_request_id`]).
//! - Anyone can mint well-formed keys (the checksum is public), but not a key's tag:
//!   a native key minted under the store's tag secret ([`key::TagKey`]) is checked
//!   on a cache miss before any lookup, so forged tagged keys cost no lookup at all and
//!   are never charged to a budget a valid key shares. For the keys a tag cannot vouch
//!   for (untagged, imported), the [unknown-key budget](budget) (100 such lookups a
//!   minute per client, by [`client::ClientIp`]) answers 429 past it without a lookup;
//!   the cache caps concurrent lookups (8) and times them out (3 s), answering 503 past
//!   either; negative entries are kept apart so they never evict known keys.
//! - Through a store outage, records used within the TTL plus the stale-if-error
//!   window (5 minutes) keep answering. An instance cut off from the store and its
//!   notifications may so use a record revoked elsewhere for 330 s after its last
//!   fetch; see [`CachedStore`](store::CachedStore#stale-if-error). A change the
//!   instance has seen (made through its cache, or told by NOTIFY) always wins: a
//!   record fetched before it never answers from the stale window.
//! - Refusals are logged at `DEBUG` and counted in
//!   [`REQUESTS_METRIC`](rejection::REQUESTS_METRIC). A JSON-body key source refuses a
//!   body that has not arrived in 10 s with 408.
//!
//! # Minimum supported Rust version
//!
//! 1.85 for the crate and its default features; the `sqlite` and `postgres` features
//! need 1.94, the MSRV of sqlx 0.9. Raising either is not a breaking change.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
pub mod auth;
mod authenticate;
pub mod budget;
pub mod client;
pub mod clock;
pub mod credentials;
mod error;
pub mod key;
pub mod manage;
pub mod management;

#[cfg(feature = "utoipa")]
#[cfg_attr(docsrs, doc(cfg(feature = "utoipa")))]
pub mod openapi;
pub mod parts;
mod pipeline;
pub mod prelude;
pub mod presets;
mod principal;
pub mod rate_limit;
pub mod rejection;
pub mod require_scopes;
pub mod scope;
pub mod store;
pub mod usage;

pub use self::auth::ApiKeyAuth;
pub use self::error::ConfigError;
pub use self::key::KeyFormat;
pub use self::manage::KeyManager;
pub use self::principal::Principal;
pub use self::rejection::RejectionKind;
pub use self::scope::{Grants, Requirement, ScopeModel};
#[cfg(feature = "postgres")]
pub use self::store::sql::PostgresStore;
#[cfg(feature = "sqlite")]
pub use self::store::sql::SqliteStore;
pub use self::store::{KeyRecord, KeyStore, ManagedKeyStore, MemoryStore, Owner};

// The README's examples use every feature (SQLite, PostgreSQL and Redis examples);
// they run under the README's test command, `cargo test --all-features`.
#[cfg(all(doctest, feature = "sqlite", feature = "postgres", feature = "redis"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
