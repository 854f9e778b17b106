//! The demo's key store and audit log, chosen by `--database`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use time::OffsetDateTime;
use tower_api_key::audit::{AuditEntry, Auditor, MemorySink};
use tower_api_key::key::{Digest, KeyId};
use tower_api_key::store::{KeyRecord, KeyStore, MemoryStore, Owner, StoreError};

use super::errors::ApiError;

/// One of the key stores, picked at run time.
#[derive(Debug, Clone)]
pub enum DemoStore {
    Memory(MemoryStore),
    #[cfg(feature = "sqlite")]
    Sqlite(tower_api_key::store::sql::SqliteStore),
    #[cfg(feature = "postgres")]
    Postgres(tower_api_key::store::sql::PostgresStore),
}

macro_rules! each {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            DemoStore::Memory($store) => $call,
            #[cfg(feature = "sqlite")]
            DemoStore::Sqlite($store) => $call,
            #[cfg(feature = "postgres")]
            DemoStore::Postgres($store) => $call,
        }
    };
}

impl KeyStore for DemoStore {
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        each!(self, s => s.get(id).await)
    }
    async fn get_by_digest(&self, digest: &Digest) -> Result<Option<KeyRecord>, StoreError> {
        each!(self, s => s.get_by_digest(digest).await)
    }
    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        each!(self, s => s.insert(record).await)
    }
    async fn update(&self, record: &KeyRecord) -> Result<(), StoreError> {
        each!(self, s => s.update(record).await)
    }
    async fn revoke(
        &self,
        id: &KeyId,
        at: OffsetDateTime,
    ) -> Result<Option<KeyRecord>, StoreError> {
        each!(self, s => s.revoke(id, at).await)
    }
    async fn supersede(
        &self,
        id: &KeyId,
        successor: &KeyId,
        valid_until: OffsetDateTime,
    ) -> Result<Option<KeyRecord>, StoreError> {
        each!(self, s => s.supersede(id, successor, valid_until).await)
    }
    async fn list_by_owner(&self, owner: &Owner) -> Result<Vec<KeyRecord>, StoreError> {
        each!(self, s => s.list_by_owner(owner).await)
    }
    async fn touch_last_used(&self, batch: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        each!(self, s => s.touch_last_used(batch).await)
    }
}

type QueryFuture = Pin<Box<dyn Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send>>;
type Reader = Arc<dyn Fn(Owner, Option<KeyId>) -> QueryFuture + Send + Sync>;

/// Reads the audit log back, after making sure what was queued is written.
#[derive(Clone)]
pub struct AuditLog {
    auditor: Auditor,
    reader: Reader,
}

impl AuditLog {
    /// An audit log kept in memory.
    pub fn memory(sink: MemorySink, auditor: Auditor) -> Self {
        let reader: Reader = Arc::new(move |owner, key| {
            let sink = sink.clone();
            Box::pin(async move { Ok(sink.query(&owner, key.as_ref())) })
        });
        Self { auditor, reader }
    }

    /// An audit log in the SQL store's audit table (the newest 1,000 entries).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub fn sql<K>(store: K, auditor: Auditor) -> Self
    where
        K: SqlAudit,
    {
        let reader: Reader = Arc::new(move |owner, key| {
            let store = store.clone();
            Box::pin(async move { store.query(&owner, key.as_ref()).await })
        });
        Self { auditor, reader }
    }

    /// Entries of `owner`, newest first, optionally about one key.
    pub async fn query(
        &self,
        owner: &Owner,
        key: Option<&KeyId>,
    ) -> Result<Vec<AuditEntry>, ApiError> {
        self.auditor.flush().await;
        (self.reader)(owner.clone(), key.copied())
            .await
            .map_err(|_| ApiError::unavailable())
    }
}

/// The SQL stores' audit query, under one name.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub trait SqlAudit: Clone + Send + Sync + 'static {
    fn query(
        &self,
        owner: &Owner,
        key: Option<&KeyId>,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;
}

#[cfg(feature = "sqlite")]
impl SqlAudit for tower_api_key::store::sql::SqliteStore {
    async fn query(
        &self,
        owner: &Owner,
        key: Option<&KeyId>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.query_audit(owner, key, 1000).await
    }
}

#[cfg(feature = "postgres")]
impl SqlAudit for tower_api_key::store::sql::PostgresStore {
    async fn query(
        &self,
        owner: &Owner,
        key: Option<&KeyId>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.query_audit(owner, key, 1000).await
    }
}
