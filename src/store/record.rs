use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::key::{Digest, Environment, KeyId, MintedKey};

/// Who a key belongs to.
///
/// Organization keys act inside one organization (Performance Blocks, PgBeam's `pbo_`
/// keys). Personal keys act for one user (PgBeam's `pbu_` keys); the application
/// decides which organizations that user reaches.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Owner {
    /// An organization (workspace, tenant).
    Organization(Arc<str>),
    /// A user, for personal keys.
    User(Arc<str>),
}

impl Owner {
    /// An organization owner.
    pub fn organization(id: impl Into<Arc<str>>) -> Self {
        Self::Organization(id.into())
    }

    /// A user owner.
    pub fn user(id: impl Into<Arc<str>>) -> Self {
        Self::User(id.into())
    }

    /// The owner's id, whatever its kind.
    pub fn id(&self) -> &str {
        match self {
            Self::Organization(id) | Self::User(id) => id,
        }
    }

    /// `organization` or `user`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Organization(_) => "organization",
            Self::User(_) => "user",
        }
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.id())
    }
}

/// The rotation state of a key that has been superseded by a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// The key that replaced this one.
    pub superseded_by: KeyId,
    /// The end of the grace period: the key is refused from this instant on.
    #[serde(with = "time::serde::rfc3339")]
    pub valid_until: OffsetDateTime,
}

/// Everything stored about one key. The secret itself is never part of it: only its
/// [`Digest`].
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The public id.
    pub id: KeyId,
    /// SHA-256 of the full key.
    pub digest: Digest,
    /// The public display prefix, e.g. `pb_live_2hT9xQk1LmZ`.
    pub prefix: String,
    /// A human-readable name ("Production HRIS sync").
    pub name: String,
    /// The organization or user the key acts for.
    pub owner: Owner,
    /// The environment, for formats that have them.
    pub environment: Option<Environment>,
    /// Granted scopes, as configured (implications are applied by the scope model).
    pub scopes: Vec<String>,
    /// When the key was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Who created it (a user id or the id of the key that created it).
    pub created_by: Option<String>,
    /// When it stops working, if ever.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// When it was revoked. Revocation is irreversible.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// Set once the key has been superseded by a rotation.
    pub rotation: Option<Rotation>,
    /// The first key of the rotation family: rotated keys keep their predecessor's
    /// family, so rate limits partitioned by family survive a rotation.
    pub family: KeyId,
    /// When the key was last used, as flushed by the write-behind buffer.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// The name of a rate-limit policy, overriding the environment's default.
    pub rate_limit_policy: Option<String>,
    /// Free-form application data.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// `true` for a key minted elsewhere and looked up by digest.
    pub imported: bool,
}

impl KeyRecord {
    /// A fresh record for a key minted by [`KeyFormat::generate`](crate::key::KeyFormat::generate).
    pub fn new(
        minted: &MintedKey,
        name: impl Into<String>,
        owner: Owner,
        scopes: Vec<String>,
        created_at: OffsetDateTime,
    ) -> Self {
        let mut record = Self::imported(
            minted.id,
            minted.digest,
            minted.prefix.clone(),
            name,
            owner,
            scopes,
            created_at,
        );
        record.environment = minted.environment;
        record.imported = false;
        record
    }

    /// A record for a key minted by another system, to be found by its digest.
    ///
    /// `digest` is SHA-256 of the full foreign key ([`Digest::of`]); `prefix` is what
    /// lists should show of it (its first few characters).
    pub fn imported(
        id: KeyId,
        digest: Digest,
        prefix: impl Into<String>,
        name: impl Into<String>,
        owner: Owner,
        scopes: Vec<String>,
        created_at: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            digest,
            prefix: prefix.into(),
            name: name.into(),
            owner,
            environment: None,
            scopes,
            created_at,
            created_by: None,
            expires_at: None,
            revoked_at: None,
            rotation: None,
            family: id,
            last_used_at: None,
            rate_limit_policy: None,
            metadata: serde_json::Map::new(),
            imported: true,
        }
    }

    /// Sets the expiry.
    #[must_use]
    pub fn with_expires_at(mut self, expires_at: Option<OffsetDateTime>) -> Self {
        self.expires_at = expires_at;
        self
    }

    /// Sets the creator.
    #[must_use]
    pub fn with_created_by(mut self, created_by: impl Into<String>) -> Self {
        self.created_by = Some(created_by.into());
        self
    }

    /// Sets the environment (for imported keys, which carry none in their text).
    #[must_use]
    pub fn with_environment(mut self, environment: Option<Environment>) -> Self {
        self.environment = environment;
        self
    }

    /// The status of the key at `now`.
    pub fn status_at(&self, now: OffsetDateTime) -> KeyStatus {
        status_of(
            self.revoked_at,
            self.expires_at,
            self.rotation.as_ref(),
            now,
        )
    }

    // The one place a key's standing is decided: `status_of`, and `ActiveUntil`,
    // its shortcut for the request path, below.

    /// A rough count of the heap and inline bytes this record occupies, used to
    /// bound the cache by size.
    pub fn approx_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.prefix.capacity()
            + self.name.capacity()
            + self.owner.id().len()
            + self.created_by.as_ref().map_or(0, String::capacity)
            + self.rate_limit_policy.as_ref().map_or(0, String::capacity)
            + self
                .scopes
                .iter()
                .map(|s| s.capacity() + std::mem::size_of::<String>())
                .sum::<usize>()
            + if self.metadata.is_empty() {
                0
            } else {
                serde_json::to_string(&self.metadata).map_or(0, |s| s.len() * 2)
            }
    }
}

impl fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRecord")
            .field("id", &self.id)
            .field("prefix", &self.prefix)
            .field("name", &self.name)
            .field("owner", &self.owner)
            .field("environment", &self.environment)
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .field("rotation", &self.rotation)
            .field("last_used_at", &self.last_used_at)
            .finish_non_exhaustive()
    }
}

/// The instant (nanoseconds since the Unix epoch) before which a record is plainly
/// active: not revoked, not expired, not rotated. Worked out once per cache fill, so
/// that the request path decides a plainly active key with one integer comparison and
/// asks [`KeyRecord::status_at`] only from then on (or always, for an instant outside
/// 1677–2262, kept as `i64::MIN`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActiveUntil(i64);

impl ActiveUntil {
    /// The instant for a record with these fields.
    pub(crate) fn of(
        revoked_at: Option<OffsetDateTime>,
        expires_at: Option<OffsetDateTime>,
        rotation: Option<&Rotation>,
    ) -> Self {
        if rotation.is_some() {
            return Self(i64::MIN);
        }
        Self(
            [revoked_at, expires_at]
                .into_iter()
                .flatten()
                .map(OffsetDateTime::unix_timestamp_nanos)
                .min()
                .map_or(i64::MAX, |at| i64::try_from(at).unwrap_or(i64::MIN)),
        )
    }

    /// Whether the key is plainly active at `now` (nanoseconds since the Unix epoch);
    /// `false` means "decide with [`status_of`]", not "inactive". A clock before 1970
    /// always takes the full check.
    pub(crate) fn covers(self, now: i128) -> bool {
        (0..i128::from(self.0)).contains(&now)
    }
}

/// The status at `now` of a key with these fields: the one place a key's standing is
/// decided.
pub(crate) fn status_of(
    revoked_at: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
    rotation: Option<&Rotation>,
    now: OffsetDateTime,
) -> KeyStatus {
    if revoked_at.is_some_and(|t| t <= now) {
        return KeyStatus::Revoked;
    }
    if expires_at.is_some_and(|t| t <= now) {
        return KeyStatus::Expired;
    }
    match rotation {
        Some(r) if r.valid_until <= now => KeyStatus::Superseded,
        Some(r) => KeyStatus::InGrace(r.valid_until),
        None => KeyStatus::Active,
    }
}

/// What the request path reads of a key, from a stored [`KeyRecord`] or the cache's
/// [`CachedRecord`](super::CachedRecord) alike (the rate limiter takes either).
pub(crate) trait KeyFacts {
    /// The public id.
    fn fact_id(&self) -> &KeyId;
    /// The first key of the rotation family.
    fn fact_family(&self) -> &KeyId;
    /// The owner.
    fn fact_owner(&self) -> &Owner;
    /// The environment.
    fn fact_environment(&self) -> Option<Environment>;
    /// The named rate-limit policy.
    fn fact_policy(&self) -> Option<&str>;
}

impl KeyFacts for KeyRecord {
    fn fact_id(&self) -> &KeyId {
        &self.id
    }

    fn fact_family(&self) -> &KeyId {
        &self.family
    }

    fn fact_owner(&self) -> &Owner {
        &self.owner
    }

    fn fact_environment(&self) -> Option<Environment> {
        self.environment
    }

    fn fact_policy(&self) -> Option<&str> {
        self.rate_limit_policy.as_deref()
    }
}

/// Where a key stands at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Superseded by a rotation, still usable until the given instant.
    InGrace(OffsetDateTime),
    /// Superseded, and the grace period is over.
    Superseded,
    /// Past its expiry.
    Expired,
    /// Revoked.
    Revoked,
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::from_hex(&s).map_err(serde::de::Error::custom)
    }
}
