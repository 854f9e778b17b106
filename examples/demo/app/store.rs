//! The demo's key store, which also keeps the audit log, chosen by `--database`.

use time::OffsetDateTime;
use tower_api_key::audit::{AuditEntry, AuditQuery, AuditSink};
use tower_api_key::key::{Digest, KeyId, TagKey};
use tower_api_key::store::{
    Applied, Change, KeyPage, KeyQuery, KeyRecord, KeyStore, ManagedKeyStore, MemoryStore, Owner,
    StoreError, UsageBucket,
};

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
    async fn tag_keys(&self) -> Result<Vec<TagKey>, StoreError> {
        each!(self, s => s.tag_keys().await)
    }
    fn instance_id(&self) -> Option<usize> {
        each!(self, s => s.instance_id())
    }
}

impl ManagedKeyStore for DemoStore {
    async fn apply(&self, change: Change<'_>, audit: &[AuditEntry]) -> Result<Applied, StoreError> {
        each!(self, s => s.apply(change, audit).await)
    }
    async fn list_by_owner(&self, owner: &Owner) -> Result<Vec<KeyRecord>, StoreError> {
        each!(self, s => s.list_by_owner(owner).await)
    }
    async fn touch_last_used(&self, batch: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        each!(self, s => s.touch_last_used(batch).await)
    }
    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        each!(self, s => s.audit_log(query).await)
    }
    async fn list_page(&self, query: &KeyQuery) -> Result<KeyPage, StoreError> {
        each!(self, s => s.list_page(query).await)
    }
    async fn add_usage(&self, batch: &[UsageBucket]) -> Result<(), StoreError> {
        each!(self, s => s.add_usage(batch).await)
    }
    async fn usage(
        &self,
        key: &KeyId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        each!(self, s => s.usage(key, from, to).await)
    }
    async fn prune_usage(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        each!(self, s => s.prune_usage(before).await)
    }
}

/// Request entries go to the same store as the keys and their lifecycle entries.
impl AuditSink for DemoStore {
    async fn write(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        each!(self, s => s.write(entries).await)
    }
}
