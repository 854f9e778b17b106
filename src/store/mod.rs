//! Key stores: the [`KeyStore`] trait, the in-memory [`MemoryStore`], the
//! [`CachedStore`] that sits in front of any store, and the write-behind [`LastUsed`]
//! buffer of a store's `last_used_at`. The durable SQLite and PostgreSQL stores are in
//! `sql` (features `sqlite` and `postgres`).
//!
//! ```
//! use tower_api_key::key::KeyFormat;
//! use tower_api_key::store::{CachedStore, KeyRecord, KeyStore, ManagedKeyStore, MemoryStore, Owner};
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
//! assert_eq!(found.name(), "BI dashboard");
//! # Ok(())
//! # }
//! ```

pub(crate) mod audit_entry;
mod cache;
mod cached_record;
mod keyring;
mod last_used;
mod memory;
mod page;
mod record;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub mod sql;
pub(crate) mod usage;
pub(crate) mod write_behind;

use std::future::Future;
use std::sync::Arc;

use time::OffsetDateTime;

use self::audit_entry::{AuditEntry, AuditQuery};
pub(crate) use self::cache::{CacheKey, Cached, Gated};
pub use self::cache::{
    CachedStore, CachedStoreBuilder, DEFAULT_LOOKUP_TIMEOUT, DEFAULT_MAX_LOOKUPS,
    DEFAULT_MAX_NEGATIVE_ENTRIES, DEFAULT_NEGATIVE_TTL, DEFAULT_STALE_IF_ERROR, DEFAULT_TTL,
    LOOKUPS_REFUSED_METRIC, STALE_ANSWERS_METRIC,
};
pub use self::cached_record::CachedRecord;
pub(crate) use self::cached_record::SlotKind;
pub(crate) use self::keyring::TagCheck;
pub use self::last_used::LastUsed;
pub use self::memory::MemoryStore;
pub use self::page::{KeyCursor, KeyPage, KeyQuery, KeyState, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub(crate) use self::record::KeyFacts;
pub use self::record::{KeyRecord, KeyStatus, Owner, Rotation};
pub use self::usage::{UsageBucket, UsageCounts, UsageOutcome};
use crate::key::{Digest, KeyId, TagKey};

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

/// A change to one key, made by [`ManagedKeyStore::apply`] atomically with the audit entries
/// that record it.
///
/// Each change states the condition under which it applies, and the store checks that
/// condition and makes the change in one step (a conditional `UPDATE` in one
/// transaction on the SQL stores, under the lock in [`MemoryStore`]), so two callers
/// racing on one key can never both succeed, and the store, not the caller, decides
/// what happened.
///
/// A change made by a key carries that key as it was judged ([`ActingKey`]): the
/// store checks it in the same step, before the change's own condition, and answers
/// [`Applied::ActorChanged`] when it no longer holds, so authority is decided on the
/// state the change is applied to.
///
/// New kinds of change may be added: match with a wildcard arm.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Change<'a> {
    /// Adds a key. [`StoreError::Conflict`] when its id or digest is taken.
    Insert {
        /// The key to add.
        record: &'a KeyRecord,
        /// The key that makes it, if a key does.
        actor: Option<ActingKey<'a>>,
    },
    /// Replaces the editable fields of the key `record.id`: name, scopes, expiry,
    /// rate-limit policy and metadata. Revocation, rotation and last-used are left as
    /// stored. Applies to any existing key. Made by the system only (imports, tests):
    /// it has no acting key.
    Update(&'a KeyRecord),
    /// Revokes the key at `at`, if it is not revoked yet and, when `scopes` is given,
    /// its scopes are still exactly those. Revocation is irreversible.
    Revoke {
        /// The key.
        id: &'a KeyId,
        /// The revocation time.
        at: OffsetDateTime,
        /// The key's scopes as the caller saw and judged them, if it judged any: a key
        /// whose scopes changed since is not revoked ([`Applied::Refused`]).
        scopes: Option<&'a [String]>,
        /// The key that revokes it, if a key does.
        actor: Option<ActingKey<'a>>,
    },
    /// Replaces the key's scopes with `to`, if they are still exactly `from` and the
    /// key is not revoked (a compare-and-set: a concurrent change of the scopes makes
    /// this one fail instead of being overwritten).
    SetScopes {
        /// The key.
        id: &'a KeyId,
        /// The scopes the caller saw and checked.
        from: &'a [String],
        /// The new scopes.
        to: &'a [String],
        /// The key that changes them, if a key does.
        actor: Option<ActingKey<'a>>,
    },
    /// Renames the key, if it is not revoked. A name is only a label: the change has
    /// no other condition.
    Rename {
        /// The key.
        id: &'a KeyId,
        /// The new name.
        name: &'a str,
        /// The key that renames it, if a key does.
        actor: Option<ActingKey<'a>>,
    },
    /// Rotates the key: marks it superseded by `successor` until `valid_until` and
    /// inserts `successor`, both or neither. Applies only while the key is neither
    /// revoked nor superseded, has not expired at `at`, and still has the successor's
    /// scopes and expiry (so the successor never revives scopes or time taken away
    /// meanwhile).
    Rotate {
        /// The key to supersede.
        id: &'a KeyId,
        /// Its successor, to insert.
        successor: &'a KeyRecord,
        /// The end of the old key's grace period.
        valid_until: OffsetDateTime,
        /// The time the expiry is judged at.
        at: OffsetDateTime,
        /// The key that rotates it, if a key does.
        actor: Option<ActingKey<'a>>,
    },
}

impl<'a> Change<'a> {
    /// The key the change is about (for an insert, the new key).
    pub fn id(&self) -> &'a KeyId {
        match *self {
            Self::Insert { record, .. } | Self::Update(record) => &record.id,
            Self::Revoke { id, .. }
            | Self::SetScopes { id, .. }
            | Self::Rename { id, .. }
            | Self::Rotate { id, .. } => id,
        }
    }

    /// The key that makes the change, as it was judged; `None` for the system.
    pub fn actor(&self) -> Option<&ActingKey<'a>> {
        match self {
            Self::Insert { actor, .. }
            | Self::Revoke { actor, .. }
            | Self::SetScopes { actor, .. }
            | Self::Rename { actor, .. }
            | Self::Rotate { actor, .. } => actor.as_ref(),
            Self::Update(_) => None,
        }
    }
}

/// The key making a [`Change`], as [`KeyManager`](crate::manage::KeyManager) judged its
/// authority: a compare-and-set condition on the acting key.
///
/// The store reads the acting key's row inside the change's atomic step (locked
/// `FOR UPDATE` on PostgreSQL, under `BEGIN IMMEDIATE` on SQLite, under the lock in
/// [`MemoryStore`]) and makes the change only if [`ActingKey::holds`] for it; otherwise
/// it answers [`Applied::ActorChanged`] and changes nothing. So a revocation,
/// rotation, scope change or expiry of the acting key between the manager's check and
/// the write cannot slip through.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ActingKey<'a> {
    /// The acting key's id.
    pub id: &'a KeyId,
    /// Its scopes, as judged.
    pub scopes: &'a [String],
    /// Its expiry, as judged.
    pub expires_at: Option<OffsetDateTime>,
    /// The time of the change, at which the acting key must not have expired.
    pub at: OffsetDateTime,
}

impl<'a> ActingKey<'a> {
    /// The key `record`, as judged, making a change at `at`.
    pub fn new(record: &'a KeyRecord, at: OffsetDateTime) -> Self {
        Self {
            id: &record.id,
            scopes: &record.scopes,
            expires_at: record.expires_at,
            at,
        }
    }

    /// Whether the acting key, as stored now (`None`: gone), still stands as it was
    /// judged: neither revoked nor rotated away (not even within a grace period), with
    /// exactly the judged scopes and expiry, and not expired at the change's time.
    /// Every store decides with this one function.
    pub fn holds(&self, stored: Option<&KeyRecord>) -> bool {
        stored.is_some_and(|stored| {
            stored.id == *self.id
                && stored.revoked_at.is_none()
                && stored.rotation.is_none()
                && stored.scopes.as_slice() == self.scopes
                && stored.expires_at == self.expires_at
                && stored.expires_at.is_none_or(|t| t > self.at)
        })
    }
}

/// What [`ManagedKeyStore::apply`] did.
///
/// New outcomes may be added: match with a wildcard arm.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
#[non_exhaustive]
pub enum Applied {
    /// The change was made, and its audit entries written. The key's record as stored
    /// afterwards (for a rotation, the superseded key's).
    Done(KeyRecord),
    /// The key exists but the change's condition did not hold (already revoked; revoked,
    /// superseded, expired or changed, for a rotation or a scope change). Nothing was
    /// changed or audited. The record as it stands.
    Refused(KeyRecord),
    /// No key has this id. Nothing was changed or audited.
    NotFound,
    /// The change's [`ActingKey`] no longer holds: the acting key was revoked, rotated,
    /// re-scoped, re-dated or has expired (or is gone) since it was judged. Checked
    /// before the change's own condition. Nothing was changed or audited.
    ActorChanged,
}

/// Where the request path finds keys: by public id, and by digest for imported keys.
///
/// This is all the authentication layer needs, so a store over an existing database of
/// your own can be read-only (`examples/users_store.rs` reads an application's own users table in 32 lines of code). What
/// [`KeyManager`](crate::manage::KeyManager) needs to create, rotate and revoke keys is
/// [`ManagedKeyStore`].
///
/// Implementations must be cheap to clone (share state behind an `Arc`). Every method
/// may fail with [`StoreError`] (the layer answers 503, never 401); none of them ever
/// sees a full key, only digests.
pub trait KeyStore: Clone + Send + Sync + 'static {
    /// Finds a key by its public id.
    fn get(&self, id: &KeyId)
        -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// Finds a key by its digest (imported keys are looked up this way). `None` unless
    /// implemented: a store of native keys only.
    fn get_by_digest(
        &self,
        digest: &Digest,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send {
        let _ = digest;
        async { Ok(None) }
    }

    /// The secrets that tag native keys ([`TagKey`]), oldest first: the last one tags
    /// new keys, and every one verifies the keys it tagged. Read when the cache first
    /// needs them and again when a key names a secret it does not have yet; never per
    /// request.
    ///
    /// Empty unless implemented: a store without its own secrets gets one from
    /// [`CachedStoreBuilder::with_tag_key`], or its keys go untagged (each new key
    /// then costs a lookup, charged to the [unknown-key budget](crate::budget)). The
    /// SQL stores keep them in a table that `migrate()` creates; [`MemoryStore`] makes
    /// one per store.
    fn tag_keys(&self) -> impl Future<Output = Result<Vec<TagKey>, StoreError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// A value that clones of this store share and no other live store has (the
    /// address of shared state), so that building a second front door over a clone of
    /// one store can be refused: two caches over one store let a key revoked through
    /// one live on in the other, and split every rate limit. `None` (the default) when
    /// the store cannot tell; `MemoryStore` and the SQL stores (per table prefix) can.
    fn instance_id(&self) -> Option<usize> {
        None
    }
}

/// A [`KeyStore`] that keys can be managed in: what
/// [`KeyManager`](crate::manage::KeyManager), the last-used buffer and the audit log
/// need.
///
/// # Writing a store
///
/// Every change goes through [`ManagedKeyStore::apply`], which must
///
/// - check the [`Change`]'s condition and make the change in one atomic step, so that
///   of several concurrent rotations of one key exactly one is [`Applied::Done`];
/// - in that same step, first read the acting key ([`Change::actor`]), so that it
///   cannot change before the step ends, and answer [`Applied::ActorChanged`] unless
///   [`ActingKey::holds`] for it;
/// - write the given audit entries durably **in the same atomic step**, and only when
///   the change is made: an entry without its change, or a change without its entry,
///   must be impossible. When the entries cannot be written, fail and change nothing.
///
/// The shared conformance suite in this crate's `tests/sql_stores.rs` and
/// `tests/key_lifecycle.rs` shows what is expected; run it against a new store.
pub trait ManagedKeyStore: KeyStore {
    /// Makes `change` and writes `audit` with it, atomically, if its acting key still
    /// holds and the change's condition holds (see [`Change`]); otherwise changes and
    /// writes nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] for an [`Change::Insert`] whose id or digest is taken
    /// (or a rotation's successor whose is), or the backend's failure. On error nothing
    /// was changed or written.
    fn apply(
        &self,
        change: Change<'_>,
        audit: &[AuditEntry],
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;

    /// All keys of one owner, newest first, revoked ones included.
    fn list_by_owner(
        &self,
        owner: &Owner,
    ) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send;

    /// One page of one owner's keys: those [`KeyQuery`] selects, newest first (by
    /// creation time, then id, descending), at most its limit, after its cursor, with
    /// the cursor of the next page ([`KeyQuery::page_of`]).
    ///
    /// Provided: reads [`list_by_owner`](Self::list_by_owner) and pages it in memory,
    /// so each page costs a read of all the owner's keys. A store with many keys per
    /// owner may override it with a keyset query on `(created_at, id)`, answering
    /// exactly what the provided method answers.
    ///
    /// # Errors
    ///
    /// The store's error.
    fn list_page(
        &self,
        query: &KeyQuery,
    ) -> impl Future<Output = Result<KeyPage, StoreError>> + Send {
        async move {
            let keys = self.list_by_owner(query.owner()).await?;
            Ok(query.page_of(keys))
        }
    }

    /// Records last-used times for a batch of keys. A time never moves backwards;
    /// unknown ids are ignored.
    fn touch_last_used(
        &self,
        batch: &[(KeyId, OffsetDateTime)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The audit entries the query selects, newest first: the lifecycle entries
    /// written by [`ManagedKeyStore::apply`], and request entries when this store is also the
    /// [`AuditSink`](crate::audit::AuditSink) they are written to.
    fn audit_log(
        &self,
        query: &AuditQuery,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;

    /// Adds each bucket's counts to the stored bucket of the same key and hour, making
    /// it if there is none: counts are only ever added, so two instances flushing the
    /// same key and hour both count. Keys are not checked (a deleted key's counts are
    /// kept until the retention drops them). The batch holds each key and hour at most
    /// once. Written by the front door's usage counters.
    fn add_usage(
        &self,
        batch: &[UsageBucket],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The buckets of `key` whose hour starts at or after `from` and before `to`,
    /// oldest first.
    fn usage(
        &self,
        key: &KeyId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> impl Future<Output = Result<Vec<UsageBucket>, StoreError>> + Send;

    /// Drops every bucket whose hour starts before `before`; returns how many.
    fn prune_usage(
        &self,
        before: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Adds a key without an audit entry: [`ManagedKeyStore::apply`] with
    /// [`Change::Insert`], without an acting key. For imports and tests; [`KeyManager::create`](crate::manage::KeyManager::create)
    /// audits.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when the id or digest is taken.
    fn insert(&self, record: &KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            let change = Change::Insert {
                record,
                actor: None,
            };
            self.apply(change, &[]).await.map(drop)
        }
    }

    /// Replaces a key's editable fields ([`Change::Update`]), without an audit entry.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] for an unknown id.
    fn update(&self, record: &KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            match self.apply(Change::Update(record), &[]).await? {
                Applied::NotFound => Err(StoreError::NotFound),
                Applied::Done(_) | Applied::Refused(_) => Ok(()),
                // No acting key: a store answering this is broken.
                Applied::ActorChanged => Err(StoreError::Conflict),
            }
        }
    }

    /// Revokes a key at `at` ([`Change::Revoke`]) without an audit entry. Idempotent:
    /// an already revoked key keeps its first revocation time. Returns the record as
    /// stored afterwards, or `None` for an unknown id.
    fn revoke(
        &self,
        id: &KeyId,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send {
        async move {
            let change = Change::Revoke {
                id,
                at,
                scopes: None,
                actor: None,
            };
            Ok(match self.apply(change, &[]).await? {
                Applied::Done(record) | Applied::Refused(record) => Some(record),
                Applied::NotFound => None,
                // No acting key: a store answering this is broken.
                Applied::ActorChanged => return Err(StoreError::Conflict),
            })
        }
    }
}
