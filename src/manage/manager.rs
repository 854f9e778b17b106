use std::fmt;
use std::time::Duration;

use time::OffsetDateTime;

use super::error::{Denied, ManageError};
use crate::audit::{AuditAction, AuditActor, AuditEntry, AuditQuery};
use crate::key::{ApiKey, Environment, KeyError, KeyFormat, KeyId, MintedKey};
use crate::principal::Principal;
use crate::scope::{Grants, ScopeModel};
use crate::store::{
    ActingKey, Applied, CachedStore, Change, KeyPage, KeyQuery, KeyRecord, KeyStatus,
    ManagedKeyStore, Owner, StoreError, UsageBucket,
};

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
    /// The instant, or `Err` when it lies past the calendar's end.
    fn resolve(self, now: OffsetDateTime) -> Result<Option<OffsetDateTime>, ManageError> {
        let days = match self {
            Self::Never => return Ok(None),
            Self::At(at) => return Ok(Some(at)),
            Self::Days30 => 30,
            Self::Days90 => 90,
            Self::Days365 => 365,
        };
        now.checked_add(time::Duration::days(days))
            .map(Some)
            .ok_or(ManageError::ExpiryInPast)
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
///
/// A key is bound by the [authority rules](KeyManager#authority); the system is not.
#[derive(Clone, Copy)]
pub enum Actor<'a> {
    /// An API key (the request's [`Principal`]). It acts only on keys of its own owner
    /// and environment (see [`KeyManager::with_privileged_environments`]), only on keys
    /// whose scopes it holds, grants only scopes it holds, obtains no key that
    /// outlives it, and acts not at all once a rotation replaced it.
    Key(&'a Principal),
    /// A trusted operator or bootstrap code, named for the audit log (as
    /// [`AuditActor::System`]). Exempt from the authority rules.
    System(&'a str),
}

impl<'a> Actor<'a> {
    /// The acting key as judged, the condition the store checks with the change;
    /// `None` for the system.
    fn judged(self, at: OffsetDateTime) -> Option<ActingKey<'a>> {
        match self {
            Self::Key(p) => Some(ActingKey {
                id: p.key_id(),
                scopes: p.scopes(),
                expires_at: p.expires_at(),
                at,
            }),
            Self::System(_) => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Key(p) => p.key_id().to_string(),
            Self::System(name) => (*name).to_owned(),
        }
    }

    fn audit(&self) -> AuditActor {
        match self {
            Self::Key(p) => AuditActor::Key(*p.key_id()),
            Self::System(name) => AuditActor::System((*name).to_owned()),
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

/// Creates, lists, revokes and rotates keys and changes their scopes, under one set of
/// authority rules, with an audit entry written atomically with every change.
///
/// # Authority
///
/// Every operation names an [`Actor`]. [`Actor::System`] (operators, bootstrap code)
/// may do anything; the audit log names it as such. An [`Actor::Key`] is bound by
/// these rules, checked here rather than in handlers, so no route can forget them:
///
/// 1. **Owner.** A key acts only on keys of its own owner. Another owner's key is
///    [`ManageError::NotFound`], exactly like a missing one, on every operation on a
///    key (get, rotate, revoke, scope change); creating a key for another owner, or
///    listing or reading the audit log of one, names no key and is
///    [`Denied::OtherOwner`].
/// 2. **Environment.** A key of a *privileged* environment (by default `live`) acts on
///    keys of every environment; any other key acts only on keys of its own
///    environment: a `test` key cannot create `live` keys ([`Denied::Environment`]),
///    and a `live` key is [`ManageError::NotFound`] to it, exactly like a missing one,
///    whether it reads, rotates, revokes or changes it. Lists and the audit log show
///    it only its own environment.
/// 3. **No escalation.** A new key, a rotation's successor and a scope change hold
///    only scopes the acting key holds, after the model's implications
///    ([`Denied::GrantNotHeld`]).
/// 4. **No turning on a stronger key.** A key rotates, revokes or changes the scopes
///    of another key only if it holds every scope of that key
///    ([`Denied::TargetNotHeld`]): a key with `api_keys:write` alone cannot rotate the
///    admin key into a new admin key, nor revoke it.
/// 5. **A replaced key manages nothing.** A key that a rotation replaced still
///    authenticates ordinary requests until its grace period ends
///    ([`Principal::rotation`] is set), but has no key-management authority at all:
///    create, rotate, revoke, scope changes, get, list and the audit log are
///    [`Denied::Superseded`]. Only its successor manages keys, so a leaked key that
///    was rotated away cannot mint new keys or rotate its successor away.
/// 6. **No key outlives its maker.** A key never obtains a credential that outlives
///    it: a key it creates expires no later than itself (a missing expiry is refused,
///    not capped), and it rotates only keys that expire no later than itself, since
///    the rotation hands it the successor's secret, which keeps the old key's expiry
///    ([`Denied::Outlives`]). A key that never expires is not bound by this rule.
///
/// Authority is decided on the state the change is applied to. A change made by a key
/// carries that key as it was judged ([`ActingKey`](crate::store::ActingKey): neither
/// revoked nor replaced, with these scopes and this expiry), and a revocation carries
/// the target's scopes that rule 4 judged; the store checks both in the change's own
/// transaction (the acting key's row locked `FOR UPDATE` on PostgreSQL, under
/// `BEGIN IMMEDIATE` on SQLite, under the lock in
/// [`MemoryStore`](crate::store::MemoryStore)). An acting key revoked, rotated,
/// re-scoped or expired between the check and the write changes nothing:
/// [`Denied::ActorChanged`].
///
/// Rotation keeps the key's expiry; rotating a revoked, expired or already rotated key
/// is [`ManageError::Conflict`], and so is a rotation, revocation or scope change that
/// loses a race with another change of the same key: the store checks and changes in
/// one step, so of several concurrent rotations of one key exactly one succeeds.
///
/// # Audit
///
/// Every successful create, revoke, rotate and scope change writes its
/// [`AuditEntry`] through [`ManagedKeyStore::apply`], atomically with the change: when a call
/// returns `Ok` the entry is durable, and when the entry cannot be written the change
/// is not made. Each entry carries the key's prefix and environment and the actor.
/// Entries are also emitted as `tracing` events (target `tower_api_key::audit`).
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
/// let manager = KeyManager::new(store, format, tower_api_key::presets::performance_blocks::scope_model());
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
    privileged: Vec<Environment>,
}

impl<K> Clone for KeyManager<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            format: self.format.clone(),
            model: self.model.clone(),
            privileged: self.privileged.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyManager<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyManager")
            .field("format", &self.format)
            .field("privileged_environments", &self.privileged)
            .finish_non_exhaustive()
    }
}

impl<K> KeyManager<K> {
    /// A manager minting keys of `format`, validating scopes against `model`, and
    /// writing through `store` (so every change reaches the cache at once). The
    /// privileged environment is `live`.
    pub fn new(store: CachedStore<K>, format: KeyFormat, model: ScopeModel) -> Self {
        Self {
            store,
            format,
            model,
            privileged: vec![Environment::live()],
        }
    }

    /// The environments whose keys may act on keys of other environments (rule 2 of
    /// the [authority rules](KeyManager#authority)); `live` unless set. An empty list
    /// separates every environment completely.
    #[must_use]
    pub fn with_privileged_environments<I: IntoIterator<Item = Environment>>(
        mut self,
        environments: I,
    ) -> Self {
        self.privileged = environments.into_iter().collect();
        self
    }

    /// The scope model.
    pub fn scope_model(&self) -> &ScopeModel {
        &self.model
    }

    /// The format of the keys this manager mints.
    pub fn format(&self) -> &KeyFormat {
        &self.format
    }

    /// The store.
    pub fn store(&self) -> &CachedStore<K> {
        &self.store
    }
}

impl<K: ManagedKeyStore> KeyManager<K> {
    /// The clock's reading in whole microseconds, the precision the SQL stores keep, so
    /// that a record returned by an operation equals the record read back later.
    fn now(&self) -> OffsetDateTime {
        crate::clock::whole_micros(self.store.clock().now())
    }

    /// Creates a key. The full key is in the result, and nowhere else, ever.
    ///
    /// # Errors
    ///
    /// [`ManageError`] for an invalid name, an unknown scope or environment, an expiry
    /// in the past, an authority rule ([`ManageError::PermissionDenied`]), or a store
    /// failure. Nothing is stored on error.
    pub async fn create(&self, new: NewKey, actor: Actor<'_>) -> Result<CreatedKey, ManageError> {
        acting(actor)?;
        validate_name(&new.name)?;
        let scopes = new
            .scopes
            .unwrap_or_else(|| self.model.creation_defaults().to_vec());
        self.check_known(&scopes)?;
        let minted = self.mint(new.environment.as_deref()).await?;
        if let Actor::Key(principal) = actor {
            self.check_reach(principal, &new.owner, minted.environment)?;
            check_grantable(&self.grants(principal), &scopes)?;
        }
        let now = self.now();
        let expires_at = new.expiry.resolve(now)?.map(crate::clock::whole_micros);
        if expires_at.is_some_and(|at| at <= now) {
            return Err(ManageError::ExpiryInPast);
        }
        if let Actor::Key(principal) = actor {
            check_lifetime(principal, expires_at)?;
        }
        let mut record = KeyRecord::new(&minted, new.name, new.owner, scopes, now)
            .with_expires_at(expires_at)
            .with_created_by(actor.describe());
        record.rate_limit_policy = new.rate_limit_policy;
        record.metadata = new.metadata;
        let entry = entry(AuditAction::KeyCreated, &record, actor, now);
        let change = Change::Insert {
            record: &record,
            actor: actor.judged(now),
        };
        match self.store.apply(change, &[entry]).await? {
            Applied::Done(_) => {}
            Applied::ActorChanged => return Err(Denied::ActorChanged.into()),
            _ => return Err(ManageError::Conflict),
        }
        trace(AuditAction::KeyCreated, &record, actor);
        Ok(CreatedKey {
            key: minted.key,
            record,
        })
    }

    /// Creates `new` unless its owner already has a usable key (neither revoked nor
    /// expired, nor past a rotation's grace) with the same name: the idempotent
    /// "make sure there is a first admin key" of a bootstrap. `None` when one exists.
    ///
    /// Two processes calling this at the same moment may both create one; call it from
    /// one place (start-up of one instance, a migration job).
    ///
    /// # Errors
    ///
    /// As [`KeyManager::create`], and the store's error from the lookup.
    ///
    /// ```
    /// use tower_api_key::key::KeyFormat;
    /// use tower_api_key::manage::{Actor, KeyManager, NewKey};
    /// use tower_api_key::store::{CachedStore, MemoryStore};
    /// use tower_api_key::{Owner, ScopeModel};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = CachedStore::builder(MemoryStore::new()).build()?;
    /// let manager = KeyManager::new(store, KeyFormat::new("pb")?, tower_api_key::presets::performance_blocks::scope_model());
    /// let admin = || NewKey::new("admin", Owner::organization("acme"));
    /// let first = manager.ensure_key(admin(), Actor::System("bootstrap")).await?;
    /// assert!(first.is_some(), "made, and shown once");
    /// assert!(manager.ensure_key(admin(), Actor::System("bootstrap")).await?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn ensure_key(
        &self,
        new: NewKey,
        actor: Actor<'_>,
    ) -> Result<Option<CreatedKey>, ManageError> {
        let now = self.now();
        let exists = self.list(&new.owner, actor).await?.iter().any(|record| {
            record.name == new.name
                && matches!(
                    record.status_at(now),
                    KeyStatus::Active | KeyStatus::InGrace(_)
                )
        });
        if exists {
            return Ok(None);
        }
        self.create(new, actor).await.map(Some)
    }

    /// The keys of `owner` that `actor` may see, newest first, revoked ones included.
    /// Records hold only the public prefix and id, never a secret.
    ///
    /// # Errors
    ///
    /// [`Denied::Superseded`], [`Denied::OtherOwner`], or the store's error.
    pub async fn list(
        &self,
        owner: &Owner,
        actor: Actor<'_>,
    ) -> Result<Vec<KeyRecord>, ManageError> {
        if let Some(principal) = acting(actor)? {
            check_owner(principal, owner)?;
        }
        let mut keys = self.store.list_by_owner(owner).await?;
        if let Actor::Key(principal) = actor {
            keys.retain(|record| self.reaches(principal, record.environment));
        }
        Ok(keys)
    }

    /// One page of the keys of `query`'s owner that `actor` may see (see
    /// [`KeyQuery`]: filters, a limit, the cursor of the page before), newest first,
    /// revoked ones included unless filtered out. A key of an unprivileged environment
    /// sees only keys of its own environment: a query for another environment is an
    /// empty page.
    ///
    /// Pages follow `(created_at, id)`, so keys created while a client pages through
    /// the list never make it see a key twice or miss one.
    ///
    /// ```
    /// use tower_api_key::key::KeyFormat;
    /// use tower_api_key::manage::{Actor, KeyManager, NewKey};
    /// use tower_api_key::store::{CachedStore, KeyQuery, MemoryStore};
    /// use tower_api_key::Owner;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = CachedStore::builder(MemoryStore::new()).build()?;
    /// let manager = KeyManager::new(store, KeyFormat::new("pb")?, tower_api_key::presets::performance_blocks::scope_model());
    /// let acme = Owner::organization("acme");
    /// for name in ["a", "b", "c"] {
    ///     manager.create(NewKey::new(name, acme.clone()), Actor::System("setup")).await?;
    /// }
    /// let now = time::OffsetDateTime::now_utc();
    /// let query = KeyQuery::new(acme.clone(), now).with_limit(2);
    /// let first = manager.list_page(query.clone(), Actor::System("admin")).await?;
    /// assert_eq!(first.items.len(), 2);
    /// let rest = manager
    ///     .list_page(query.after(first.next.expect("a next page")), Actor::System("admin"))
    ///     .await?;
    /// assert_eq!((rest.items.len(), rest.next), (1, None));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Denied::Superseded`], [`Denied::OtherOwner`], or the store's error.
    pub async fn list_page(
        &self,
        query: KeyQuery,
        actor: Actor<'_>,
    ) -> Result<KeyPage, ManageError> {
        let mut query = query;
        if let Some(principal) = acting(actor)? {
            check_owner(principal, query.owner())?;
            if let Some(env) = principal.environment() {
                if !self.privileged.contains(&env) {
                    if query.environment().is_some_and(|asked| asked != env) {
                        return Ok(KeyPage::new(Vec::new(), None));
                    }
                    query = query.in_environment(env);
                }
            }
        }
        let mut page = self.store.get_ref().list_page(&query).await?;
        if let Actor::Key(principal) = actor {
            // Rule 2 for an acting key without an environment: filtered here, so a page
            // may come out short; its cursor still continues where the store stopped.
            page.items
                .retain(|record| self.reaches(principal, record.environment));
        }
        Ok(page)
    }

    /// One key of `owner`. Another owner's key, or a key of an environment `actor`
    /// does not reach, is [`ManageError::NotFound`], exactly like a missing one.
    ///
    /// # Errors
    ///
    /// [`ManageError::NotFound`], [`Denied::Superseded`], or the store's error.
    pub async fn get(
        &self,
        owner: &Owner,
        id: &KeyId,
        actor: Actor<'_>,
    ) -> Result<KeyRecord, ManageError> {
        // Another owner's key, or one of an environment out of reach, is not found,
        // exactly like a missing one: the answer reveals nothing about the id.
        let principal = acting(actor)?;
        if principal.is_some_and(|p| p.owner() != owner) {
            return Err(ManageError::NotFound);
        }
        let record = self.find(owner, id).await?;
        if principal.is_some_and(|p| !self.reaches(p, record.environment)) {
            return Err(ManageError::NotFound);
        }
        Ok(record)
    }

    /// The longest range [`KeyManager::usage`] answers: 31 days (744 hourly buckets).
    pub const MAX_USAGE_RANGE: time::Duration = time::Duration::days(31);

    /// The usage of one key of `owner`: its hourly buckets (verifications by outcome,
    /// as counted by [`ApiKeyAuthBuilder::usage`](crate::auth::ApiKeyAuthBuilder::usage))
    /// whose hour starts at or after `from` and before `to`, oldest first; hours
    /// without a verification have no bucket. The authority of [`KeyManager::get`]:
    /// another owner's key, or one of an environment `actor` does not reach, is
    /// [`ManageError::NotFound`].
    ///
    /// # Errors
    ///
    /// [`ManageError::InvalidRange`] when `to` is before `from` or the range is longer
    /// than [`KeyManager::MAX_USAGE_RANGE`]; then as [`KeyManager::get`].
    pub async fn usage(
        &self,
        owner: &Owner,
        id: &KeyId,
        from: OffsetDateTime,
        to: OffsetDateTime,
        actor: Actor<'_>,
    ) -> Result<Vec<UsageBucket>, ManageError> {
        if to < from {
            return Err(ManageError::InvalidRange("`to` is before `from`"));
        }
        if to - from > Self::MAX_USAGE_RANGE {
            return Err(ManageError::InvalidRange("longer than 31 days"));
        }
        self.get(owner, id, actor).await?;
        Ok(self.store.usage(id, from, to).await?)
    }

    /// The audit log of `query`'s owner as `actor` may see it, newest first: a key of
    /// an unprivileged environment sees only entries about keys of its environment.
    ///
    /// # Errors
    ///
    /// [`Denied::Superseded`], [`Denied::OtherOwner`], or the store's error.
    pub async fn audit_log(
        &self,
        query: AuditQuery,
        actor: Actor<'_>,
    ) -> Result<Vec<AuditEntry>, ManageError> {
        let mut query = query;
        if let Some(principal) = acting(actor)? {
            check_owner(principal, query.owner())?;
            if let Some(env) = principal.environment() {
                if !self.privileged.contains(&env) {
                    query = query.in_environment(env);
                }
            }
        }
        Ok(self.store.audit_log(&query).await?)
    }

    /// Revokes a key of `owner`, at once and for good. The cache is invalidated before
    /// this returns, so the next request through this instance is refused. Revoking a
    /// revoked key succeeds and changes nothing (and writes no second audit entry).
    ///
    /// # Errors
    ///
    /// [`ManageError::NotFound`] (also for another owner's key, or one of an
    /// environment out of reach), [`ManageError::Conflict`] for a key whose scopes
    /// changed while this ran, an authority rule ([`ManageError::PermissionDenied`]),
    /// or the store's error.
    pub async fn revoke(
        &self,
        owner: &Owner,
        id: &KeyId,
        actor: Actor<'_>,
    ) -> Result<KeyRecord, ManageError> {
        let existing = self.find_to_change(owner, id, actor).await?;
        if existing.revoked_at.is_some() {
            return Ok(existing);
        }
        let now = self.now();
        let entry = entry(AuditAction::KeyRevoked, &existing, actor, now);
        let change = Change::Revoke {
            id,
            at: now,
            // Rule 4 was judged on these scopes.
            scopes: matches!(actor, Actor::Key(_)).then_some(existing.scopes.as_slice()),
            actor: actor.judged(now),
        };
        match self.store.apply(change, &[entry]).await? {
            Applied::Done(record) => {
                trace(AuditAction::KeyRevoked, &record, actor);
                Ok(record)
            }
            // Revoked meanwhile by another call, which wrote the audit entry.
            Applied::Refused(record) if record.revoked_at.is_some() => Ok(record),
            Applied::NotFound => Err(ManageError::NotFound),
            Applied::ActorChanged => Err(Denied::ActorChanged.into()),
            _ => Err(ManageError::Conflict),
        }
    }

    /// Rotates a key of `owner`: a new key with the same name, scopes, owner,
    /// environment, expiry, rate-limit policy, metadata and rate-limit family; the old
    /// key keeps working for `grace` (with a `Sunset` header), then is refused
    /// (`expired_key` in the PromptFloe style). A zero grace ends the old key at once.
    ///
    /// # Errors
    ///
    /// [`ManageError::NotFound`] (also for another owner's key, or one of an
    /// environment out of reach), [`ManageError::Conflict`]
    /// for a revoked, expired or already rotated key (or one rotated or changed by a
    /// concurrent call), [`ManageError::InvalidGrace`] for a grace period ending past
    /// the calendar's end, an authority rule ([`ManageError::PermissionDenied`]), or
    /// the store's error.
    pub async fn rotate(
        &self,
        owner: &Owner,
        id: &KeyId,
        grace: Duration,
        actor: Actor<'_>,
    ) -> Result<CreatedKey, ManageError> {
        let old = self.find_to_change(owner, id, actor).await?;
        if let Actor::Key(principal) = actor {
            // The successor holds the old key's scopes and expiry, and its secret goes
            // to the acting key.
            check_grantable(&self.grants(principal), &old.scopes)?;
            check_lifetime(principal, old.expires_at)?;
        }
        let now = self.now();
        if old.revoked_at.is_some()
            || old.rotation.is_some()
            || old.expires_at.is_some_and(|at| at <= now)
        {
            return Err(ManageError::Conflict);
        }
        let valid_until = time::Duration::try_from(grace)
            .ok()
            .and_then(|grace| now.checked_add(grace))
            .ok_or(ManageError::InvalidGrace)?;
        let minted = self
            .mint(old.environment.as_ref().map(Environment::as_str))
            .await?;
        let mut successor = KeyRecord::new(
            &minted,
            old.name.clone(),
            old.owner.clone(),
            old.scopes.clone(),
            now,
        )
        .with_expires_at(old.expires_at)
        .with_created_by(actor.describe());
        successor.family = old.family;
        successor
            .rate_limit_policy
            .clone_from(&old.rate_limit_policy);
        successor.metadata.clone_from(&old.metadata);
        let mut rotated = entry(AuditAction::KeyRotated, &old, actor, now);
        rotated.successor_key_id = Some(successor.id);
        let created = entry(AuditAction::KeyCreated, &successor, actor, now);
        let change = Change::Rotate {
            id,
            successor: &successor,
            valid_until,
            at: now,
            actor: actor.judged(now),
        };
        match self.store.apply(change, &[rotated, created]).await? {
            Applied::Done(_) => {}
            Applied::NotFound => return Err(ManageError::NotFound),
            Applied::ActorChanged => return Err(Denied::ActorChanged.into()),
            _ => return Err(ManageError::Conflict),
        }
        trace(AuditAction::KeyRotated, &old, actor);
        trace(AuditAction::KeyCreated, &successor, actor);
        Ok(CreatedKey {
            key: minted.key,
            record: successor,
        })
    }

    /// Replaces the scopes of a key of `owner` with `scopes` (`api_key.scopes_changed`
    /// in the audit log). The cache is invalidated before this returns.
    ///
    /// # Errors
    ///
    /// [`ManageError::UnknownScope`], [`ManageError::NotFound`],
    /// [`ManageError::Conflict`] for a revoked key or one whose scopes changed while
    /// this ran, an authority rule ([`ManageError::PermissionDenied`]), or the store's
    /// error.
    pub async fn set_scopes<I, S>(
        &self,
        owner: &Owner,
        id: &KeyId,
        scopes: I,
        actor: Actor<'_>,
    ) -> Result<KeyRecord, ManageError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        acting(actor)?;
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        self.check_known(&scopes)?;
        let old = self.find_to_change(owner, id, actor).await?;
        if let Actor::Key(principal) = actor {
            check_grantable(&self.grants(principal), &scopes)?;
        }
        if old.revoked_at.is_some() {
            return Err(ManageError::Conflict);
        }
        let now = self.now();
        let mut entry = entry(AuditAction::KeyScopesChanged, &old, actor, now);
        entry.scopes.clone_from(&scopes);
        let change = Change::SetScopes {
            id,
            from: &old.scopes,
            to: &scopes,
            actor: actor.judged(now),
        };
        match self.store.apply(change, &[entry]).await? {
            Applied::Done(record) => {
                trace(AuditAction::KeyScopesChanged, &record, actor);
                Ok(record)
            }
            Applied::NotFound => Err(ManageError::NotFound),
            Applied::ActorChanged => Err(Denied::ActorChanged.into()),
            _ => Err(ManageError::Conflict),
        }
    }

    /// Renames a key of `owner`, with the authority of [`KeyManager::set_scopes`]: the
    /// actor holds every scope of the key and reaches it. The name is checked as at
    /// creation. Audited as [`AuditAction::KeyRenamed`].
    ///
    /// # Errors
    ///
    /// [`ManageError::InvalidName`], [`ManageError::NotFound`],
    /// [`ManageError::Conflict`] for a revoked key, [`ManageError::PermissionDenied`],
    /// or the store's error.
    pub async fn rename(
        &self,
        owner: &Owner,
        id: &KeyId,
        name: &str,
        actor: Actor<'_>,
    ) -> Result<KeyRecord, ManageError> {
        acting(actor)?;
        validate_name(name)?;
        let old = self.find_to_change(owner, id, actor).await?;
        if old.revoked_at.is_some() {
            return Err(ManageError::Conflict);
        }
        let now = self.now();
        let entry = entry(AuditAction::KeyRenamed, &old, actor, now);
        let change = Change::Rename {
            id,
            name,
            actor: actor.judged(now),
        };
        match self.store.apply(change, &[entry]).await? {
            Applied::Done(record) => {
                trace(AuditAction::KeyRenamed, &record, actor);
                Ok(record)
            }
            Applied::NotFound => Err(ManageError::NotFound),
            Applied::ActorChanged => Err(Denied::ActorChanged.into()),
            _ => Err(ManageError::Conflict),
        }
    }

    /// A new key of the format, tagged under the store's newest tag secret when it has
    /// one (see [`TagKey`](crate::key::TagKey)).
    async fn mint(&self, environment: Option<&str>) -> Result<MintedKey, ManageError> {
        let tag_key = self.store.minting_tag_key().await?;
        let minted = match &tag_key {
            Some(tag_key) => self.format.generate_tagged(environment, tag_key),
            None => self.format.generate(environment),
        };
        minted.map_err(|e| match e {
            e @ KeyError::Randomness => ManageError::Store(StoreError::unavailable(e)),
            invalid => ManageError::InvalidEnvironment(invalid),
        })
    }

    /// The key, if it belongs to `owner` (read from the store, not the cache).
    async fn find(&self, owner: &Owner, id: &KeyId) -> Result<KeyRecord, ManageError> {
        match self.store.get_ref().get(id).await? {
            Some(record) if &record.owner == owner => Ok(record),
            _ => Err(ManageError::NotFound),
        }
    }

    /// The key, if `actor` may change it: rules 1, 2 and 4.
    async fn find_to_change(
        &self,
        owner: &Owner,
        id: &KeyId,
        actor: Actor<'_>,
    ) -> Result<KeyRecord, ManageError> {
        let record = self.get(owner, id, actor).await?;
        if let Actor::Key(principal) = actor {
            let held = self.grants(principal);
            if let Some(scope) = record.scopes.iter().find(|s| !held.contains(s)) {
                return Err(Denied::TargetNotHeld(scope.clone()).into());
            }
        }
        Ok(record)
    }

    fn grants(&self, principal: &Principal) -> Grants {
        self.model.grants(principal.scopes())
    }

    fn check_known(&self, scopes: &[String]) -> Result<(), ManageError> {
        match scopes.iter().find(|s| !self.model.contains(s)) {
            Some(scope) => Err(ManageError::UnknownScope(scope.clone())),
            None => Ok(()),
        }
    }

    /// Whether `principal` reaches keys of `environment` (rule 2).
    fn reaches(&self, principal: &Principal, environment: Option<Environment>) -> bool {
        match principal.environment() {
            Some(env) if self.privileged.contains(&env) => true,
            acting => acting == environment,
        }
    }

    /// Rules 1 and 2.
    fn check_reach(
        &self,
        principal: &Principal,
        owner: &Owner,
        environment: Option<Environment>,
    ) -> Result<(), ManageError> {
        check_owner(principal, owner)?;
        if self.reaches(principal, environment) {
            return Ok(());
        }
        Err(Denied::Environment {
            acting: principal.environment(),
            target: environment,
        }
        .into())
    }
}

/// Rule 5: the acting key, unless it has no authority at all because a rotation
/// replaced it (it still authenticates during its grace period). `None` for the
/// system.
fn acting<'a>(actor: Actor<'a>) -> Result<Option<&'a Principal>, ManageError> {
    match actor {
        Actor::Key(principal) if principal.rotation().is_some() => Err(Denied::Superseded.into()),
        Actor::Key(principal) => Ok(Some(principal)),
        Actor::System(_) => Ok(None),
    }
}

/// Rule 6, the one place it is decided: the acting key may obtain the secret of a key
/// expiring at `expires_at` (a new key, a rotation's successor) only if that key
/// expires no later than itself. A key without an expiry outlives every key that has
/// one.
fn check_lifetime(
    principal: &Principal,
    expires_at: Option<OffsetDateTime>,
) -> Result<(), ManageError> {
    match principal.expires_at() {
        Some(limit) if expires_at.is_none_or(|at| at > limit) => {
            Err(Denied::Outlives(limit).into())
        }
        _ => Ok(()),
    }
}

/// The audit entry of a lifecycle operation on `record`, with its scopes.
fn entry(
    action: AuditAction,
    record: &KeyRecord,
    actor: Actor<'_>,
    now: OffsetDateTime,
) -> AuditEntry {
    let mut entry = AuditEntry::about(action, record, actor.audit(), now);
    entry.scopes.clone_from(&record.scopes);
    entry
}

/// Rule 1.
fn check_owner(principal: &Principal, owner: &Owner) -> Result<(), ManageError> {
    if principal.owner() == owner {
        Ok(())
    } else {
        Err(Denied::OtherOwner(owner.kind()).into())
    }
}

/// Rule 3.
fn check_grantable(held: &Grants, scopes: &[String]) -> Result<(), ManageError> {
    match scopes.iter().find(|s| !held.contains(s)) {
        Some(scope) => Err(Denied::GrantNotHeld(scope.clone()).into()),
        None => Ok(()),
    }
}

/// The lifecycle entry as a `tracing` event, after it is durable in the store.
fn trace(action: AuditAction, record: &KeyRecord, actor: Actor<'_>) {
    tracing::info!(
        target: "tower_api_key::audit",
        action = action.as_str(),
        api_key_id = record.id.as_str(),
        prefix = record.prefix.as_str(),
        environment = record.environment.as_ref().map(Environment::as_str),
        actor = ?actor.audit(),
        owner = record.owner.id(),
        "audit"
    );
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
