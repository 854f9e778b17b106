use std::fmt;
use std::time::Duration;

use time::OffsetDateTime;

use crate::audit::{AuditAction, AuditEntry, Auditor};
use crate::key::{ApiKey, KeyFormat, KeyId};
use crate::principal::Principal;
use crate::scope::ScopeModel;
use crate::store::{CachedStore, KeyRecord, KeyStore, Owner, StoreError};

/// The longest key name accepted, in characters.
pub const MAX_NAME_LEN: usize = 100;

/// When a new key expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expiry {
    /// Never: the key lasts until it is revoked.
    Never,
    /// 30 days after creation (PgBeam's presets).
    Days30,
    /// 90 days after creation.
    Days90,
    /// 365 days after creation.
    Days365,
    /// At this instant, which must be in the future.
    At(OffsetDateTime),
}

impl Expiry {
    fn resolve(self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        match self {
            Self::Never => None,
            Self::Days30 => Some(now + time::Duration::days(30)),
            Self::Days90 => Some(now + time::Duration::days(90)),
            Self::Days365 => Some(now + time::Duration::days(365)),
            Self::At(at) => Some(at),
        }
    }
}

/// What to create: see [`KeyManager::create`].
#[derive(Debug, Clone)]
pub struct NewKey {
    name: String,
    owner: Owner,
    environment: Option<String>,
    scopes: Option<Vec<String>>,
    expiry: Expiry,
    rate_limit_policy: Option<String>,
    metadata: serde_json::Map<String, serde_json::Value>,
}

impl NewKey {
    /// A key called `name` for `owner`, with the model's creation defaults as scopes,
    /// no environment, and no expiry.
    pub fn new(name: impl Into<String>, owner: Owner) -> Self {
        Self {
            name: name.into(),
            owner,
            environment: None,
            scopes: None,
            expiry: Expiry::Never,
            rate_limit_policy: None,
            metadata: serde_json::Map::new(),
        }
    }

    /// The environment (`live`, `test`, …), required by formats that have them.
    #[must_use]
    pub fn with_environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// The scopes to grant, instead of the model's creation defaults.
    #[must_use]
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// When the key expires.
    #[must_use]
    pub fn with_expiry(mut self, expiry: Expiry) -> Self {
        self.expiry = expiry;
        self
    }

    /// A named rate-limit policy for the key.
    #[must_use]
    pub fn with_rate_limit_policy(mut self, policy: impl Into<String>) -> Self {
        self.rate_limit_policy = Some(policy.into());
        self
    }

    /// Free-form application data.
    #[must_use]
    pub fn with_metadata(mut self, metadata: serde_json::Map<String, serde_json::Value>) -> Self {
        self.metadata = metadata;
        self
    }
}

/// Who performs a lifecycle operation.
#[derive(Clone, Copy)]
pub enum Actor<'a> {
    /// An API key (the request's [`Principal`]). It can only grant scopes it holds
    /// itself.
    Key(&'a Principal),
    /// A trusted operator or bootstrap code, named for the audit log. No scope limit.
    System(&'a str),
}

impl Actor<'_> {
    fn describe(&self) -> String {
        match self {
            Self::Key(p) => p.key_id().to_string(),
            Self::System(name) => (*name).to_owned(),
        }
    }
}

impl fmt::Debug for Actor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(p) => f.debug_tuple("Key").field(p.key_id()).finish(),
            Self::System(name) => f.debug_tuple("System").field(name).finish(),
        }
    }
}

/// A key just created: the full key, shown this once, and its stored record.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CreatedKey {
    /// The full key. Return it to the caller once; it cannot be recovered.
    pub key: ApiKey,
    /// The stored record (no secret in it).
    pub record: KeyRecord,
}

/// Why a lifecycle operation was refused. Nothing was changed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// The name is empty, too long, or has control characters.
    #[error("invalid key name: {0}")]
    InvalidName(&'static str),
    /// A scope is not declared by the scope model.
    #[error("unknown scope {0:?}")]
    UnknownScope(String),
    /// The environment is not one of the key format's.
    #[error("unknown environment {0:?}")]
    UnknownEnvironment(String),
    /// The expiry is not in the future.
    #[error("the expiry must be in the future")]
    ExpiryInPast,
    /// The acting key does not hold a scope it tried to grant.
    #[error("cannot grant scope {0:?}: the acting key does not hold it")]
    ScopeEscalation(String),
    /// No key with this id belongs to this owner.
    #[error("no such key")]
    NotFound,
    /// The key is revoked, or already superseded, so it cannot be rotated.
    #[error("the key is revoked or already rotated")]
    Conflict,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates, lists, revokes and rotates keys, keeping the cache, the audit log and the
/// scope model in step.
///
/// ```
/// use tower_api_key::key::KeyFormat;
/// use tower_api_key::manage::{Actor, KeyManager, NewKey};
/// use tower_api_key::scope::ScopeModel;
/// use tower_api_key::store::{CachedStore, MemoryStore};
/// use tower_api_key::Owner;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let format = KeyFormat::new("pb")?.with_environments(["live", "test"])?;
/// let store = CachedStore::builder(MemoryStore::new()).build()?;
/// let manager = KeyManager::new(store, format, ScopeModel::performance_blocks());
///
/// let created = manager
///     .create(
///         NewKey::new("BI dashboard", Owner::organization("acme"))
///             .with_environment("live")
///             .with_scopes(["employees:read"]),
///         Actor::System("bootstrap"),
///     )
///     .await?;
/// println!("shown once: {}", created.key.expose_secret());
/// manager.revoke(&Owner::organization("acme"), &created.record.id, Actor::System("bootstrap")).await?;
/// # Ok(())
/// # }
/// ```
pub struct KeyManager<K> {
    store: CachedStore<K>,
    format: KeyFormat,
    model: ScopeModel,
    auditor: Option<Auditor>,
}

impl<K> Clone for KeyManager<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            format: self.format.clone(),
            model: self.model.clone(),
            auditor: self.auditor.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyManager<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyManager")
            .field("format", &self.format)
            .field("auditor", &self.auditor)
            .finish_non_exhaustive()
    }
}

impl<K: KeyStore> KeyManager<K> {
    /// A manager minting keys of `format`, validating scopes against `model`, and
    /// writing through `store` (so every change reaches the cache at once).
    pub fn new(store: CachedStore<K>, format: KeyFormat, model: ScopeModel) -> Self {
        Self {
            store,
            format,
            model,
            auditor: None,
        }
    }

    /// Records `api_key.created`, `api_key.revoked` and `api_key.rotated` events. They are
    /// handed to the sink before the operation returns (unlike request entries, which are
    /// written behind).
    #[must_use]
    pub fn with_auditor(mut self, auditor: Auditor) -> Self {
        self.auditor = Some(auditor);
        self
    }

    /// The scope model.
    pub fn scope_model(&self) -> &ScopeModel {
        &self.model
    }

    /// The store.
    pub fn store(&self) -> &CachedStore<K> {
        &self.store
    }

    fn now(&self) -> OffsetDateTime {
        self.store.clock().now()
    }

    /// Creates a key. The full key is in the result, and nowhere else, ever.
    ///
    /// # Errors
    ///
    /// [`ManageError`] for an invalid name, an unknown scope or environment, an expiry
    /// in the past, a scope the acting key does not hold, or a store failure. Nothing
    /// is stored on error.
    pub async fn create(&self, new: NewKey, actor: Actor<'_>) -> Result<CreatedKey, ManageError> {
        validate_name(&new.name)?;
        let scopes = new
            .scopes
            .unwrap_or_else(|| self.model.creation_defaults().to_vec());
        self.check_grantable(&scopes, actor)?;
        let now = self.now();
        let expires_at = new.expiry.resolve(now);
        if expires_at.is_some_and(|at| at <= now) {
            return Err(ManageError::ExpiryInPast);
        }
        let minted = self
            .format
            .generate(new.environment.as_deref())
            .map_err(|e| match e {
                crate::key::KeyError::UnknownEnvironment(env) => {
                    ManageError::UnknownEnvironment(env)
                }
                other => ManageError::Store(StoreError::unavailable(other)),
            })?;
        let mut record = KeyRecord::new(&minted, new.name, new.owner, scopes, now)
            .with_expires_at(expires_at)
            .with_created_by(actor.describe());
        record.rate_limit_policy = new.rate_limit_policy;
        record.metadata = new.metadata;
        self.store.insert(&record).await?;
        self.audit(AuditAction::KeyCreated, &record, actor, None, now);
        self.settle_audit().await;
        Ok(CreatedKey {
            key: minted.key,
            record,
        })
    }

    /// The keys of one owner, newest first, revoked ones included. Records hold only
    /// the public prefix and id, never a secret.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn list(&self, owner: &Owner) -> Result<Vec<KeyRecord>, ManageError> {
        Ok(self.store.list_by_owner(owner).await?)
    }

    /// One key of `owner`. Another owner's key is [`ManageError::NotFound`], exactly
    /// like a missing one.
    ///
    /// # Errors
    ///
    /// [`ManageError::NotFound`] or the store's error.
    pub async fn get(&self, owner: &Owner, id: &KeyId) -> Result<KeyRecord, ManageError> {
        match self.store.get_ref().get(id).await? {
            Some(record) if &record.owner == owner => Ok(record),
            _ => Err(ManageError::NotFound),
        }
    }

    /// Revokes a key of `owner`, at once and for good. The cache is invalidated before
    /// this returns, so the next request through this instance is refused. Revoking a
    /// revoked key succeeds and changes nothing.
    ///
    /// # Errors
    ///
    /// [`ManageError::NotFound`] for another owner's key, or the store's error.
    pub async fn revoke(
        &self,
        owner: &Owner,
        id: &KeyId,
        actor: Actor<'_>,
    ) -> Result<KeyRecord, ManageError> {
        let existing = self.get(owner, id).await?;
        if existing.revoked_at.is_some() {
            return Ok(existing);
        }
        let now = self.now();
        let record = self
            .store
            .revoke(id, now)
            .await?
            .ok_or(ManageError::NotFound)?;
        if record.revoked_at == Some(now) {
            self.audit(AuditAction::KeyRevoked, &record, actor, None, now);
            self.settle_audit().await;
        }
        Ok(record)
    }

    /// Rotates a key of `owner`: a new key with the same name, scopes, owner,
    /// environment, expiry, rate-limit policy, metadata and rate-limit family; the old
    /// key keeps working for `grace` (with a `Sunset` header), then is refused
    /// (`expired_key` in the PromptFloe style). A zero grace ends the old key at once.
    ///
    /// # Errors
    ///
    /// [`ManageError::NotFound`] for another owner's key, [`ManageError::Conflict`]
    /// for a revoked or already rotated key, or the store's error.
    pub async fn rotate(
        &self,
        owner: &Owner,
        id: &KeyId,
        grace: Duration,
        actor: Actor<'_>,
    ) -> Result<CreatedKey, ManageError> {
        let old = self.get(owner, id).await?;
        if old.revoked_at.is_some() || old.rotation.is_some() {
            return Err(ManageError::Conflict);
        }
        let now = self.now();
        let grace = time::Duration::try_from(grace).map_err(|_| ManageError::Conflict)?;
        let minted = self
            .format
            .generate(old.environment.as_ref().map(|e| e.as_str()))
            .map_err(|e| ManageError::Store(StoreError::unavailable(e)))?;
        let mut record = KeyRecord::new(
            &minted,
            old.name.clone(),
            old.owner.clone(),
            old.scopes.clone(),
            now,
        )
        .with_expires_at(old.expires_at.filter(|at| *at > now))
        .with_created_by(actor.describe());
        record.family = old.family;
        record.rate_limit_policy.clone_from(&old.rate_limit_policy);
        record.metadata.clone_from(&old.metadata);
        self.store.insert(&record).await?;
        match self.store.supersede(id, &record.id, now + grace).await {
            Ok(Some(_)) => {}
            outcome => {
                // The old key was revoked (or vanished) meanwhile: withdraw the new one.
                self.store.revoke(&record.id, now).await?;
                return match outcome {
                    Err(StoreError::Conflict) | Ok(None) => Err(ManageError::Conflict),
                    Err(e) => Err(e.into()),
                    Ok(Some(_)) => Err(ManageError::Conflict),
                };
            }
        }
        self.audit(AuditAction::KeyRotated, &old, actor, Some(record.id), now);
        self.audit(AuditAction::KeyCreated, &record, actor, None, now);
        self.settle_audit().await;
        Ok(CreatedKey {
            key: minted.key,
            record,
        })
    }

    /// Lifecycle events are written before the operation returns: an acknowledged
    /// create, revoke or rotate is in the audit log even if the process dies next.
    async fn settle_audit(&self) {
        if let Some(auditor) = &self.auditor {
            auditor.flush().await;
        }
    }

    fn check_grantable(&self, scopes: &[String], actor: Actor<'_>) -> Result<(), ManageError> {
        for scope in scopes {
            if !self.model.contains(scope) {
                return Err(ManageError::UnknownScope(scope.clone()));
            }
        }
        if let Actor::Key(principal) = actor {
            let held = self.model.grants(principal.scopes());
            for scope in scopes {
                if !held.contains(scope) {
                    return Err(ManageError::ScopeEscalation(scope.clone()));
                }
            }
        }
        Ok(())
    }

    fn audit(
        &self,
        action: AuditAction,
        record: &KeyRecord,
        actor: Actor<'_>,
        successor: Option<KeyId>,
        now: OffsetDateTime,
    ) {
        let Some(auditor) = &self.auditor else {
            return;
        };
        let mut entry = AuditEntry::new(action, record.id, record.owner.clone(), now);
        entry.actor_key_id = Some(actor.describe());
        entry.environment = record.environment;
        entry.scopes.clone_from(&record.scopes);
        entry.successor_key_id = successor;
        auditor.record(entry);
    }
}

fn validate_name(name: &str) -> Result<(), ManageError> {
    if name.trim().is_empty() {
        return Err(ManageError::InvalidName("the name is empty"));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(ManageError::InvalidName(
            "the name is longer than 100 characters",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ManageError::InvalidName("the name has control characters"));
    }
    Ok(())
}
