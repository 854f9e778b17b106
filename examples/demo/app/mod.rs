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
pub mod limiter;
pub mod openapi;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use axum::routing::get;
use axum::Router;
use tower::layer::util::Identity;
use tower::util::Either;
use tower::ServiceBuilder;
use tower_api_key::audit::Auditor;
use tower_api_key::budget::UnknownKeyBudget;
use tower_api_key::client::ClientIp;
use tower_api_key::clock::{Clock, SystemClock};
use tower_api_key::prelude::*;
use tower_api_key::presets;
use tower_api_key::store::{
    CachedStore, DEFAULT_LOOKUP_TIMEOUT, DEFAULT_MAX_LOOKUPS, DEFAULT_STALE_IF_ERROR,
};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// How often usage counts are written.
pub const USAGE_INTERVAL: Duration = Duration::from_secs(2);

/// The demo's front door: one cache, manager, budget and limiter under two surfaces,
/// rate limits on or off as `--rate-limit` says.
pub type DemoAuth = ApiKeyAuth<DemoStore, Either<RateLimitLayer<DemoLimiter>, Identity>>;

/// The handlers' state. Cheap to clone (axum clones it for every request).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub data: Arc<Data>,
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
    /// Usage per key (`GET /v1/api_keys/{id}/usage`), written every
    /// [`USAGE_INTERVAL`].
    pub usage: bool,
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
            usage: true,
        }
    }
}

pub struct Demo {
    pub router: Router,
    /// The front door both surfaces' guards and the key endpoints share.
    pub auth: DemoAuth,
    pub cache: CachedStore<DemoStore>,
    pub manager: KeyManager<DemoStore>,
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
        if let Err(error) = self.auth.flush().await {
            tracing::warn!(%error, "last-used flush failed at shutdown");
        }
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
pub fn build(store: DemoStore, settings: Settings) -> Result<Demo, ConfigError> {
    let auditor = Auditor::spawn(store.clone(), 4096);
    let rate = match settings.rate_limit {
        Some(policy) => {
            let mut limits = Limits::new(policy);
            if let Some(quota) = settings.daily_quota {
                limits = limits.with_quota(QuotaPolicy::daily(quota)?);
            }
            Some(limits.with_backend(settings.limiter))
        }
        None => None,
    };
    let client_ip = match settings.trusted_proxies {
        0 => ClientIp::peer(),
        hops => ClientIp::x_forwarded_for(hops)?,
    };
    let body_sources = KeySources::json_body().with_body_timeout(settings.body_timeout)?;
    let auth = ApiKeyAuth::builder(store)
        .clock(Arc::clone(&settings.clock))
        .cache(|cache| {
            let cache = cache
                .with_max_concurrent_lookups(settings.max_lookups)
                .with_lookup_timeout(settings.lookup_timeout)
                .with_stale_if_error(settings.stale_if_error);
            match settings.cache_ttl {
                Some(ttl) => cache
                    .with_ttl(ttl)
                    .with_negative_ttl(ttl.min(Duration::from_secs(5))),
                None => cache,
            }
        })
        .format(KeyFormat::new("pb")?.with_environments(["live", "test"])?)
        .scopes(scope_model()?)
        .unknown_key_budget(settings.unknown_key_budget)
        .client_ip(client_ip)
        .last_used(LAST_USED_INTERVAL);
    let auth = if settings.usage {
        auth.usage(|usage| usage.with_flush_interval(USAGE_INTERVAL))
    } else {
        auth
    };
    let auth = auth
        .audit_requests(auditor.clone())
        // Performance Blocks: bearer or `X-API-Key`, its envelope with the request id.
        .sources(KeySources::bearer_or_header())
        .responder(ErrorStyle::envelope().with_request_id_in_body(true))
        .configure(|layer| layer.with_realm("Performance Blocks"))
        // ProductBridge: the key in the JSON body, its generic 401.
        .surface("product_bridge", |surface| {
            surface
                .sources(body_sources)
                .responder(presets::product_bridge::error_style())
                // The realm names the surface's OpenAPI components (`ProductBridgeError`).
                .configure(|layer| layer.with_realm("ProductBridge"))
        })
        .rate_limits(rate)
        .build()?;
    let bridge = auth.surface("product_bridge")?;
    let performance_blocks = OpenApiRouter::new()
        .routes(
            auth.guard("session:read")?
                .routes(routes!(api::ping), api::ping)?,
        )
        .routes(
            auth.guard("session:read")?
                .routes(routes!(api::session), api::session)?,
        )
        .routes(
            auth.guard("observations:read")?
                .routes(routes!(api::list_observations), api::list_observations)?,
        )
        .routes(
            auth.guard("observations:write")?
                .routes(routes!(api::create_observation), api::create_observation)?,
        )
        .routes(
            auth.guard("observations:read")?
                .routes(routes!(api::get_observation), api::get_observation)?,
        )
        .routes(
            auth.guard("employees:read")?
                .routes(routes!(api::list_employees), api::list_employees)?,
        )
        .routes(
            auth.guard("employees:write")?
                .routes(routes!(api::create_employee), api::create_employee)?,
        )
        // The key endpoints (create, list, get, update, rotate, revoke, the audit log):
        // the crate's key-management router, documented by itself.
        .nest("/v1", auth.management().openapi_routes()?);
    let product_bridge = OpenApiRouter::new()
        .routes(
            bridge
                .guard("public_api")?
                .routes(routes!(bridge::list_posts), bridge::list_posts)?,
        )
        .routes(
            bridge
                .guard("public_api")?
                .routes(routes!(bridge::create_post), bridge::create_post)?,
        );
    let (surfaces, mut document) = performance_blocks.merge(product_bridge).split_for_parts();
    // Each surface's security schemes and the refusal responses its operations reference.
    utoipa::Modify::modify(&auth.openapi(), &mut document);
    utoipa::Modify::modify(&bridge.openapi(), &mut document);
    let document = Arc::new(openapi::finish(document));
    // Public, like /healthz: the document says what each route needs.
    let surfaces = surfaces.route(
        "/openapi.json",
        get(move || {
            let document = Arc::clone(&document);
            async move { axum::Json(document) }
        }),
    );

    let manager = auth.manager().clone();
    let state = AppState(Arc::new(Shared {
        data: Arc::new(Data::default()),
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
        cache: auth.cache().clone(),
        auth,
        manager,
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
