//! The audit entries a store keeps: what happened to which key, by whom. Defined with
//! the stores that write and query them, and re-exported by [`audit`](crate::audit),
//! where the sinks and the request auditor are.

use std::future::Future;

use serde::Serialize;
use time::OffsetDateTime;

use super::{KeyRecord, Owner, StoreError};
use crate::key::{Environment, KeyId};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum AuditAction {
    /// A key was created (`api_key.created`).
    #[serde(rename = "api_key.created")]
    KeyCreated,
    /// A key was revoked (`api_key.revoked`).
    #[serde(rename = "api_key.revoked")]
    KeyRevoked,
    /// A key was rotated (`api_key.rotated`); `api_key_id` is the old key.
    #[serde(rename = "api_key.rotated")]
    KeyRotated,
    /// A key's scopes were replaced (`api_key.scopes_changed`); `scopes` are the new
    /// ones.
    #[serde(rename = "api_key.scopes_changed")]
    KeyScopesChanged,
    /// A key was renamed (`api_key.renamed`).
    #[serde(rename = "api_key.renamed")]
    KeyRenamed,
    /// A state-changing request made with a key (`request`).
    #[serde(rename = "request")]
    Request,
}

impl AuditAction {
    /// The stable name (`api_key.created`, …, `request`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeyCreated => "api_key.created",
            Self::KeyRevoked => "api_key.revoked",
            Self::KeyRotated => "api_key.rotated",
            Self::KeyScopesChanged => "api_key.scopes_changed",
            Self::KeyRenamed => "api_key.renamed",
            Self::Request => "request",
        }
    }

    /// Every action, for parsing a stored name back.
    pub const ALL: [Self; 6] = [
        Self::KeyCreated,
        Self::KeyRevoked,
        Self::KeyRotated,
        Self::KeyScopesChanged,
        Self::KeyRenamed,
        Self::Request,
    ];
}

/// Who performed an audited action.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum AuditActor {
    /// An API key: the key that made the request, or that performed a lifecycle
    /// operation through [`Actor::Key`](crate::manage::Actor::Key).
    Key(KeyId),
    /// A trusted operator or bootstrap code ([`Actor::System`](crate::manage::Actor::System)),
    /// by the name it was given. System actors are exempt from the authority rules.
    System(String),
}

/// One audit entry. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Assigned by the sink when stored (0 before).
    pub id: u64,
    /// When it happened, to the microsecond.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// What happened.
    pub action: AuditAction,
    /// The key created, revoked, rotated or changed, or the key that made the request.
    pub api_key_id: KeyId,
    /// The public prefix of `api_key_id` (`pb_live_2hT9xQk1LmZ`), which tells live from
    /// test at a glance. `None` only for entries built without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Who performed it: for a request, the key that made it.
    pub actor: AuditActor,
    /// The owner of `api_key_id`.
    #[serde(skip)]
    pub owner: Owner,
    /// The environment of `api_key_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// The key's scopes, for lifecycle actions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// For requests: the HTTP method.
    pub method: Option<String>,
    /// For requests: the matched route (or the path when no route matched).
    pub path: Option<String>,
    /// For requests: the route template that matched (axum's `MatchedPath`), when the
    /// layer runs as a `route_layer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// For requests: the response status.
    pub status: Option<u16>,
    /// The request id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// For rotations: the new key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub successor_key_id: Option<KeyId>,
}

impl AuditEntry {
    /// An entry with only the required fields set; the actor is `api_key_id` itself.
    /// `occurred_at` is kept to the whole microsecond, as every store keeps it.
    pub fn new(
        action: AuditAction,
        api_key_id: KeyId,
        owner: Owner,
        occurred_at: OffsetDateTime,
    ) -> Self {
        Self {
            id: 0,
            occurred_at: crate::clock::whole_micros(occurred_at),
            action,
            api_key_id,
            prefix: None,
            actor: AuditActor::Key(api_key_id),
            owner,
            environment: None,
            scopes: Vec::new(),
            method: None,
            path: None,
            route: None,
            status: None,
            request_id: None,
            successor_key_id: None,
        }
    }

    /// An entry about `record`, with its id, prefix, owner and environment, performed
    /// by `actor`.
    pub fn about(
        action: AuditAction,
        record: &KeyRecord,
        actor: AuditActor,
        occurred_at: OffsetDateTime,
    ) -> Self {
        Self::about_key(
            action,
            (
                &record.id,
                &record.owner,
                &record.prefix,
                record.environment,
            ),
            actor,
            occurred_at,
        )
    }

    /// [`AuditEntry::about`] a key given by its id, owner, prefix and environment (a
    /// cached entry's, without building its record).
    pub(crate) fn about_key(
        action: AuditAction,
        (id, owner, prefix, environment): (&KeyId, &Owner, &str, Option<Environment>),
        actor: AuditActor,
        occurred_at: OffsetDateTime,
    ) -> Self {
        let mut entry = Self::new(action, *id, owner.clone(), occurred_at);
        entry.prefix = Some(prefix.to_owned());
        entry.environment = environment;
        entry.actor = actor;
        entry
    }
}

/// Which audit entries to read back: [`ManagedKeyStore::audit_log`](crate::store::ManagedKeyStore::audit_log).
///
/// Always one owner's; optionally only about one key or one environment; newest first,
/// at most [`AuditQuery::limit`] entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    owner: Owner,
    key: Option<KeyId>,
    environment: Option<Environment>,
    limit: u32,
}

impl AuditQuery {
    /// The default and the largest number of entries returned.
    pub const MAX_LIMIT: u32 = 1000;

    /// The newest entries of `owner` (at most [`AuditQuery::MAX_LIMIT`]).
    pub fn new(owner: Owner) -> Self {
        Self {
            owner,
            key: None,
            environment: None,
            limit: Self::MAX_LIMIT,
        }
    }

    /// Only entries about `key`.
    #[must_use]
    pub fn for_key(mut self, key: KeyId) -> Self {
        self.key = Some(key);
        self
    }

    /// Only entries about keys of `environment`.
    #[must_use]
    pub fn in_environment(mut self, environment: Environment) -> Self {
        self.environment = Some(environment);
        self
    }

    /// At most `limit` entries (capped at [`AuditQuery::MAX_LIMIT`]).
    #[must_use]
    pub fn with_limit(mut self, limit: u32) -> Self {
        self.limit = limit.min(Self::MAX_LIMIT);
        self
    }

    /// The owner.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The key, if only one key's entries are wanted.
    pub fn key(&self) -> Option<&KeyId> {
        self.key.as_ref()
    }

    /// The environment, if only one environment's entries are wanted.
    pub fn environment(&self) -> Option<Environment> {
        self.environment
    }

    /// The largest number of entries returned.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Whether `entry` is selected (for stores that filter in memory).
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        entry.owner == self.owner
            && self.key.is_none_or(|k| entry.api_key_id == k)
            && self
                .environment
                .is_none_or(|e| entry.environment == Some(e))
    }
}

/// Where audit entries are written.
pub trait AuditSink: Clone + Send + Sync + 'static {
    /// Writes a batch of entries, in order.
    fn write(
        &self,
        entries: Vec<AuditEntry>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
