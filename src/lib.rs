//! API-key authentication for [tower] and [axum].
//!
//! Keys are taken from `Authorization: Bearer`, `X-API-Key` or a JSON body's
//! `api_key`, resolved through a bounded, single-flight cache in front of a pluggable
//! key store, checked against per-route scopes, and refused with the documented
//! 401/403/429 bodies.
//!
//! The building blocks so far:
//!
//! - [`key`]: the key format (`pb_live_…`), generation from the OS CSPRNG, the CRC32
//!   checksum that refuses typos before any lookup, and SHA-256 digests.
//! - [`store`]: the [`KeyStore`] trait, the in-memory
//!   [`MemoryStore`](store::MemoryStore) and the [`CachedStore`](store::CachedStore).
//! - [`Authenticator`]: a presented key in, a [`Principal`] or an [`Outcome`] out.
//!
//! # Features
//!
//! | feature | adds |
//! |---|---|
//! | `sqlite` | `store::sql::SqliteStore`: a durable key store and audit sink in a SQLite file (bundled SQLite, through sqlx) |
//! | `postgres` | `store::sql::PostgresStore`: a key store and audit sink shared by every instance, with LISTEN/NOTIFY cache invalidation |
//!
//! No feature is on by default, and nothing SQL is compiled without one.
//!
//! # Security and deployment
//!
//! - Only SHA-256 digests of keys are stored; comparisons are constant-time.
//! - `Debug` and `Display` of every type that holds a key show only its public
//!   prefix and id.
//! - A store outage is [`Outcome::StoreUnavailable`] (503), never a 401 and never a
//!   pass.
//! - Revocation is seen by the next request on the instance that made it; other
//!   instances see it within the cache TTL (30 s by default) unless they are told
//!   through [`CachedStore::invalidate`](store::CachedStore::invalidate). With the
//!   PostgreSQL store and its invalidation listener, they see it within a second while
//!   the listener is connected.
//!
//! # Minimum supported Rust version
//!
//! 1.94 (the MSRV of sqlx 0.9, which the SQL stores use). Raising it is not a breaking
//! change.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
mod authenticate;
pub mod clock;
pub mod credentials;
mod error;
pub mod key;
pub mod layer;
pub mod manage;
mod outcome;
mod principal;
pub mod rejection;
pub mod store;

pub use self::authenticate::Authenticator;
pub use self::error::ConfigError;
pub use self::layer::{ApiKeyLayer, ApiKeyService};
pub use self::outcome::Outcome;
pub use self::principal::Principal;
pub use self::store::{KeyRecord, KeyStore, Owner};
