//! The demo application: both surfaces on one router and one key store.
//!
//! `main.rs` runs it; the integration tests in `tests/` build it in-process too (with
//! a manual clock), through `#[path]`, which is why everything here is reachable from
//! this one module.

#![allow(dead_code, unreachable_pub, missing_debug_implementations)]

pub mod api;
pub mod bridge;
pub mod data;
pub mod errors;
pub mod keys;
pub mod limiter;
pub mod openapi;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use axum::handler::Handler;
use axum::routing::{get, on};
use axum::Router;
use tower::ServiceBuilder;
use tower_api_key::audit::Auditor;
use tower_api_key::budget::UnknownKeyBudget;
use tower_api_key::client::ClientIp;
use tower_api_key::clock::{Clock, SystemClock};
use tower_api_key::credentials::KeySources;
use tower_api_key::key::KeyFormat;
use tower_api_key::manage::{Actor, KeyManager, NewKey};
use tower_api_key::rate_limit::{Limits, MemoryLimiter, QuotaPolicy, RateLimitLayer, RatePolicy};
use tower_api_key::rejection::ErrorStyle;
use tower_api_key::require_scopes::RequireScopesLayer;
use tower_api_key::store::{
    CachedStore, KeyStore, LastUsed, DEFAULT_LOOKUP_TIMEOUT, DEFAULT_MAX_LOOKUPS,
    DEFAULT_STALE_IF_ERROR,
};
use tower_api_key::{presets, AuthenticateLayer, KeyVerifier, Owner, ScopeModel};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

use self::data::Data;
pub use self::limiter::DemoLimiter;
pub use self::store::DemoStore;

/// Every scope the demo knows; the admin keys hold all of them.
pub const SCOPES: [&str; 9] = [
    "session:read",
    "employees:read",
    "employees:write",
    "observations:read",
    "observations:write",
    "api_keys:read",
    "api_keys:write",
    "audit_log:read",
    "public_api",
];

/// The organizations that get an admin key on first start.
pub const ORGANIZATIONS: [&str; 2] = ["acme", "globex"];

/// How often `last_used_at` is written.
pub const LAST_USED_INTERVAL: Duration = Duration::from_secs(2);

/// What guards one surface's routes: authentication, then the route's scope, then the
/// rate limit (a 403 spends no rate limit).
///
/// The stack is attached to each handler with [`Handler::layer`] rather than with
/// `route_layer`: axum boxes a route once per `route_layer` and clones every box on every
/// request, while a handler's layers are built inline around it (about 4,300 fewer
/// instructions per request here; see BENCHMARKS.md).
struct Guards<K> {
    auth: AuthenticateLayer<K>,
    model: ScopeModel,
    /// `None` when the demo runs with `--rate-limit off`.
    rate: Option<RateLimitLayer<DemoLimiter>>,
}

impl<K: KeyStore> Guards<K> {
    /// `handler` on the path and method of its `#[utoipa::path]` (`documented`, from
    /// `routes!`), behind authentication, the `requirement` scope guard and (unless
    /// switched off) the rate limit; its operation documents that same requirement,
    /// the key sources and the refusals. Called through [`guarded!`], which passes the
    /// one handler to both.
    fn route<H, T>(
        &self,
        documented: UtoipaMethodRouter<AppState>,
        handler: H,
        requirement: &str,
    ) -> Result<UtoipaMethodRouter<AppState>, String>
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        // `routes!` also made an unguarded method router: it is dropped here.
        #[allow(unused_mut)]
        let (schemas, mut paths, _unguarded) = documented;
        let method = openapi::method_of(&paths)?;
        let scope = RequireScopesLayer::new(&self.model, requirement).map_err(|e| e.to_string())?;
        #[cfg(feature = "utoipa")]
        tower_api_key::openapi::ApiKeyDoc::new(&self.auth)
            .with_rate_limit(self.rate.is_some())
            .document_paths(&mut paths, scope.requirement());
        let stack = ServiceBuilder::new().layer(self.auth.clone()).layer(scope);
        let router = match &self.rate {
            Some(rate) => on(method, handler.layer(stack.layer(rate.clone()))),
            None => on(method, handler.layer(stack)),
        };
        Ok((schemas, paths, router))
    }
}

/// One guarded route: `guarded!(guards, module::handler, "scope expression")`, the
/// handler named once for its route, its guard and its OpenAPI operation.
macro_rules! guarded {
    ($guards:ident, $handler:path, $requirement:literal) => {
        $guards.route(utoipa_axum::routes!($handler), $handler, $requirement)?
    };
}

/// The handlers' state. Cheap to clone (axum clones it for every request).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub data: Arc<Data>,
    pub manager: KeyManager<DemoStore>,
    /// Request entries are written behind; the audit endpoint flushes them first.
    pub auditor: Auditor,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl FromRef<AppState> for Arc<Data> {
    fn from_ref(state: &AppState) -> Self {
        Self::clone(&state.data)
    }
}

/// What `build` needs besides the store.
pub struct Settings {
    /// The default rate limit of every key; `None` runs without rate limiting.
    pub rate_limit: Option<RatePolicy>,
    pub cache_ttl: Option<Duration>,
    /// Lookups ending in "unknown key" allowed per client; `None` switches it off.
    pub unknown_key_budget: Option<UnknownKeyBudget>,
    /// Store lookups in flight at once.
    pub max_lookups: usize,
    pub lookup_timeout: Duration,
    /// How long past its TTL a record answers while the store fails (zero: never).
    pub stale_if_error: Duration,
    /// How long a ProductBridge JSON body may take to arrive.
    pub body_timeout: Duration,
    /// Reverse proxies in front whose `X-Forwarded-For` is trusted (0: the peer
    /// address is the client).
    pub trusted_proxies: usize,
    /// The clock of the cache, expiry, rotation grace and rate windows.
    pub clock: Arc<dyn Clock>,
    /// Where rate limits and quotas are kept: this process, or a Redis shared by every
    /// instance.
    pub limiter: DemoLimiter,
    /// Each organization's daily quota of requests, `None` for none.
    pub daily_quota: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rate_limit: Some("100/s".parse().expect("valid default")),
            cache_ttl: None,
            unknown_key_budget: Some(UnknownKeyBudget::default()),
            max_lookups: DEFAULT_MAX_LOOKUPS,
            lookup_timeout: DEFAULT_LOOKUP_TIMEOUT,
            stale_if_error: DEFAULT_STALE_IF_ERROR,
            body_timeout: tower_api_key::credentials::DEFAULT_BODY_TIMEOUT,
            trusted_proxies: 0,
            clock: Arc::new(SystemClock),
            limiter: DemoLimiter::Memory(MemoryLimiter::new()),
            daily_quota: None,
        }
    }
}

pub struct Demo {
    pub router: Router,
    pub cache: CachedStore<DemoStore>,
    pub manager: KeyManager<DemoStore>,
    pub last_used: LastUsed,
    pub auditor: Auditor,
}

impl Demo {
    /// Creates the admin keys of `acme` and `globex` unless the store already holds
    /// keys for them. Returns `(organization, key)` for each key made.
    pub async fn bootstrap(&self) -> Result<Vec<(String, String)>, String> {
        let mut made = Vec::new();
        for org in ORGANIZATIONS {
            let owner = Owner::organization(org);
            let existing = self
                .manager
                .list(&owner, Actor::System("demo bootstrap"))
                .await
                .map_err(|e| e.to_string())?;
            if !existing.is_empty() {
                continue;
            }
            let created = self
                .manager
                .create(
                    NewKey::new(format!("{org} admin"), owner)
                        .with_environment("live")
                        .with_scopes(SCOPES),
                    Actor::System("demo bootstrap"),
                )
                .await
                .map_err(|e| e.to_string())?;
            made.push((org.to_owned(), created.key.expose_secret().to_owned()));
        }
        Ok(made)
    }

    /// Writes what is buffered (last-used times, audit entries). Call at shutdown.
    pub async fn flush(&self) {
        if let Err(error) = self.last_used.flush().await {
            tracing::warn!(%error, "last-used flush failed at shutdown");
        }
        self.auditor.flush().await;
    }
}

/// The Performance Blocks scopes plus what the demo's own endpoints need, declared
/// after the documented ones: `api_keys:read` and `api_keys:write` (listing, creating,
/// rotating and revoking keys; `write` implies `read` here too), `audit_log:read`
/// (reading the audit log) and `public_api`, a bare scope for the ProductBridge
/// surface. Nothing implies them and they are in no preset, so `Full access` does not
/// include key administration.
pub fn scope_model() -> Result<ScopeModel, tower_api_key::ConfigError> {
    presets::performance_blocks::scope_model_builder()
        .resource("api_keys", ["read", "write"])
        .scope("audit_log:read")
        .scope("public_api")
        .build()
}

/// The demo over `store`, which also keeps the audit log. Call inside a tokio runtime
/// (the audit writer and the last-used buffer run as tasks).
pub fn build(store: DemoStore, settings: Settings) -> Result<Demo, String> {
    let auditor = Auditor::spawn(store.clone(), 4096);
    let err = |e: tower_api_key::ConfigError| e.to_string();
    let model = scope_model().map_err(err)?;
    let format = KeyFormat::new("pb")
        .map_err(err)?
        .with_environments(["live", "test"])
        .map_err(err)?;
    let mut cache = CachedStore::builder(store)
        .with_clock(Arc::clone(&settings.clock))
        .with_max_concurrent_lookups(settings.max_lookups)
        .with_lookup_timeout(settings.lookup_timeout)
        .with_stale_if_error(settings.stale_if_error);
    if let Some(ttl) = settings.cache_ttl {
        cache = cache
            .with_ttl(ttl)
            .with_negative_ttl(ttl.min(Duration::from_secs(5)));
    }
    let cache = cache.build().map_err(err)?;
    let last_used = LastUsed::spawn(cache.clone(), LAST_USED_INTERVAL);
    let manager = KeyManager::new(cache.clone(), format.clone(), model.clone());
    let rate = match settings.rate_limit {
        Some(policy) => {
            let mut limits = Limits::new(policy).with_clock(Arc::clone(&settings.clock));
            if let Some(quota) = settings.daily_quota {
                limits = limits.with_quota(QuotaPolicy::daily(quota).map_err(err)?);
            }
            Some(RateLimitLayer::new(limits.with_backend(settings.limiter)))
        }
        None => None,
    };

    let authenticator = KeyVerifier::new(cache.clone(), format);
    let authenticator = match settings.unknown_key_budget {
        Some(budget) => authenticator.with_unknown_key_budget(budget),
        None => authenticator.without_unknown_key_budget(),
    };
    let client_ip = match settings.trusted_proxies {
        0 => ClientIp::peer(),
        hops => ClientIp::x_forwarded_for(hops).map_err(err)?,
    };
    let pb = Guards {
        auth: AuthenticateLayer::new(authenticator.clone())
            .with_sources(KeySources::bearer_or_header())
            .with_client_ip(client_ip.clone())
            .with_responder(ErrorStyle::envelope().with_request_id_in_body(true))
            .with_realm("Performance Blocks")
            .map_err(err)?
            .with_scope_model(model.clone())
            .with_last_used(last_used.clone())
            .with_auditor(auditor.clone()),
        model: model.clone(),
        rate: rate.clone(),
    };
    #[cfg(feature = "utoipa")]
    let pb_doc = tower_api_key::openapi::ApiKeyDoc::new(&pb.auth);
    let performance_blocks = OpenApiRouter::new()
        .routes(guarded!(pb, api::ping, "session:read"))
        .routes(guarded!(pb, api::session, "session:read"))
        .routes(guarded!(pb, api::list_observations, "observations:read"))
        .routes(guarded!(pb, api::create_observation, "observations:write"))
        .routes(guarded!(pb, api::get_observation, "observations:read"))
        .routes(guarded!(pb, api::list_employees, "employees:read"))
        .routes(guarded!(pb, api::create_employee, "employees:write"))
        .routes(guarded!(pb, keys::list_keys, "api_keys:read"))
        .routes(guarded!(pb, keys::create_key, "api_keys:write"))
        .routes(guarded!(pb, keys::get_key, "api_keys:read"))
        .routes(guarded!(pb, keys::update_key, "api_keys:write"))
        .routes(guarded!(pb, keys::revoke_key, "api_keys:write"))
        .routes(guarded!(pb, keys::rotate_key, "api_keys:write"))
        .routes(guarded!(pb, keys::audit_log, "audit_log:read"));

    let bridge = Guards {
        auth: AuthenticateLayer::new(authenticator)
            .with_sources(
                KeySources::json_body()
                    .with_body_timeout(settings.body_timeout)
                    .map_err(err)?,
            )
            .with_client_ip(client_ip)
            .with_responder(presets::product_bridge::error_style())
            .with_scope_model(model.clone())
            .with_last_used(last_used.clone())
            .with_auditor(auditor.clone()),
        model,
        rate,
    };
    let product_bridge = OpenApiRouter::new()
        .routes(guarded!(bridge, bridge::list_posts, "public_api"))
        .routes(guarded!(bridge, bridge::create_post, "public_api"));
    #[allow(unused_variables)]
    let (surfaces, document) = performance_blocks.merge(product_bridge).split_for_parts();
    #[cfg(feature = "utoipa")]
    let surfaces = {
        use utoipa::Modify;
        let mut document = document;
        pb_doc.modify(&mut document);
        let document = Arc::new(openapi::finish(document));
        // Public, like /healthz: the document says what each route needs.
        surfaces.route(
            "/openapi.json",
            get(move || {
                let document = Arc::clone(&document);
                async move { axum::Json(document) }
            }),
        )
    };

    let state = AppState(Arc::new(Shared {
        data: Arc::new(Data::default()),
        manager: manager.clone(),
        auditor: auditor.clone(),
    }));
    let router = Router::new()
        .route("/healthz", get(api::healthz))
        .merge(surfaces)
        .fallback(errors::not_found)
        .method_not_allowed_fallback(errors::method_not_allowed)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                // A client's id that is too long or not visible ASCII is replaced by a
                // generated one before anything logs, echoes or stores it.
                .map_request(drop_invalid_request_id)
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(PropagateRequestIdLayer::x_request_id()),
        );
    Ok(Demo {
        router,
        cache,
        manager,
        last_used,
        auditor,
    })
}

/// Removes an `X-Request-Id` that is over 128 characters or not visible ASCII, so the
/// `SetRequestIdLayer` behind it generates one.
fn drop_invalid_request_id<B>(mut req: http::Request<B>) -> http::Request<B> {
    use tower_api_key::rejection::{is_valid_request_id, X_REQUEST_ID};
    if req
        .headers()
        .get_all(X_REQUEST_ID)
        .iter()
        .any(|v| !is_valid_request_id(v))
        || req.headers().get_all(X_REQUEST_ID).iter().count() > 1
    {
        req.headers_mut().remove(X_REQUEST_ID);
    }
    req
}
