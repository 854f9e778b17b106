//! The tag secrets one [`CachedStore`](super::CachedStore) holds: read from the store
//! when first needed, again when a key names a secret not held yet (at most once per
//! [`RELOAD_INTERVAL`]), never per request.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use super::{KeyStore, StoreError};
use crate::key::{KeyTag, TagKey};

/// The shortest time between two reloads caused by keys naming an unknown secret, so a
/// flood of such keys costs at most one store read per interval.
pub(crate) const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// After a failed read, how long keys are checked as untagged before the next try (and
/// the next log line).
const RETRY_AFTER_FAILURE_NANOS: i128 = 10_000_000_000;

/// What a presented key's tag says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TagCheck {
    /// Made by one of the secrets: the key was minted here, so a lookup is justified.
    Valid,
    /// No secret made it: the key was never minted here, and no lookup is made.
    Forged,
    /// The secrets could not be read, or there are none: decided as for an untagged key.
    Unverifiable,
}

pub(crate) struct Keyring {
    /// A secret from the builder, which replaces the store's.
    configured: Option<TagKey>,
    loaded: RwLock<Option<Loaded>>,
    /// Serializes reloads, so concurrent misses cause one read.
    reloading: tokio::sync::Mutex<()>,
    /// When a read last failed (nanoseconds since the Unix epoch), or `i64::MIN`.
    failed_at: AtomicI64,
}

#[derive(Clone)]
struct Loaded {
    keys: Arc<[TagKey]>,
    /// When they were read, in nanoseconds since the Unix epoch.
    at: i128,
}

impl Keyring {
    pub(crate) fn new(configured: Option<TagKey>) -> Self {
        Self {
            configured,
            loaded: RwLock::new(None),
            reloading: tokio::sync::Mutex::new(()),
            failed_at: AtomicI64::new(i64::MIN),
        }
    }

    fn current(&self) -> Option<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The secrets, read from `store` if they have not been yet.
    pub(crate) async fn keys<S: KeyStore>(
        &self,
        store: &S,
        now: i128,
    ) -> Result<Arc<[TagKey]>, StoreError> {
        match self.current() {
            Some(loaded) => Ok(loaded.keys),
            None => self.reload(store, now, None).await,
        }
    }

    /// Reads the secrets again, unless another reload finished after `seen` (the load
    /// time the caller saw).
    pub(crate) async fn reload<S: KeyStore>(
        &self,
        store: &S,
        now: i128,
        seen: Option<i128>,
    ) -> Result<Arc<[TagKey]>, StoreError> {
        let _one_at_a_time = self.reloading.lock().await;
        if let Some(loaded) = self.current() {
            if seen.is_none_or(|seen| loaded.at > seen) {
                return Ok(loaded.keys);
            }
        }
        let keys: Arc<[TagKey]> = match &self.configured {
            Some(key) => Arc::from(vec![key.clone()]),
            None => match store.tag_keys().await {
                Ok(keys) => keys.into(),
                Err(error) => {
                    self.failed(&error, now);
                    return Err(error);
                }
            },
        };
        *self.loaded.write().unwrap_or_else(PoisonError::into_inner) = Some(Loaded {
            keys: Arc::clone(&keys),
            at: now,
        });
        Ok(keys)
    }

    /// Logs a failed read (the request path then decides as for an untagged key).
    fn failed(&self, error: &StoreError, now: i128) {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        self.failed_at.store(now, Ordering::Relaxed);
        match error {
            StoreError::Corrupt(_) => tracing::error!(
                target: "tower_api_key",
                %error,
                "the key store's tag secrets cannot be read, so tagged keys are checked as \
                 untagged ones and new keys cannot be minted: if its tables are older than this \
                 release, run migrate() at start-up"
            ),
            _ => tracing::warn!(
                target: "tower_api_key",
                %error,
                "the key store's tag secrets cannot be read now; tagged keys are checked as \
                 untagged ones until they can"
            ),
        }
    }

    /// Whether a read failed less than the retry interval before `now`.
    fn failed_lately(&self, now: i128) -> bool {
        let at = self.failed_at.load(Ordering::Relaxed);
        at != i64::MIN && now - i128::from(at) < RETRY_AFTER_FAILURE_NANOS
    }

    /// Checks a presented key's tag.
    pub(crate) async fn check<S: KeyStore>(&self, store: &S, tag: &KeyTag, now: i128) -> TagCheck {
        let (keys, at) = match self.current() {
            Some(loaded) => (loaded.keys, loaded.at),
            None if self.failed_lately(now) => return TagCheck::Unverifiable,
            None => match self.reload(store, now, None).await {
                Ok(keys) => (keys, now),
                Err(_) => return TagCheck::Unverifiable,
            },
        };
        if keys.is_empty() {
            return TagCheck::Unverifiable;
        }
        if let Some(key) = keys.iter().find(|k| k.id() == tag.secret_id()) {
            return verdict(tag, key);
        }
        // A secret this instance has not read yet (added by a rotation elsewhere), or a
        // forged id: read again, at most once per interval.
        let interval = i128::try_from(RELOAD_INTERVAL.as_nanos()).unwrap_or(i128::MAX);
        if self.failed_lately(now) {
            // The store could not say lately: never a 401 for our own outage.
            return TagCheck::Unverifiable;
        }
        if now - at < interval {
            return TagCheck::Forged;
        }
        match self.reload(store, now, Some(at)).await {
            Ok(keys) => keys
                .iter()
                .find(|k| k.id() == tag.secret_id())
                .map_or(TagCheck::Forged, |key| verdict(tag, key)),
            Err(_) => TagCheck::Unverifiable,
        }
    }
}

fn verdict(tag: &KeyTag, key: &TagKey) -> TagCheck {
    if tag.verifies(key) {
        TagCheck::Valid
    } else {
        TagCheck::Forged
    }
}
