use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

use super::audit_entry::{AuditEntry, AuditQuery, AuditSink};
use super::usage::{first_hour_from, hours_in, UsageBucket, UsageCounts};
use super::{Applied, Change, KeyRecord, KeyStore, ManagedKeyStore, Owner, Rotation, StoreError};
use crate::key::{tag_key_id, Digest, KeyError, KeyId, TagKey, TAG_KEY_IDS};

/// An in-memory [`KeyStore`] and [`AuditSink`], the embedded default. Clones share the
/// same keys and the same audit log.
///
/// Nothing survives a restart; use the SQL stores for that. The audit log grows
/// without bound: this store is for tests, demos and small deployments.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<RwLock<Maps>>,
}

#[derive(Debug, Default)]
struct Maps {
    by_id: HashMap<KeyId, KeyRecord>,
    by_digest: HashMap<[u8; 32], KeyId>,
    audit: Vec<AuditEntry>,
    /// Made on first use, so that building a store cannot fail.
    tag_keys: Vec<TagKey>,
    /// Usage by key and hour number.
    usage: BTreeMap<(KeyId, i64), UsageCounts>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tag secret, which tags the keys minted from now on; the older ones still
    /// verify the keys they tagged. Returns its id. (As the SQL stores'
    /// `rotate_tag_key`.)
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] once all 62 ids are in use, [`StoreError::Unavailable`]
    /// when the operating system's CSPRNG fails.
    pub fn rotate_tag_key(&self) -> Result<char, StoreError> {
        let mut maps = self.write();
        maps.ensure_tag_key()?;
        maps.add_tag_key()
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
        // A panic while holding the lock cannot leave the maps half-updated (nothing
        // below can panic between two writes of one change), so a poisoned lock is
        // still consistent.
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

impl Maps {
    fn ensure_tag_key(&mut self) -> Result<(), StoreError> {
        if self.tag_keys.is_empty() {
            self.add_tag_key()?;
        }
        Ok(())
    }

    fn add_tag_key(&mut self) -> Result<char, StoreError> {
        let generation = i64::try_from(self.tag_keys.len()).unwrap_or(i64::MAX) + 1;
        let id = tag_key_id(generation).ok_or_else(|| {
            StoreError::Corrupt(format!("all {TAG_KEY_IDS} tag secret ids are in use"))
        })?;
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|_| StoreError::unavailable(KeyError::Randomness))?;
        let key = TagKey::new(id, &secret).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.tag_keys.push(key);
        Ok(id)
    }

    /// Adds a key, or fails without changing anything.
    fn insert(&mut self, record: &KeyRecord) -> Result<(), StoreError> {
        self.check_free(record)?;
        self.by_digest.insert(*record.digest.as_bytes(), record.id);
        self.by_id.insert(record.id, record.clone());
        Ok(())
    }

    fn check_free(&self, record: &KeyRecord) -> Result<(), StoreError> {
        if self.by_id.contains_key(&record.id)
            || self.by_digest.contains_key(record.digest.as_bytes())
        {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    /// Makes the change if its acting key and its condition hold. Nothing is changed
    /// unless the result is `Ok(Applied::Done(_))`.
    fn apply(&mut self, change: Change<'_>) -> Result<Applied, StoreError> {
        if let Some(actor) = change.actor() {
            if !actor.holds(self.by_id.get(actor.id)) {
                return Ok(Applied::ActorChanged);
            }
        }
        match change {
            Change::Insert { record, .. } => {
                self.insert(record)?;
                Ok(Applied::Done(record.clone()))
            }
            Change::Update(record) => {
                let Some(stored) = self.by_id.get_mut(&record.id) else {
                    return Ok(Applied::NotFound);
                };
                stored.name.clone_from(&record.name);
                stored.scopes.clone_from(&record.scopes);
                stored.expires_at = record.expires_at;
                stored
                    .rate_limit_policy
                    .clone_from(&record.rate_limit_policy);
                stored.metadata.clone_from(&record.metadata);
                Ok(Applied::Done(stored.clone()))
            }
            Change::Revoke { id, at, scopes, .. } => {
                let Some(stored) = self.by_id.get_mut(id) else {
                    return Ok(Applied::NotFound);
                };
                if stored.revoked_at.is_some()
                    || scopes.is_some_and(|scopes| stored.scopes.as_slice() != scopes)
                {
                    return Ok(Applied::Refused(stored.clone()));
                }
                stored.revoked_at = Some(at);
                Ok(Applied::Done(stored.clone()))
            }
            Change::SetScopes { id, from, to, .. } => {
                let Some(stored) = self.by_id.get_mut(id) else {
                    return Ok(Applied::NotFound);
                };
                if stored.revoked_at.is_some() || stored.scopes.as_slice() != from {
                    return Ok(Applied::Refused(stored.clone()));
                }
                stored.scopes = to.to_vec();
                Ok(Applied::Done(stored.clone()))
            }
            Change::Rename { id, name, .. } => {
                let Some(stored) = self.by_id.get_mut(id) else {
                    return Ok(Applied::NotFound);
                };
                if stored.revoked_at.is_some() {
                    return Ok(Applied::Refused(stored.clone()));
                }
                name.clone_into(&mut stored.name);
                Ok(Applied::Done(stored.clone()))
            }
            Change::Rotate {
                id,
                successor,
                valid_until,
                at,
                ..
            } => {
                let Some(stored) = self.by_id.get(id) else {
                    return Ok(Applied::NotFound);
                };
                let rotatable = stored.revoked_at.is_none()
                    && stored.rotation.is_none()
                    && stored.expires_at.is_none_or(|t| t > at)
                    && stored.scopes == successor.scopes
                    && stored.expires_at == successor.expires_at;
                if !rotatable {
                    return Ok(Applied::Refused(stored.clone()));
                }
                // Both or neither: check the successor can be inserted before changing
                // anything.
                self.check_free(successor)?;
                let Some(stored) = self.by_id.get_mut(id) else {
                    return Ok(Applied::NotFound);
                };
                stored.rotation = Some(Rotation {
                    superseded_by: successor.id,
                    valid_until,
                });
                let done = stored.clone();
                self.insert(successor)?;
                Ok(Applied::Done(done))
            }
        }
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

    fn instance_id(&self) -> Option<usize> {
        Some(Arc::as_ptr(&self.inner) as *const () as usize)
    }

    /// One secret per store (shared by its clones), made on first use.
    async fn tag_keys(&self) -> Result<Vec<TagKey>, StoreError> {
        if let Some(keys) = Some(self.read().tag_keys.clone()).filter(|k| !k.is_empty()) {
            return Ok(keys);
        }
        let mut maps = self.write();
        maps.ensure_tag_key()?;
        Ok(maps.tag_keys.clone())
    }
}

impl ManagedKeyStore for MemoryStore {
    /// The acting key's check, the change and its audit entries under one write lock.
    async fn apply(&self, change: Change<'_>, audit: &[AuditEntry]) -> Result<Applied, StoreError> {
        let mut maps = self.write();
        let applied = maps.apply(change)?;
        if matches!(applied, Applied::Done(_)) {
            maps.append_audit(audit.iter().cloned());
        }
        Ok(applied)
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

    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let mut entries: Vec<AuditEntry> = self
            .read()
            .audit
            .iter()
            .filter(|e| query.matches(e))
            .cloned()
            .collect();
        // Newest first; entries of one instant in reverse order of writing.
        entries.sort_by(|a, b| b.occurred_at.cmp(&a.occurred_at).then(b.id.cmp(&a.id)));
        entries.truncate(query.limit() as usize);
        Ok(entries)
    }

    async fn add_usage(&self, batch: &[UsageBucket]) -> Result<(), StoreError> {
        let mut maps = self.write();
        for bucket in batch {
            maps.usage
                .entry((bucket.key_id, bucket.hour_number()))
                .or_default()
                .add(&bucket.counts);
        }
        Ok(())
    }

    async fn usage(
        &self,
        key: &KeyId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        let Some((from, to)) = hours_in(from, to) else {
            return Ok(Vec::new());
        };
        Ok(self
            .read()
            .usage
            .range((*key, from)..(*key, to))
            .map(|(&(id, hour), counts)| UsageBucket::at_hour(id, hour, *counts))
            .collect())
    }

    async fn prune_usage(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let before = first_hour_from(before);
        let mut maps = self.write();
        let len = maps.usage.len();
        maps.usage.retain(|&(_, hour), _| hour >= before);
        Ok((len - maps.usage.len()) as u64)
    }
}

impl Maps {
    fn append_audit(&mut self, entries: impl Iterator<Item = AuditEntry>) {
        for mut entry in entries {
            entry.id = self.audit.len() as u64 + 1;
            self.audit.push(entry);
        }
    }
}

/// Request entries go into the same log as the lifecycle entries, so
/// [`ManagedKeyStore::audit_log`] returns both.
impl AuditSink for MemoryStore {
    async fn write(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        self.write().append_audit(entries.into_iter());
        Ok(())
    }
}
