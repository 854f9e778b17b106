//! The authenticated key, as handlers see it.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::key::{Environment, KeyId};
use crate::rejection::RejectionKind;
use crate::scope::{Grants, ScopeModel};
use crate::store::{CachedRecord, KeyRecord, Owner, Rotation};

/// The key a request was authenticated with, put in the request extensions by the
/// layer: a plain value describing the key. Cheap to clone (one `Arc`).
///
/// In axum, take it as an extractor: `principal: Principal` refuses the request with
/// 401 when there is none, `Option<Principal>` accepts anonymous requests (optional
/// authentication).
#[derive(Clone)]
pub struct Principal {
    record: Arc<CachedRecord>,
    sunset: Option<OffsetDateTime>,
    /// Nanoseconds since the Unix epoch.
    authenticated_at: i128,
    /// The id of the once-per-request rate limit that charged the request this
    /// principal rides in (0: none), so that stacked guards of one front door charge
    /// it once. Kept here because the limiter reads the principal anyway: marking costs
    /// no extensions insert.
    charged_by: u64,
}

impl Principal {
    pub(crate) fn new(
        record: Arc<CachedRecord>,
        sunset: Option<OffsetDateTime>,
        authenticated_at: i128,
    ) -> Self {
        Self {
            record,
            sunset,
            authenticated_at,
            charged_by: 0,
        }
    }

    /// The once-per-request rate limit that charged this request (0: none).
    pub(crate) fn charged_by(&self) -> u64 {
        self.charged_by
    }

    /// Records that the once-per-request rate limit `id` charged this request.
    pub(crate) fn mark_charged(&mut self, id: u64) {
        self.charged_by = id;
    }

    /// The key's public id.
    pub fn key_id(&self) -> &KeyId {
        self.record.id()
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        self.record.name()
    }

    /// The organization or user the key acts for.
    pub fn owner(&self) -> &Owner {
        self.record.owner()
    }

    /// The key's environment. Partition data on it: a test key must never reach live
    /// data.
    pub fn environment(&self) -> Option<Environment> {
        self.record.environment()
    }

    /// The scopes granted to the key, as stored (before implications).
    pub fn scopes(&self) -> &[String] {
        self.record.scopes()
    }

    /// When the key expires, if ever.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.record.expires_at()
    }

    /// The rotation state, when the key has been superseded.
    pub fn rotation(&self) -> Option<&Rotation> {
        self.record.rotation()
    }

    /// The end of the grace period while the key is superseded but still accepted
    /// (sent as the `Sunset` header).
    pub fn sunset(&self) -> Option<OffsetDateTime> {
        self.sunset
    }

    /// The key's scopes under `model`, with implications and the scopes granted to
    /// every key applied.
    pub fn grants(&self, model: &ScopeModel) -> Grants {
        self.grants_ref(model).into_owned()
    }

    /// [`Principal::grants`] without a clone: resolved once per cached record (kept
    /// with it by the cache), not once per request; afresh under another model.
    pub(crate) fn grants_ref(&self, model: &ScopeModel) -> Cow<'_, Grants> {
        match self.record.derived(|scopes| model.grants(scopes)) {
            Some(grants) if grants.belongs_to(model) => Cow::Borrowed(grants),
            _ => Cow::Owned(model.grants(self.record.scopes())),
        }
    }

    /// Organization isolation (Performance Blocks: "you cannot reach data outside that
    /// organization, even with elevated scopes"): `Ok` when an organization key
    /// belongs to `organization`, [`RejectionKind::ForeignResource`] (403) otherwise. A
    /// personal key never passes here; use [`Principal::check_organization_with`].
    ///
    /// # Errors
    ///
    /// [`RejectionKind::ForeignResource`].
    pub fn check_organization(&self, organization: &str) -> Result<(), RejectionKind> {
        self.check_organization_with(organization, |_, _| false)
    }

    /// Like [`Principal::check_organization`], and a personal key (PgBeam's `pbu_`)
    /// passes when `is_member(user, organization)` says its user belongs there.
    ///
    /// # Errors
    ///
    /// [`RejectionKind::ForeignResource`].
    pub fn check_organization_with(
        &self,
        organization: &str,
        is_member: impl FnOnce(&str, &str) -> bool,
    ) -> Result<(), RejectionKind> {
        let allowed = match self.owner() {
            Owner::Organization(id) => &**id == organization,
            Owner::User(user) => is_member(user, organization),
        };
        if allowed {
            Ok(())
        } else {
            Err(RejectionKind::ForeignResource)
        }
    }

    /// When the key was checked (the clock reading expiry and grace were judged at).
    pub fn authenticated_at(&self) -> OffsetDateTime {
        crate::clock::from_unix_nanos(self.authenticated_at)
    }

    /// [`Principal::authenticated_at`] in nanoseconds since the Unix epoch.
    pub(crate) fn authenticated_at_unix_nanos(&self) -> i128 {
        self.authenticated_at
    }

    /// The key's public display prefix, e.g. `pb_live_2hT9xQk1LmZ`.
    pub fn prefix(&self) -> &str {
        self.record.prefix()
    }

    /// The key's free-form application data.
    pub fn metadata(&self) -> &serde_json::Map<String, serde_json::Value> {
        self.record.metadata()
    }

    /// The cache's entry for the key, with every field of its record.
    pub fn cached_record(&self) -> &CachedRecord {
        &self.record
    }

    /// The whole stored record (never contains the secret), built afresh from the
    /// cache's compact entry: it allocates, so read the fields you need through the
    /// accessors above or [`Principal::cached_record`] on a hot path.
    pub fn record(&self) -> KeyRecord {
        self.record.to_record()
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("key_id", self.key_id())
            .field("name", &self.name())
            .field("owner", self.owner())
            .field("environment", &self.environment())
            .field("scopes", &self.scopes())
            .field("sunset", &self.sunset)
            .finish()
    }
}
