use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

use super::{KeyRecord, KeyStore, Owner, Rotation, StoreError};
use crate::key::{Digest, KeyId};

/// An in-memory [`KeyStore`], the embedded default. Clones share the same keys.
///
/// Nothing survives a restart; use the SQL stores for that.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<RwLock<Maps>>,
}

#[derive(Debug, Default)]
struct Maps {
    by_id: HashMap<KeyId, KeyRecord>,
    by_digest: HashMap<[u8; 32], KeyId>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// `true` when the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        // A panic while holding the lock cannot leave the maps half-updated (every
        // write below is a single insert), so a poisoned lock is still consistent.
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Maps> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl KeyStore for MemoryStore {
    async fn get(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.read().by_id.get(id).cloned())
    }

    async fn get_by_digest(&self, digest: &Digest) -> Result<Option<KeyRecord>, StoreError> {
        let maps = self.read();
        Ok(maps
            .by_digest
            .get(digest.as_bytes())
            .and_then(|id| maps.by_id.get(id))
            .filter(|r| r.digest.ct_eq(digest))
            .cloned())
    }

    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let mut maps = self.write();
        if maps.by_id.contains_key(&record.id)
            || maps.by_digest.contains_key(record.digest.as_bytes())
        {
            return Err(StoreError::Conflict);
        }
        maps.by_digest.insert(*record.digest.as_bytes(), record.id);
        maps.by_id.insert(record.id, record.clone());
        Ok(())
    }

    async fn update(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let mut maps = self.write();
        let stored = maps.by_id.get_mut(&record.id).ok_or(StoreError::NotFound)?;
        stored.name.clone_from(&record.name);
        stored.scopes.clone_from(&record.scopes);
        stored.expires_at = record.expires_at;
        stored
            .rate_limit_policy
            .clone_from(&record.rate_limit_policy);
        stored.metadata.clone_from(&record.metadata);
        Ok(())
    }

    async fn revoke(
        &self,
        id: &KeyId,
        at: OffsetDateTime,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let mut maps = self.write();
        Ok(maps.by_id.get_mut(id).map(|stored| {
            stored.revoked_at.get_or_insert(at);
            stored.clone()
        }))
    }

    async fn supersede(
        &self,
        id: &KeyId,
        successor: &KeyId,
        valid_until: OffsetDateTime,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let mut maps = self.write();
        let Some(stored) = maps.by_id.get_mut(id) else {
            return Ok(None);
        };
        if stored.revoked_at.is_some() {
            return Err(StoreError::Conflict);
        }
        stored.rotation = Some(Rotation {
            superseded_by: *successor,
            valid_until,
        });
        Ok(Some(stored.clone()))
    }

    async fn list_by_owner(&self, owner: &Owner) -> Result<Vec<KeyRecord>, StoreError> {
        let mut keys: Vec<KeyRecord> = self
            .read()
            .by_id
            .values()
            .filter(|r| &r.owner == owner)
            .cloned()
            .collect();
        keys.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(keys)
    }

    async fn touch_last_used(&self, batch: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        let mut maps = self.write();
        for (id, at) in batch {
            if let Some(stored) = maps.by_id.get_mut(id) {
                if stored.last_used_at.is_none_or(|t| t < *at) {
                    stored.last_used_at = Some(*at);
                }
            }
        }
        Ok(())
    }
}
