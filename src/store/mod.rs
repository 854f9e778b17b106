//! Key stores: the [`KeyStore`] trait, the in-memory [`MemoryStore`], and the
//! [`CachedStore`] that sits in front of any store. The durable SQLite and PostgreSQL
//! stores are in `sql` (features `sqlite` and `postgres`).
//!
//! ```
//! use tower_api_key::key::KeyFormat;
//! use tower_api_key::store::{CachedStore, KeyRecord, KeyStore, MemoryStore, Owner};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let format = KeyFormat::new("pb")?.with_environments(["live", "test"])?;
//! let minted = format.generate(Some("live"))?;
//! let store = CachedStore::builder(MemoryStore::new()).build()?;
//! let record = KeyRecord::new(
//!     &minted,
//!     "BI dashboard",
//!     Owner::organization("acme"),
//!     vec!["employees:read".into()],
//!     time::OffsetDateTime::now_utc(),
//! );
//! store.insert(&record).await?;
//! let found = store.lookup_id(&minted.id).await?.expect("just inserted");
//! assert_eq!(found.name, "BI dashboard");
//! # Ok(())
//! # }
//! ```

mod cache;
mod memory;
mod record;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub mod sql;

use std::future::Future;
use std::sync::Arc;

use time::OffsetDateTime;

pub(crate) use self::cache::{CacheKey, Cached, Gated};
pub use self::cache::{
    CachedRecord, CachedStore, CachedStoreBuilder, DEFAULT_LOOKUP_TIMEOUT, DEFAULT_MAX_LOOKUPS,
    DEFAULT_MAX_NEGATIVE_ENTRIES, DEFAULT_NEGATIVE_TTL, DEFAULT_STALE_IF_ERROR, DEFAULT_TTL,
    LOOKUPS_REFUSED_METRIC, STALE_ANSWERS_METRIC,
};
pub use self::memory::MemoryStore;
pub use self::record::{KeyRecord, KeyStatus, Owner, Rotation};
use crate::key::{Digest, KeyId};

/// A failure of the key store.
///
/// The layer answers [`StoreError::Unavailable`] with 503 and `Retry-After`: an outage
/// is never reported as a bad key (401) and never lets a request through.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not answer (connection refused, timeout, pool exhausted).
    #[error("key store unavailable: {0}")]
    Unavailable(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// A key with the same id or digest already exists.
    #[error("a key with this id or digest already exists")]
    Conflict,
    /// The key does not exist.
    #[error("no such key")]
    NotFound,
    /// The stored data could not be read back (a corrupt row, a schema mismatch).
    #[error("key store data is invalid: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Wraps a backend error as [`StoreError::Unavailable`].
    pub fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Arc::new(error))
    }
}

/// A place keys are kept.
///
/// Implementations must be cheap to clone (share state behind an `Arc`). Every
/// method may fail with [`StoreError`]; none of them ever sees a full key, only
/// digests.
///
/// Mutations are narrow on purpose: [`KeyStore::revoke`], [`KeyStore::supersede`] and
/// [`KeyStore::touch_last_used`] change one field each, atomically, so a concurrent
/// [`KeyStore::update`] of a key's name or scopes can never undo a revocation.
pub trait KeyStore: Clone + Send + Sync + 'static {
    /// Finds a key by its public id.
    fn get(&self, id: &KeyId)
        -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// Finds a key by its digest (imported keys are looked up this way).
    fn get_by_digest(
        &self,
        digest: &Digest,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// Adds a key. Fails with [`StoreError::Conflict`] when the id or digest is taken.
    fn insert(&self, record: &KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Replaces a key's editable fields: name, scopes, expiry, rate-limit policy and
    /// metadata. Revocation, rotation and last-used are left as stored. Fails with
    /// [`StoreError::NotFound`] for an unknown id.
    fn update(&self, record: &KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Revokes a key at `at`. Idempotent: an already revoked key keeps its first
    /// revocation time. Returns the record as stored afterwards, or `None` for an
    /// unknown id.
    fn revoke(
        &self,
        id: &KeyId,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// Marks a key as superseded by `successor`, valid until `valid_until`. Fails with
    /// [`StoreError::Conflict`] when the key is revoked, so a rotation can never revive
    /// a revoked key. Returns the record as stored afterwards, or `None` for an
    /// unknown id.
    fn supersede(
        &self,
        id: &KeyId,
        successor: &KeyId,
        valid_until: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// All keys of one owner, newest first, revoked ones included.
    fn list_by_owner(
        &self,
        owner: &Owner,
    ) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send;

    /// Records last-used times for a batch of keys. A time never moves backwards;
    /// unknown ids are ignored.
    fn touch_last_used(
        &self,
        batch: &[(KeyId, OffsetDateTime)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
