use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use crate::budget::{Budgets, UnknownKeyBudget};
use crate::error::ConfigError;
use crate::key::{Digest, Environment, KeyFormat, KeyId, KeyTag, Presented};
use crate::principal::Principal;
use crate::rejection::RejectionKind;
use crate::store::{
    CacheKey, Cached, CachedRecord, CachedStore, Gated, KeyStatus, KeyStore, StoreError, TagCheck,
};

/// Checks presented keys against a [`CachedStore`]: authentication without HTTP, a
/// presented key string in, a [`Principal`] or an [`RejectionKind`] out.
///
/// The [`AuthenticateLayer`](crate::parts::AuthenticateLayer) is a transport around this type; use it
/// directly for other protocols (a WebSocket handshake, a gRPC interceptor).
///
/// ```
/// use tower_api_key::RejectionKind;
/// use tower_api_key::parts::KeyVerifier;
/// use tower_api_key::key::KeyFormat;
/// use tower_api_key::store::{CachedStore, KeyRecord, KeyStore, ManagedKeyStore, MemoryStore, Owner};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let format = KeyFormat::new("pb")?.with_environments(["live", "test"])?;
/// let store = CachedStore::builder(MemoryStore::new()).build()?;
/// let minted = format.generate(Some("live"))?;
/// let now = time::OffsetDateTime::now_utc();
/// store
///     .insert(&KeyRecord::new(&minted, "ci", Owner::organization("acme"), vec![], now))
///     .await?;
///
/// let auth = KeyVerifier::new(store, format);
/// let principal = auth.authenticate(minted.key.expose_secret()).await?;
/// assert_eq!(principal.owner().id(), "acme");
/// assert_eq!(auth.authenticate("pb_live_nope").await.unwrap_err(), RejectionKind::Malformed);
/// # Ok(())
/// # }
/// ```
///
///
/// In order: the length cap, the format and checksum (no cache or store access for
/// malformed input), the cached lookup by id (or by digest for imported keys), a
/// constant-time digest comparison, then revocation, expiry and rotation grace against
/// the clock, then the environment.
///
/// On a cache miss, a tagged native key's tag is checked first (see
/// [`TagKey`](crate::key::TagKey)): a forged tag is [`RejectionKind::Unknown`] with no
/// lookup and no charge to any budget, and a genuine one is looked up without a charge.
///
/// A cache miss for any other key (untagged, or imported) that the store has not found
/// lately is charged to the client's [unknown-key budget](crate::budget) (100 per minute
/// by default) before the lookup, and given back unless the lookup ends in
/// [`RejectionKind::Unknown`]. Past the budget the key is refused with
/// [`RejectionKind::TooManyUnknownKeys`] (429) without a lookup. Clones share the
/// budgets.
pub struct KeyVerifier<S> {
    store: CachedStore<S>,
    formats: Arc<[KeyFormat]>,
    environments: Option<Arc<[Environment]>>,
    budgets: Option<Arc<Budgets>>,
    refuse_untagged: bool,
    /// What the verifier reports once, or at most once per interval.
    reports: Arc<Reports>,
}

/// Log lines that would repeat on every request, kept to one (or one per interval).
#[derive(Debug)]
struct Reports {
    /// Whether the missing client address was reported.
    no_client: AtomicBool,
    /// When a store failure was last logged (nanoseconds since the Unix epoch), or
    /// `i64::MIN`.
    outage_logged_at: AtomicI64,
}

/// The shortest time between two log lines about store failures behind 503s.
const OUTAGE_LOG_INTERVAL_NANOS: i64 = 10_000_000_000;

/// The counter of cache misses whose client could not be told (no `ConnectInfo`, or a
/// forwarding header missing behind a trusted proxy) while an unknown-key budget is on:
/// they share one budget.
pub const UNIDENTIFIED_CLIENTS_METRIC: &str = "tower_api_key_unidentified_clients_total";

impl<S> Clone for KeyVerifier<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            formats: Arc::clone(&self.formats),
            environments: self.environments.clone(),
            budgets: self.budgets.clone(),
            refuse_untagged: self.refuse_untagged,
            reports: Arc::clone(&self.reports),
        }
    }
}

impl<S> KeyVerifier<S> {
    /// Accepts keys of `format` found in `store`, in every environment, with the
    /// default unknown-key budget (100 per minute per client).
    pub fn new(store: CachedStore<S>, format: KeyFormat) -> Self {
        Self {
            store,
            formats: Arc::from(vec![format]),
            environments: None,
            budgets: Some(Arc::new(Budgets::new(UnknownKeyBudget::default()))),
            refuse_untagged: false,
            reports: Arc::new(Reports {
                no_client: AtomicBool::new(false),
                outage_logged_at: AtomicI64::new(i64::MIN),
            }),
        }
    }

    /// Refuses native keys without a tag ([`RejectionKind::Unknown`], 401, no lookup):
    /// for a deployment whose store has a tag secret and whose untagged keys have all
    /// been rotated (a rotation's successor is tagged) or revoked. Every unknown native
    /// key then costs no lookup at all; only imported keys still go through the
    /// [unknown-key budget](crate::budget).
    #[must_use]
    pub fn refusing_untagged_keys(self) -> Self {
        Self {
            refuse_untagged: true,
            ..self
        }
    }

    /// Replaces the per-client budget of lookups that end in "unknown key" (see
    /// [`budget`](crate::budget)).
    #[must_use]
    pub fn with_unknown_key_budget(self, budget: UnknownKeyBudget) -> Self {
        Self {
            budgets: Some(Arc::new(Budgets::new(budget))),
            ..self
        }
    }

    /// Removes the unknown-key budget: every distinct well-formed key then costs a
    /// store lookup, bounded only by the cache's cap on concurrent lookups. For tests
    /// and for deployments that limit unauthenticated traffic in front of this one.
    #[must_use]
    pub fn without_unknown_key_budget(self) -> Self {
        Self {
            budgets: None,
            ..self
        }
    }

    /// Also accepts keys of another format (PgBeam's `pbo_` and `pbu_` side by side).
    #[must_use]
    pub fn with_format(self, format: KeyFormat) -> Self {
        let mut formats = self.formats.to_vec();
        formats.push(format);
        Self {
            formats: formats.into(),
            ..self
        }
    }

    /// Accepts keys of `formats` instead, sharing this verifier's budgets and reports
    /// (the surfaces of one front door).
    pub(crate) fn with_formats(&self, formats: Vec<KeyFormat>) -> Self {
        Self {
            formats: formats.into(),
            ..self.clone()
        }
    }

    /// Accepts only keys of these environments; others get
    /// [`RejectionKind::WrongEnvironment`] (403). A production deployment refuses test keys
    /// this way.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an invalid environment name, or one no format mints.
    pub fn with_environments<I, E>(self, environments: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = E>,
        E: AsRef<str>,
    {
        let mut allowed = Vec::new();
        for env in environments {
            let env = Environment::new(env.as_ref())?;
            if !self.formats.iter().any(|f| f.environments().contains(&env)) {
                return Err(ConfigError::new(format!(
                    "environment {env:?} is not an environment of any configured key format"
                )));
            }
            allowed.push(env);
        }
        if allowed.is_empty() {
            return Err(ConfigError::new(
                "an empty environment list would refuse every key",
            ));
        }
        Ok(Self {
            environments: Some(allowed.into()),
            ..self
        })
    }

    /// The cached store.
    pub fn store(&self) -> &CachedStore<S> {
        &self.store
    }

    /// The accepted key formats.
    pub fn formats(&self) -> &[KeyFormat] {
        &self.formats
    }
}

/// The first, synchronous step of an authentication: either an answer (a malformed
/// key, or a cache hit) or the lookup still to make.
pub(crate) enum Step {
    Admit(Principal),
    /// Refused, with the public id of the presented key when it parsed as a native
    /// key (for the log line; the key is never read twice).
    Refuse(RejectionKind, Option<KeyId>),
    Miss(Lookup),
}

impl Step {
    /// The answer of a check that ran on a cached record.
    fn decided(verdict: Result<Principal, RejectionKind>, key_id: Option<KeyId>) -> Self {
        match verdict {
            Ok(principal) => Self::Admit(principal),
            Err(outcome) => Self::Refuse(outcome, key_id),
        }
    }
}

/// A store lookup still to make, owning everything it needs.
#[derive(Clone, Copy)]
pub(crate) struct Lookup {
    key: CacheKey,
    digest: Digest,
    environment: Option<Environment>,
    native: bool,
    /// The store has found a record for this key (the cache may have dropped it
    /// since): the lookup refreshes a real key and is not charged to
    /// the client's budget.
    known: bool,
    /// A native key's tag, checked before the lookup.
    tag: Option<KeyTag>,
}

impl Lookup {
    /// The public id of the key being looked up (none for imported keys).
    pub(crate) fn key_id(&self) -> Option<KeyId> {
        match self.key {
            CacheKey::Id(id) => Some(id),
            CacheKey::Digest(_) => None,
        }
    }
}

impl<S: KeyStore> KeyVerifier<S> {
    /// Authenticates one presented key, from a client that cannot be told: its lookups
    /// are charged to the one budget all such calls share. Use
    /// [`KeyVerifier::authenticate_from`] when the client's address is known.
    ///
    /// # Errors
    ///
    /// The [`RejectionKind`] that refuses it: `Malformed`, `Unknown`, `Revoked`, `Expired`,
    /// `WrongEnvironment`, `StoreUnavailable` or `TooManyUnknownKeys`.
    pub async fn authenticate(&self, presented: &str) -> Result<Principal, RejectionKind> {
        self.authenticate_from(None, presented).await
    }

    /// Authenticates one presented key sent by `client`, whose
    /// [unknown-key budget](crate::budget) a lookup is charged to (`None`: a client
    /// that cannot be told; all such share one budget).
    ///
    /// # Errors
    ///
    /// As [`KeyVerifier::authenticate`], and `TooManyUnknownKeys` past the budget.
    pub async fn authenticate_from(
        &self,
        client: Option<IpAddr>,
        presented: &str,
    ) -> Result<Principal, RejectionKind> {
        match self.start(presented.as_bytes()) {
            Step::Admit(principal) => Ok(principal),
            Step::Refuse(outcome, _) => Err(outcome),
            Step::Miss(lookup) => self.finish(lookup, client).await,
        }
    }

    /// Parses the key and answers from the cache when it can, without awaiting.
    /// The digest is only computed once a record (or a miss) makes it necessary.
    pub(crate) fn start(&self, presented: &[u8]) -> Step {
        let Some(parsed) = self.parse(presented) else {
            return Step::Refuse(RejectionKind::Malformed, None);
        };
        // One clock read serves the cache's freshness check and the record's checks.
        let now = self.store.clock().now_unix_nanos();
        match parsed {
            Presented::Native(key) => {
                let id = *key.id();
                let cache_key = CacheKey::Id(id);
                match self.store.peek(&cache_key, now) {
                    Some(Cached::Unknown) => Step::Refuse(RejectionKind::Unknown, Some(id)),
                    Some(Cached::Found(record)) => Step::decided(
                        self.verify(record, &key.digest(), key.environment(), true, now),
                        Some(id),
                    ),
                    None if self.refuse_untagged && !key.is_tagged() => {
                        Step::Refuse(RejectionKind::Unknown, Some(id))
                    }
                    None => {
                        let digest = key.digest();
                        Step::Miss(Lookup {
                            key: cache_key,
                            digest,
                            environment: key.environment(),
                            native: true,
                            known: self.knows(&cache_key),
                            tag: key.tag(&digest),
                        })
                    }
                }
            }
            Presented::Imported(text) => {
                let digest = Digest::of(text);
                let cache_key = CacheKey::Digest(*digest.as_bytes());
                match self.store.peek(&cache_key, now) {
                    Some(Cached::Unknown) => Step::Refuse(RejectionKind::Unknown, None),
                    Some(Cached::Found(record)) => {
                        Step::decided(self.verify(record, &digest, None, false, now), None)
                    }
                    None => Step::Miss(Lookup {
                        key: cache_key,
                        digest,
                        environment: None,
                        native: false,
                        known: self.knows(&cache_key),
                        tag: None,
                    }),
                }
            }
        }
    }

    /// Whether the store has found `key` (its record is still held, or the budget
    /// remembers it): a lookup for it is not charged.
    fn knows(&self, key: &CacheKey) -> bool {
        self.store.holds(key) || self.budgets.as_ref().is_some_and(|b| b.known.contains(key))
    }

    /// A native key of any format; failing that, an imported key, unless some format
    /// could take the input for a mistyped native key.
    fn parse<'a>(&self, presented: &'a [u8]) -> Option<Presented<'a>> {
        if let [format] = &*self.formats {
            return format.parse_bytes(presented);
        }
        if let Some(key) = self
            .formats
            .iter()
            .find_map(|f| f.parse_native_bytes(presented))
        {
            return Some(Presented::Native(key));
        }
        if self.formats.iter().any(|f| f.could_be_native(presented)) {
            return None;
        }
        self.formats
            .iter()
            .find_map(|f| f.parse_imported_bytes(presented))
            .map(Presented::Imported)
    }

    /// Completes a lookup that missed the cache, charging it to `client`'s budget
    /// unless the key is known.
    pub(crate) async fn finish(
        &self,
        lookup: Lookup,
        client: Option<IpAddr>,
    ) -> Result<Principal, RejectionKind> {
        // A tag made by one of the store's secrets means the key was minted here: its
        // lookup is never charged. A forged tag ends here, with no lookup at all.
        let vouched = match &lookup.tag {
            Some(tag) => match self.store.check_tag(tag).await {
                TagCheck::Valid => true,
                TagCheck::Forged => return Err(RejectionKind::Unknown),
                TagCheck::Unverifiable => false,
            },
            None => false,
        };
        // Charged only when this request makes the lookup itself: not when it joins a
        // lookup in flight for the same key, nor to refresh a record the cache holds.
        let budgets = self
            .budgets
            .as_deref()
            .filter(|_| !lookup.known && !vouched);
        let gate = || match budgets {
            Some(budgets) => budgets
                .reserve(client, self.store.clock().now_unix_nanos())
                .map(Some),
            None => Ok(None),
        };
        let (record, reservation) = match self.store.lookup_gated(lookup.key, gate).await {
            Ok(found) => found,
            Err(Gated::Refused(retry_after)) => {
                return Err(RejectionKind::TooManyUnknownKeys { retry_after })
            }
            Err(Gated::Store(error)) => {
                self.report_outage(&error);
                return Err(RejectionKind::StoreUnavailable);
            }
        };
        let record_found = record.is_some();
        let verdict = match record {
            Some(record) => {
                let now = self.store.clock().now_unix_nanos();
                self.verify(
                    record,
                    &lookup.digest,
                    lookup.environment,
                    lookup.native,
                    now,
                )
            }
            None => Err(RejectionKind::Unknown),
        };
        // Only keys a tag cannot vouch for ever need the budget's memory.
        if let Some(budgets) = self.budgets.as_deref().filter(|_| !vouched) {
            if record_found {
                budgets.known.remember(&lookup.key);
            } else {
                budgets.known.forget(&lookup.key);
            }
        }
        // The lookup stays charged only when it found no key for this secret.
        if let (Some(Some(reservation)), Err(RejectionKind::Unknown)) = (reservation, &verdict) {
            reservation.keep();
        }
        verdict
    }

    /// A request's client could not be told while a budget is on: it shares one
    /// budget with every other such request. Said once at WARN, counted every time.
    pub(crate) fn note_unidentified_client(&self) {
        if self.budgets.is_none() {
            return;
        }
        metrics::counter!(UNIDENTIFIED_CLIENTS_METRIC).increment(1);
        if !self.reports.no_client.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "tower_api_key",
                "a request's client address could not be told, so every such request shares \
                 one unknown-key budget: serve the router with \
                 `into_make_service_with_connect_info::<SocketAddr>()`, or behind a proxy set \
                 `with_client_ip(ClientIp::x_forwarded_for(n))` (counted in {UNIDENTIFIED_CLIENTS_METRIC})"
            );
        }
    }

    /// Logs a store failure answered with 503, with its cause: at most once per
    /// interval, so an outage cannot flood the log. A store whose data or schema is not
    /// what this crate expects is an ERROR naming `migrate()`.
    fn report_outage(&self, error: &StoreError) {
        let now = self.store.clock().now_unix_nanos();
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let last = self.reports.outage_logged_at.load(Ordering::Relaxed);
        if last != i64::MIN && now.saturating_sub(last) < OUTAGE_LOG_INTERVAL_NANOS {
            return;
        }
        if self
            .reports
            .outage_logged_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        match error {
            StoreError::Corrupt(_) => tracing::error!(
                target: "tower_api_key",
                %error,
                "the key store cannot be read as tower-api-key expects, so requests get 503: \
                 if its tables are missing or older than this release, run migrate() at start-up"
            ),
            _ => tracing::warn!(
                target: "tower_api_key",
                %error,
                "the key store is unavailable, so requests that miss the cache get 503"
            ),
        }
    }

    fn verify(
        &self,
        record: Arc<CachedRecord>,
        digest: &Digest,
        environment: Option<Environment>,
        native: bool,
        now: i128,
    ) -> Result<Principal, RejectionKind> {
        // The digest comparison is the authentication; the environment check is a
        // second line against a record stored under the wrong prefix.
        if !record.digest().ct_eq(digest) || (native && record.environment() != environment) {
            return Err(RejectionKind::Unknown);
        }
        let sunset = match record.status_at_unix_nanos(now) {
            KeyStatus::Active => None,
            KeyStatus::InGrace(until) => Some(until),
            KeyStatus::Revoked => return Err(RejectionKind::Revoked),
            KeyStatus::Expired | KeyStatus::Superseded => return Err(RejectionKind::Expired),
        };
        if let Some(allowed) = &self.environments {
            if !record
                .environment()
                .is_some_and(|env| allowed.contains(&env))
            {
                return Err(RejectionKind::WrongEnvironment);
            }
        }
        Ok(Principal::new(record, sunset, now))
    }
}

impl<S: fmt::Debug> fmt::Debug for KeyVerifier<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVerifier")
            .field("store", &self.store)
            .field("formats", &self.formats)
            .field("environments", &self.environments)
            .field("budgets", &self.budgets)
            .field("refuse_untagged", &self.refuse_untagged)
            .finish()
    }
}
