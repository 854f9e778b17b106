//! One entry point: [`ApiKeyAuth`] builds, over one shared cache, everything that must
//! agree: the authentication layer, the [`KeyManager`] and the per-route [`Guard`]s.
//!
//! Building a layer and a manager over two [`CachedStore`]s of one store is the easy
//! mistake that makes revocation slow: a key revoked through the manager's cache stays
//! in the layer's until its TTL. Through `ApiKeyAuth` there is only one cache, so a
//! revocation is seen by the very next request through every guard it built.
//!
//! ```
//! use axum::handler::Handler;
//! use axum::routing::get;
//! use axum::Router;
//! use tower_api_key::auth::ApiKeyAuth;
//! use tower_api_key::key::KeyFormat;
//! use tower_api_key::store::MemoryStore;
//! use tower_api_key::ScopeModel;
//!
//! # fn main() -> Result<(), tower_api_key::ConfigError> {
//! let scopes = ScopeModel::builder()
//!     .resource("invoices", ["read", "write"])
//!     .action_implies("write", "read")
//!     .build()?;
//! let auth = ApiKeyAuth::builder(MemoryStore::new())
//!     .format(KeyFormat::new("inv")?.with_environments(["live", "test"])?)
//!     .scopes(scopes)
//!     .rate_limit("100/min".parse()?)
//!     .build()?;
//!
//! // Each guard authenticates, checks the route's scopes, then spends the rate limit,
//! // in that order, on the one method it is attached to.
//! async fn list() -> &'static str { "list" }
//! async fn create() -> &'static str { "created" }
//!
//! let app: Router = Router::new().route(
//!     "/invoices",
//!     get(list.layer(auth.guard("invoices:read")?))
//!         .post(create.layer(auth.guard("invoices:write")?)),
//! );
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::handler::HandlerService;
use tower_layer::{Identity, Layer};

use crate::audit::Auditor;
use crate::authenticate::{Authenticate, AuthenticateLayer, KeyVerifier};
use crate::budget::UnknownKeyBudget;
use crate::client::ClientIp;
use crate::clock::{Clock, SharedClock};
use crate::credentials::KeySources;
use crate::error::ConfigError;
use crate::key::KeyFormat;
use crate::manage::KeyManager;
use crate::rate_limit::{Limits, MemoryLimiter, RateLimitLayer, RatePolicy};
use crate::rejection::Responder;
use crate::require_scopes::{RequireScopes, RequireScopesLayer};
use crate::scope::ScopeModel;
use crate::store::{CachedStore, CachedStoreBuilder, KeyStore, LastUsed, ManagedKeyStore};
use crate::usage::{Usage, UsageBuilder};

/// Authentication, key management and route guards over one cache of one store. Built
/// by [`ApiKeyAuth::builder`]; cheap to clone.
///
/// `R` is the rate-limit layer every guard ends with: [`Identity`] (none) unless
/// [`ApiKeyAuthBuilder::rate_limit`] or [`ApiKeyAuthBuilder::rate_limits`] was called
/// ([`RateLimitLayer`] for [`Limits`], `Either<RateLimitLayer, Identity>` for an
/// `Option<Limits>` chosen at start-up).
///
/// The builder's own settings make the unnamed surface; named surfaces
/// ([`ApiKeyAuthBuilder::surface`], [`ApiKeyAuth::surface`]) read keys their own way
/// over the same cache, manager, budget and limits.
pub struct ApiKeyAuth<K, R = Identity> {
    /// Holds the one cache and the scope model; mints keys of this surface's format.
    manager: KeyManager<K>,
    /// This surface's authentication layer.
    layer: AuthenticateLayer<K>,
    rate: R,
    /// Every named surface, for [`ApiKeyAuth::surface`].
    surfaces: Arc<[NamedSurface<K>]>,
}

/// One named surface, built: its layer and its manager over the one cache.
struct NamedSurface<K> {
    name: String,
    layer: AuthenticateLayer<K>,
    manager: KeyManager<K>,
}

/// The stores that a live [`ApiKeyAuth`] is built over, by store type and
/// [`KeyStore::instance_id`]: a second front door over a clone of one of them is
/// refused when built.
static FRONT_DOORS: std::sync::Mutex<Vec<(std::any::TypeId, usize)>> =
    std::sync::Mutex::new(Vec::new());

/// One claimed store, released when the last clone of its cache (held by the layer,
/// every guard and the manager) is dropped.
struct FrontDoor(Option<(std::any::TypeId, usize)>);

impl FrontDoor {
    fn claim<K: KeyStore>(store: &K) -> Result<Self, ConfigError> {
        let Some(id) = store.instance_id() else {
            return Ok(Self(None));
        };
        let claim = (std::any::TypeId::of::<K>(), id);
        let mut doors = FRONT_DOORS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if doors.contains(&claim) {
            return Err(ConfigError::new(
                "a second ApiKeyAuth over a clone of the same store: its own cache would keep \
                 admitting keys revoked through the first (for up to the cache TTL) and its \
                 own rate limits would double every limit; build one ApiKeyAuth and clone it \
                 (clones share the cache, the manager and the limits)",
            ));
        }
        doors.push(claim);
        Ok(Self(Some(claim)))
    }
}

impl Drop for FrontDoor {
    fn drop(&mut self) {
        if let Some(claim) = self.0 {
            let mut doors = FRONT_DOORS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            doors.retain(|held| *held != claim);
        }
    }
}

impl<K, R: Clone> Clone for ApiKeyAuth<K, R> {
    fn clone(&self) -> Self {
        Self {
            manager: self.manager.clone(),
            layer: self.layer.clone(),
            rate: self.rate.clone(),
            surfaces: Arc::clone(&self.surfaces),
        }
    }
}

impl<K, R> fmt::Debug for ApiKeyAuth<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuth")
            .field("manager", &self.manager)
            .field(
                "surfaces",
                &self.surfaces.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<K: KeyStore> ApiKeyAuth<K> {
    /// Starts building over `store` (wrapped in one [`CachedStore`]). A key format and a
    /// scope model are required.
    pub fn builder(store: K) -> ApiKeyAuthBuilder<K> {
        ApiKeyAuthBuilder {
            cache: CachedStore::builder(store),
            clock: None,
            format: None,
            model: None,
            configure_layer: Vec::new(),
            surfaces: Vec::new(),
            client_ip: None,
            unknown_key_budget: Some(UnknownKeyBudget::default()),
            refuse_untagged: false,
            rate_headers: false,
            last_used: None,
            usage: None,
            auditor: None,
            rate: Identity::new(),
        }
    }
}

impl<K: KeyStore, R: Clone> ApiKeyAuth<K, R> {
    /// A guard for one route: authentication, then the scope `requirement` (an
    /// expression such as `"invoices:write"` or `"a:read AND (b:read OR admin)"`),
    /// then the rate limit. Attach it to a handler (`handler.layer(guard)`), so that it
    /// guards exactly that method: on a `MethodRouter` or a `Router` it does not
    /// compile (see [`Guard`]). Stacked on one handler, guards require all of their
    /// scopes and charge the rate limit once.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the requirement does not parse or names a scope the model
    /// does not declare: found when the router is built, not at the first request.
    pub fn guard(&self, requirement: &str) -> Result<Guard<K, R>, ConfigError> {
        Ok(Guard {
            auth: self.layer.clone(),
            scope: RequireScopesLayer::new(self.manager.scope_model(), requirement)?,
            rate: self.rate.clone(),
        })
    }

    /// The named surface `name` (see [`ApiKeyAuthBuilder::surface`]): the same front
    /// door, whose [`guard`](Self::guard), [`layer`](Self::layer),
    /// [`respond`](Self::respond) and [`manager`](Self::manager) read keys from that
    /// surface's sources and answer in its responder. Its manager mints keys of the
    /// surface's first format, when it has formats of its own.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when no surface has that name: found when the router is built.
    pub fn surface(&self, name: &str) -> Result<Self, ConfigError> {
        let surface = self
            .surfaces
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                ConfigError::new(format!(
                    "no surface named {name:?}: add it with ApiKeyAuthBuilder::surface"
                ))
            })?;
        Ok(Self {
            manager: surface.manager.clone(),
            layer: surface.layer.clone(),
            rate: self.rate.clone(),
            surfaces: Arc::clone(&self.surfaces),
        })
    }

    /// The rate-limit layer every guard ends with, for the surface's OpenAPI
    /// description (`openapi.rs`).
    #[cfg(feature = "utoipa")]
    pub(crate) fn rate(&self) -> &R {
        &self.rate
    }

    /// The authentication layer alone, for a router where every route needs a key but
    /// no particular scope (`Router::layer`). Mind that `Router::layer` wraps only the
    /// routes added before it: a route added afterwards is not authenticated at all.
    /// A guard per route cannot be left out that way.
    pub fn layer(&self) -> AuthenticateLayer<K> {
        self.layer.clone()
    }

    /// A key manager's refusal ([`ManageError`](crate::manage::ManageError)) answered
    /// in this front door's style, the one every guard answers in: one error body for
    /// the application, with no wrapper type. A store outage is a 503 with
    /// `Retry-After`, as from a guard.
    ///
    /// ```
    /// # use tower_api_key::prelude::*;
    /// # fn main() -> Result<(), tower_api_key::ConfigError> {
    /// # let scopes = ScopeModel::builder().resource("invoices", ["read"]).build()?;
    /// let auth = ApiKeyAuth::builder(MemoryStore::new())
    ///     .format(KeyFormat::new("inv")?)
    ///     .scopes(scopes)
    ///     .respond_with(|refusal| (refusal.status(), refusal.message().into_owned()))
    ///     .build()?;
    /// let response = auth.respond(&tower_api_key::manage::ManageError::NotFound);
    /// assert_eq!(response.status(), 404);
    /// # Ok(())
    /// # }
    /// ```
    pub fn respond(&self, error: &crate::manage::ManageError) -> axum::response::Response {
        self.layer
            .renderer()
            .render(error.rejection())
            .map(axum::body::Body::from)
    }

    /// Writes what is buffered: last-used times (see
    /// [`last_used`](ApiKeyAuthBuilder::last_used)), usage counts (see
    /// [`usage`](ApiKeyAuthBuilder::usage)) and request audit entries (see
    /// [`audit_requests`](ApiKeyAuthBuilder::audit_requests)). Call it at shutdown,
    /// after the server stopped taking requests.
    ///
    /// # Errors
    ///
    /// The store's error when last-used times or usage counts could not be written
    /// (what could not be written is kept for the next flush); audit entries are
    /// flushed either way.
    pub async fn flush(&self) -> Result<(), crate::store::StoreError> {
        let written = match self.layer.last_used_buffer() {
            Some(last_used) => last_used.flush().await,
            None => Ok(()),
        };
        let counted = match self.layer.usage() {
            Some(usage) => usage.flush().await,
            None => Ok(()),
        };
        if let Some(auditor) = self.layer.request_auditor() {
            auditor.flush().await;
        }
        written.and(counted)
    }

    /// The usage counters, when [`usage`](ApiKeyAuthBuilder::usage) is on.
    pub fn usage(&self) -> Option<&Usage> {
        self.layer.usage()
    }

    /// The key manager, writing through the same cache the guards read.
    pub fn manager(&self) -> &KeyManager<K> {
        &self.manager
    }

    /// The cache, for an invalidation listener (PostgreSQL's NOTIFY) or metrics.
    pub fn cache(&self) -> &CachedStore<K> {
        self.manager.store()
    }

    /// The scope model.
    pub fn scope_model(&self) -> &ScopeModel {
        self.manager.scope_model()
    }
}

type LayerChange<K> =
    Box<dyn FnOnce(AuthenticateLayer<K>) -> Result<AuthenticateLayer<K>, ConfigError>>;

/// What a builder's rate limits become in its guards: nothing, a [`RateLimitLayer`] on
/// the builder's clock, or either (for `Option<Limits<_>>`). Sealed: implemented by
/// [`Identity`], [`Limits`] and `Option<Limits<_>>` only, the types
/// [`ApiKeyAuthBuilder::rate_limits`] takes.
pub trait GuardRate: sealed::SealedRate {
    /// The last layer of every guard.
    type Layer: Clone;

    /// The layer, with the limits on `clock` when one was set, adding `RateLimit`
    /// headers to admitted responses when `success_headers`.
    fn into_layer(self, clock: Option<SharedClock>, success_headers: bool) -> Self::Layer;
}

impl GuardRate for Identity {
    type Layer = Self;

    fn into_layer(self, _clock: Option<SharedClock>, _success_headers: bool) -> Self {
        self
    }
}

impl<L: Clone> GuardRate for Limits<L> {
    type Layer = RateLimitLayer<L>;

    fn into_layer(self, clock: Option<SharedClock>, success_headers: bool) -> RateLimitLayer<L> {
        // One clock for the authenticator and the limits: a request's time is read once.
        let limits = self.on_request_clock(clock);
        // Stacked guards ("A and B") charge a request once.
        RateLimitLayer::new(limits)
            .with_success_headers(success_headers)
            .once_per_request()
    }
}

/// Rate limits switched on or off when the server starts (a configuration file, a
/// command-line flag): `None` lets every request through its guards uncharged.
impl<L: Clone> GuardRate for Option<Limits<L>> {
    type Layer = tower::util::Either<RateLimitLayer<L>, Identity>;

    fn into_layer(self, clock: Option<SharedClock>, success_headers: bool) -> Self::Layer {
        match self {
            Some(limits) => tower::util::Either::Left(limits.into_layer(clock, success_headers)),
            None => tower::util::Either::Right(Identity::new()),
        }
    }
}

/// Builds an [`ApiKeyAuth`]: see [`ApiKeyAuth::builder`]. Nothing is checked until
/// [`build`](Self::build).
#[must_use]
pub struct ApiKeyAuthBuilder<K, R = Identity> {
    cache: CachedStoreBuilder<K>,
    clock: Option<SharedClock>,
    format: Option<KeyFormat>,
    model: Option<ScopeModel>,
    configure_layer: Vec<LayerChange<K>>,
    /// The named surfaces, in the order they were added.
    surfaces: Vec<Surface<K>>,
    client_ip: Option<ClientIp>,
    unknown_key_budget: Option<UnknownKeyBudget>,
    refuse_untagged: bool,
    /// `RateLimit` headers on admitted responses too.
    rate_headers: bool,
    /// Starts the last-used buffer over the one cache, once it is built.
    last_used: Option<StartLastUsed<K>>,
    /// Starts the usage counters over the one cache, once it is built.
    usage: Option<StartUsage<K>>,
    auditor: Option<Auditor>,
    rate: R,
}

type StartLastUsed<K> = Box<dyn FnOnce(CachedStore<K>) -> LastUsed>;
type StartUsage<K> = Box<dyn FnOnce(CachedStore<K>) -> Result<Usage, ConfigError>>;

impl<K, R> fmt::Debug for ApiKeyAuthBuilder<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuthBuilder")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl<K: KeyStore + 'static, R: GuardRate> ApiKeyAuthBuilder<K, R> {
    /// The clock of everything: the cache's TTLs, expiry, rotation grace, rate windows
    /// and quota periods. Tests pass a [`ManualClock`](crate::clock::ManualClock) and
    /// move time instead of sleeping.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        let clock: SharedClock = Arc::new(clock);
        self.cache = self.cache.with_clock(Arc::clone(&clock));
        self.clock = Some(clock);
        self
    }

    /// The key format (required): product prefix, environments, imported prefixes.
    pub fn format(mut self, format: KeyFormat) -> Self {
        self.format = Some(format);
        self
    }

    /// The scope model (required): what scopes exist and what implies what.
    pub fn scopes(mut self, model: ScopeModel) -> Self {
        self.model = Some(model);
        self
    }

    /// Adjusts the one cache (TTL, bounds, clock, abuse bounds) before it is built.
    pub fn cache(
        mut self,
        configure: impl FnOnce(CachedStoreBuilder<K>) -> CachedStoreBuilder<K>,
    ) -> Self {
        self.cache = configure(self.cache);
        self
    }

    /// Where keys are read from (`Authorization: Bearer` or `X-API-Key` by default).
    pub fn sources(self, sources: KeySources) -> Self {
        self.configure(move |layer| Ok(layer.with_sources(sources)))
    }

    /// How refusals are answered (the Performance Blocks envelope by default): an
    /// [`ErrorStyle`](crate::rejection::ErrorStyle) or your own [`Responder`]. Every
    /// guard answers in it.
    pub fn responder(self, responder: impl Responder) -> Self {
        self.configure(move |layer| Ok(layer.with_responder(responder)))
    }

    /// Refusals answered by a closure returning anything axum answers with (your own
    /// error type, `(StatusCode, Json<…>)`, …), without type annotations: see
    /// [`responder_fn`](crate::rejection::responder_fn). [`Rejection`](crate::rejection::Rejection)
    /// offers the crate's status, code, message and `Retry-After` seconds to reuse.
    pub fn respond_with<F, T>(self, respond: F) -> Self
    where
        F: Fn(&crate::rejection::Rejection) -> T + Send + Sync + 'static,
        T: axum::response::IntoResponse,
    {
        self.responder(crate::rejection::responder_fn(respond))
    }

    /// Any other setting of the authentication layer (realm, optional keys, …).
    pub fn configure(
        mut self,
        change: impl FnOnce(AuthenticateLayer<K>) -> Result<AuthenticateLayer<K>, ConfigError> + 'static,
    ) -> Self {
        self.configure_layer.push(Box::new(change));
        self
    }

    /// How the client of a request is identified, on every surface: the peer address
    /// unless set (serve with `into_make_service_with_connect_info::<SocketAddr>()`);
    /// behind a reverse proxy, [`ClientIp::x_forwarded_for`] or [`ClientIp::forwarded`].
    pub fn client_ip(mut self, client_ip: ClientIp) -> Self {
        self.client_ip = Some(client_ip);
        self
    }

    /// Adds a named surface: another way into the same API, with its own key sources,
    /// responder, realm and accepted key formats, over the same cache, manager, budgets,
    /// auditor and rate limits. Its guards come from
    /// [`ApiKeyAuth::surface`]`(name)`. The builder's own settings
    /// ([`sources`](Self::sources), [`responder`](Self::responder),
    /// [`format`](Self::format), [`configure`](Self::configure)) are those of the
    /// unnamed surface that [`ApiKeyAuth::guard`] uses; a named surface does not inherit
    /// them.
    ///
    /// ```
    /// use axum::handler::Handler;
    /// use axum::routing::post;
    /// use axum::Router;
    /// use tower_api_key::prelude::*;
    /// use tower_api_key::presets;
    ///
    /// # async fn list() -> &'static str { "list" }
    /// # async fn posts() -> &'static str { "posts" }
    /// # fn main() -> Result<(), ConfigError> {
    /// let auth = ApiKeyAuth::builder(MemoryStore::new())
    ///     .format(KeyFormat::new("pb")?)
    ///     .scopes(ScopeModel::builder().scope("observations:read").scope("public_api").build()?)
    ///     // Bearer keys, the Performance Blocks envelope: the unnamed surface.
    ///     .sources(KeySources::bearer_or_header())
    ///     // The same keys in a JSON body's `api_key`, answered in ProductBridge's style.
    ///     .surface("bridge", |surface| {
    ///         surface
    ///             .sources(KeySources::json_body())
    ///             .responder(presets::product_bridge::error_style())
    ///     })
    ///     .build()?;
    /// let bridge = auth.surface("bridge")?;
    /// let app: Router = Router::new()
    ///     .route("/v1/observations", axum::routing::get(list.layer(auth.guard("observations:read")?)))
    ///     .route("/posts", post(posts.layer(bridge.guard("public_api")?)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn surface(mut self, name: &str, configure: impl FnOnce(Surface<K>) -> Surface<K>) -> Self {
        let surface = configure(Surface {
            name: name.to_owned(),
            formats: Vec::new(),
            changes: Vec::new(),
        });
        self.surfaces.push(surface);
        self
    }

    /// The per-client budget of lookups that end in "unknown key" (100 a minute unless
    /// set; see [`budget`](crate::budget)); `None` removes it, for deployments that
    /// limit unauthenticated traffic in front of this one.
    pub fn unknown_key_budget(mut self, budget: Option<UnknownKeyBudget>) -> Self {
        self.unknown_key_budget = budget;
        self
    }

    /// Refuses native keys without a tag (401, no lookup), once every untagged key has
    /// been rotated or revoked: see
    /// [`KeyVerifier::refusing_untagged_keys`](crate::parts::KeyVerifier::refusing_untagged_keys).
    pub fn refuse_untagged_keys(mut self) -> Self {
        self.refuse_untagged = true;
        self
    }

    /// Audits state-changing requests through `auditor` (off unless set; key lifecycle
    /// changes are always audited by the store).
    pub fn audit_requests(mut self, auditor: Auditor) -> Self {
        self.auditor = Some(auditor);
        self
    }

    /// Every key's rate limit, in process, after the scope check (so a 401 or a 403
    /// never spends it).
    pub fn rate_limit(self, policy: RatePolicy) -> ApiKeyAuthBuilder<K, Limits<MemoryLimiter>> {
        self.rate_limits(Limits::new(policy))
    }

    /// Rate limits and quotas on any backend (per environment, per owner, Redis, …):
    /// a [`Limits`], or an `Option<Limits<_>>` to decide when the server starts
    /// (`None`: no rate limit). Their clock is the builder's, when
    /// [`clock`](Self::clock) is set.
    pub fn rate_limits<G: GuardRate>(self, limits: G) -> ApiKeyAuthBuilder<K, G> {
        ApiKeyAuthBuilder {
            cache: self.cache,
            clock: self.clock,
            format: self.format,
            model: self.model,
            configure_layer: self.configure_layer,
            surfaces: self.surfaces,
            client_ip: self.client_ip,
            unknown_key_budget: self.unknown_key_budget,
            refuse_untagged: self.refuse_untagged,
            rate_headers: self.rate_headers,
            last_used: self.last_used,
            usage: self.usage,
            auditor: self.auditor,
            rate: limits,
        }
    }

    /// Checks everything and builds the one cache, the layer, the manager and the
    /// guards' configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the format or the scope model is missing, or a setting is
    /// invalid.
    pub fn build(self) -> Result<ApiKeyAuth<K, R::Layer>, ConfigError> {
        let format = self.format.ok_or_else(|| {
            ConfigError::new("ApiKeyAuth needs a key format: call .format(KeyFormat::new(\"…\")?)")
        })?;
        let model = self.model.ok_or_else(|| {
            ConfigError::new(
                "ApiKeyAuth needs a scope model: call .scopes(ScopeModel::builder()…build()?)",
            )
        })?;
        let front_door = FrontDoor::claim(self.cache.store_ref())?;
        let mut names: Vec<&str> = Vec::with_capacity(self.surfaces.len());
        for surface in &self.surfaces {
            if surface.name.is_empty() || names.contains(&surface.name.as_str()) {
                return Err(ConfigError::new(format!(
                    "surface names must be distinct and not empty: {:?}",
                    surface.name
                )));
            }
            names.push(&surface.name);
        }
        let cache = self.cache.build()?;
        // Claimed while anything built here lives (a layer or a guard in a router, the
        // manager), since each holds the cache.
        cache.hold(Arc::new(front_door));
        let manager = KeyManager::new(cache.clone(), format.clone(), model.clone());
        let verifier = KeyVerifier::new(cache.clone(), format);
        let verifier = match self.unknown_key_budget {
            Some(budget) => verifier.with_unknown_key_budget(budget),
            None => verifier.without_unknown_key_budget(),
        };
        let verifier = if self.refuse_untagged {
            verifier.refusing_untagged_keys()
        } else {
            verifier
        };
        let last_used = self.last_used.map(|start| start(cache.clone()));
        let usage = self.usage.map(|start| start(cache.clone())).transpose()?;
        // What every surface shares: the verifier's budgets and reports (clones share
        // them), the scope model, the last-used buffer, the auditor, the client address.
        let common = |verifier: KeyVerifier<K>| {
            let mut layer = AuthenticateLayer::new(verifier).with_scope_model(model.clone());
            if let Some(last_used) = &last_used {
                layer = layer.with_last_used(last_used.clone());
            }
            if let Some(usage) = &usage {
                layer = layer.with_usage(usage.clone());
            }
            if let Some(auditor) = &self.auditor {
                layer = layer.with_auditor(auditor.clone());
            }
            if let Some(client_ip) = &self.client_ip {
                layer = layer.with_client_ip(client_ip.clone());
            }
            layer
        };
        let mut surfaces = Vec::with_capacity(self.surfaces.len());
        for surface in self.surfaces {
            let (verifier, manager) = match surface.formats.first() {
                Some(first) => (
                    verifier.with_formats(surface.formats.clone()),
                    KeyManager::new(cache.clone(), first.clone(), model.clone()),
                ),
                None => (verifier.clone(), manager.clone()),
            };
            let mut layer = common(verifier);
            for change in surface.changes {
                layer = change(layer)?;
            }
            surfaces.push(NamedSurface {
                name: surface.name,
                layer,
                manager,
            });
        }
        let mut layer = common(verifier);
        for change in self.configure_layer {
            layer = change(layer)?;
        }
        Ok(ApiKeyAuth {
            manager,
            layer,
            rate: self.rate.into_layer(self.clock, self.rate_headers),
            surfaces: surfaces.into(),
        })
    }
}

impl<K, L> ApiKeyAuthBuilder<K, Limits<L>> {
    /// Adds the `RateLimit` and `RateLimit-Policy` headers to admitted responses too,
    /// not only to 429s, so clients can pace themselves (off unless set).
    pub fn rate_limit_headers(mut self) -> Self {
        self.rate_headers = true;
        self
    }
}

impl<K, L> ApiKeyAuthBuilder<K, Option<Limits<L>>> {
    /// Adds the `RateLimit` and `RateLimit-Policy` headers to admitted responses too,
    /// when there are rate limits: see
    /// [`rate_limit_headers`](ApiKeyAuthBuilder::rate_limit_headers).
    pub fn rate_limit_headers(mut self) -> Self {
        self.rate_headers = true;
        self
    }
}

impl<K: ManagedKeyStore, R> ApiKeyAuthBuilder<K, R> {
    /// Records `last_used_at`, written behind every `interval` (off unless set). Build
    /// within a tokio runtime.
    pub fn last_used(mut self, interval: Duration) -> Self {
        self.last_used = Some(Box::new(move |cache| LastUsed::spawn(cache, interval)));
        self
    }

    /// Counts every request authenticated by a key, by key, hour and outcome, written
    /// behind into the store (off unless set; see [`usage`](crate::usage)).
    /// `configure` sets the flush interval, retention and clock (by default 10 s, 90
    /// days and this front door's clock); read the counts back with
    /// [`KeyManager::usage`]. Build within a tokio runtime.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_api_key::prelude::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ConfigError> {
    /// let auth = ApiKeyAuth::builder(MemoryStore::new())
    ///     .format(KeyFormat::new("pb")?)
    ///     .scopes(ScopeModel::builder().resource("posts", ["read"]).build()?)
    ///     .usage(|usage| usage.with_flush_interval(Duration::from_secs(5)))
    ///     .build()?;
    /// assert!(auth.usage().is_some());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`build`](Self::build) fails with the [`ConfigError`] of an interval or
    /// retention out of bounds.
    pub fn usage(
        mut self,
        configure: impl FnOnce(UsageBuilder<CachedStore<K>>) -> UsageBuilder<CachedStore<K>> + 'static,
    ) -> Self {
        self.usage = Some(Box::new(move |cache: CachedStore<K>| {
            let clock = cache.shared_clock();
            configure(Usage::builder(cache).with_shared_clock(clock)).spawn()
        }));
        self
    }
}

/// The settings of one named surface: see [`ApiKeyAuthBuilder::surface`]. Unset, a
/// surface reads keys from `Authorization: Bearer` or `X-API-Key`, accepts the
/// builder's key format, answers in the Performance Blocks envelope with realm `api`.
/// Nothing is checked until [`ApiKeyAuthBuilder::build`].
#[must_use]
pub struct Surface<K> {
    name: String,
    formats: Vec<KeyFormat>,
    changes: Vec<LayerChange<K>>,
}

impl<K> fmt::Debug for Surface<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Surface")
            .field("name", &self.name)
            .field("formats", &self.formats)
            .finish_non_exhaustive()
    }
}

impl<K: 'static> Surface<K> {
    /// Where this surface reads keys from.
    pub fn sources(self, sources: KeySources) -> Self {
        self.configure(move |layer| Ok(layer.with_sources(sources)))
    }

    /// How this surface answers refusals and, through [`ApiKeyAuth::respond`], key
    /// management errors.
    pub fn responder(self, responder: impl Responder) -> Self {
        self.configure(move |layer| Ok(layer.with_responder(responder)))
    }

    /// Refusals answered by a closure: see [`ApiKeyAuthBuilder::respond_with`].
    pub fn respond_with<F, T>(self, respond: F) -> Self
    where
        F: Fn(&crate::rejection::Rejection) -> T + Send + Sync + 'static,
        T: axum::response::IntoResponse,
    {
        self.responder(crate::rejection::responder_fn(respond))
    }

    /// Accepts keys of `format` on this surface (call again for more formats), instead
    /// of the builder's format: PgBeam's `pbo_` organization keys on one surface and
    /// `pbu_` user keys on another, over one store. The first format is the one this
    /// surface's [manager](ApiKeyAuth::manager) mints.
    pub fn format(mut self, format: KeyFormat) -> Self {
        self.formats.push(format);
        self
    }

    /// Any other setting of this surface's authentication layer (realm, optional keys,
    /// hidden credentials).
    pub fn configure(
        mut self,
        change: impl FnOnce(AuthenticateLayer<K>) -> Result<AuthenticateLayer<K>, ConfigError> + 'static,
    ) -> Self {
        self.changes.push(Box::new(change));
        self
    }
}

/// One handler's guard: authentication, the route's scopes, then the rate limit, as one
/// layer. Made by [`ApiKeyAuth::guard`].
///
/// # On one handler only
///
/// A guard is a layer of one handler, `handler.layer(guard)`, so it guards exactly the
/// method that handler is routed on:
///
/// ```
/// # use axum::handler::Handler;
/// # use axum::routing::get;
/// # use axum::Router;
/// # use tower_api_key::prelude::*;
/// # async fn list() -> &'static str { "list" }
/// # async fn create() -> &'static str { "created" }
/// # fn main() -> Result<(), ConfigError> {
/// # let auth = ApiKeyAuth::builder(MemoryStore::new())
/// #     .format(KeyFormat::new("inv")?)
/// #     .scopes(ScopeModel::builder().resource("invoices", ["read", "write"]).build()?)
/// #     .build()?;
/// let app: Router = Router::new().route(
///     "/invoices",
///     get(list.layer(auth.guard("invoices:read")?))
///         .post(create.layer(auth.guard("invoices:write")?)),
/// );
/// # Ok(())
/// # }
/// ```
///
/// It implements `Layer` only for axum's [`HandlerService`] (the service
/// [`Handler::layer`](axum::handler::Handler::layer) wraps), through the sealed
/// [`GuardTarget`]. Put on a whole method router or router, where it would also cover
/// methods it was not written for (`get(list).post(create).layer(read_guard)` would
/// let a read-only key `POST`), it does not compile:
///
/// ```compile_fail,E0277
/// # use axum::routing::get;
/// # use axum::Router;
/// # use tower_api_key::prelude::*;
/// # async fn list() -> &'static str { "list" }
/// # async fn create() -> &'static str { "created" }
/// # fn main() -> Result<(), ConfigError> {
/// # let auth = ApiKeyAuth::builder(MemoryStore::new())
/// #     .format(KeyFormat::new("inv")?)
/// #     .scopes(ScopeModel::builder().resource("invoices", ["read", "write"]).build()?)
/// #     .build()?;
/// // error: a Guard goes on one handler: `handler.layer(guard)`; …
/// let app: Router = Router::new().route(
///     "/invoices",
///     get(list).post(create).layer(auth.guard("invoices:read")?),
/// );
/// # Ok(())
/// # }
/// ```
///
/// `tests/compile_fail.rs` holds every refused placement (`MethodRouter::layer`,
/// `MethodRouter::route_layer`, `Router::layer`, `Router::route_layer`, and a
/// `MethodRouter` passed as a handler) with the compiler's message for each.
///
/// # Stacked guards: "A and B"
///
/// `handler.layer(auth.guard("a")?).layer(auth.guard("b")?)` admits a key that holds
/// both `a` and `b`. The outer guard (the last one added, `b`) authenticates, checks
/// `b` and spends the rate limit; a guard of the same [`ApiKeyAuth`] behind it finds
/// the request already authenticated and charged, and checks only its own scopes. So
/// a request is authenticated once, audited once and charged once, however many
/// guards it passes. A key lacking `a` is refused with 403 by the inner guard after
/// the outer one charged it: one guard with `auth.guard("a AND b")?` checks both
/// before it charges anything, and is the better way to write it.
#[derive(Clone)]
pub struct Guard<K, R = Identity> {
    auth: AuthenticateLayer<K>,
    scope: RequireScopesLayer,
    rate: R,
}

impl<K, R> fmt::Debug for Guard<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("requirement", self.scope.requirement())
            .finish_non_exhaustive()
    }
}

impl<K, R> Guard<K, R> {
    /// The scope requirement this guard enforces.
    pub fn requirement(&self) -> &crate::Requirement {
        self.scope.requirement()
    }

    /// The authentication layer and the rate-limit layer, for the guard's OpenAPI
    /// fragment (`openapi.rs`).
    #[cfg(feature = "utoipa")]
    pub(crate) fn parts(&self) -> (&AuthenticateLayer<K>, &R) {
        (&self.auth, &self.rate)
    }

    /// The guard's three layers, outermost first, for a route whose service is not a
    /// handler (the key-management router's, `management`): the same stack
    /// [`Layer::layer`] builds, on a method it routes itself.
    pub(crate) fn layers(&self) -> (&AuthenticateLayer<K>, &RequireScopesLayer, &R) {
        (&self.auth, &self.scope, &self.rate)
    }
}

/// The one service a [`Guard`] wraps: axum's [`HandlerService`] of one handler, which
/// [`Handler::layer`](axum::handler::Handler::layer) builds. Sealed: a route's
/// `Route`, a `MethodRouter` used as a handler, or any other service is refused when
/// the router is compiled, because a guard there would cover methods it was not
/// written for.
#[diagnostic::on_unimplemented(
    message = "a Guard goes on one handler: `handler.layer(guard)`; to guard every method of a route, guard each handler",
    label = "a Guard cannot wrap `{Self}`",
    note = "write `get(list.layer(auth.guard(\"invoices:read\")?)).post(create.layer(auth.guard(\"invoices:write\")?))`: a guard on a `MethodRouter` or a `Router` would cover every method of it"
)]
pub trait GuardTarget: sealed::Sealed {}

mod sealed {
    pub trait Sealed {}

    pub trait SealedRate {}

    impl SealedRate for tower_layer::Identity {}
    impl<L> SealedRate for crate::rate_limit::Limits<L> {}
    impl<L> SealedRate for Option<crate::rate_limit::Limits<L>> {}
}

/// Implements [`GuardTarget`] for the handler services of function handlers: axum's
/// `Handler<T, S>` for an async function has `T = ((),)` (no argument) or
/// `T = (M, T1, …, Tn)`. A `MethodRouter` is a `Handler<(), S>` too, and is left out.
macro_rules! guard_targets {
    ($($ty:ident),*) => {
        impl<H, S, M, $($ty,)*> sealed::Sealed for HandlerService<H, (M, $($ty,)*), S> {}
        #[diagnostic::do_not_recommend]
        impl<H, S, M, $($ty,)*> GuardTarget for HandlerService<H, (M, $($ty,)*), S> {}
    };
}

impl<H, S> sealed::Sealed for HandlerService<H, ((),), S> {}
#[diagnostic::do_not_recommend]
impl<H, S> GuardTarget for HandlerService<H, ((),), S> {}
guard_targets!(T1);
guard_targets!(T1, T2);
guard_targets!(T1, T2, T3);
guard_targets!(T1, T2, T3, T4);
guard_targets!(T1, T2, T3, T4, T5);
guard_targets!(T1, T2, T3, T4, T5, T6);
guard_targets!(T1, T2, T3, T4, T5, T6, T7);
guard_targets!(T1, T2, T3, T4, T5, T6, T7, T8);
guard_targets!(T1, T2, T3, T4, T5, T6, T7, T8, T9);
guard_targets!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10);
guard_targets!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11);
guard_targets!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12);
guard_targets!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13);
guard_targets!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13, T14);
guard_targets!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13, T14, T15);
guard_targets!(T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13, T14, T15, T16);

impl<S, K, R> Layer<S> for Guard<K, R>
where
    S: GuardTarget,
    K: Clone,
    R: Layer<S>,
{
    type Service = Authenticate<RequireScopes<R::Service>, K>;

    fn layer(&self, inner: S) -> Self::Service {
        self.auth.layer(self.scope.layer(self.rate.layer(inner)))
    }
}
