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
}

macro_rules! each {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            DemoStore::Memory($store) => $call,
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
