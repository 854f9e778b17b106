//! The key-management API as a router: create (the key shown once), list (paginated,
//! filtered), get, update scopes, rotate with grace, revoke, and the audit log, mounted
//! in one line from the front door ([`ApiKeyAuth::management_routes`]).
//!
//! Every operation acts through the [`KeyManager`](crate::KeyManager) with the
//! request's key as the actor, so its [authority rules](crate::KeyManager#authority)
//! hold on every route: another owner's or another environment's key is 404, exactly
//! like a missing one; a revoked key is 409 to rotate or re-scope; a key grants no
//! scope it lacks, obtains no key that outlives it, and manages nothing once a rotation
//! replaced it. Each route is guarded as any other (authentication, the operation's
//! scopes, the rate limit), and every refusal, the guards' and the operations' own,
//! is answered by the surface's responder, in one error body.
//!
//! | method and path | scope (default) | answer |
//! |---|---|---|
//! | `POST /api_keys` | `api_keys:write` | 201, the key and its full secret, shown this once |
//! | `GET /api_keys` | `api_keys:read` | 200, `{"items": […], "next_cursor": …}`; query `environment`, `status` (`active`, `in_grace`, `expired`, `revoked`), `name_prefix`, `limit` (1 to 100, 50 by default), `cursor` |
//! | `GET /api_keys/{id}` | `api_keys:read` | 200, the key (404 once revoked) |
//! | `PATCH /api_keys/{id}` | `api_keys:write` | 200, the key renamed (`{"name": …}`) or with its new scopes (`{"scopes": […]}`): one change per request |
//! | `POST /api_keys/{id}/rotate` | `api_keys:write` | 201, the successor and its secret; the old key works on for `grace_seconds` |
//! | `DELETE /api_keys/{id}` | `api_keys:write` | 204 |
//! | `GET /api_keys/{id}/usage` | `api_keys:read` | 200, `{"items": […], "next_from": …}`: the key's hourly usage buckets (see [`usage`](crate::usage)) whose hour starts in `[from, to)` (RFC 3339; the last 24 hours by default), oldest first, at most 31 days a page (`next_from` starts the next) |
//! | `GET /audit_log` | `audit_log:read` | 200, `{"items": […]}`, newest first; query `api_key_id`, `limit` |
//!
//! Bad input is 400 `invalid_request` (a body that is not the operation's JSON, a
//! query parameter out of range, a cursor this API did not return), a body that is not
//! `application/json` 415, a body over 16 KiB 413; never a 500.
//!
//! ```
//! use axum::Router;
//! use tower_api_key::prelude::*;
//!
//! # fn main() -> Result<(), ConfigError> {
//! let scopes = ScopeModel::builder()
//!     .resource("invoices", ["read", "write"])
//!     .resource("api_keys", ["read", "write"])
//!     .scope("audit_log:read")
//!     .build()?;
//! let auth = ApiKeyAuth::builder(MemoryStore::new())
//!     .format(KeyFormat::new("inv")?.with_environments(["live", "test"])?)
//!     .scopes(scopes)
//!     .build()?;
//! // POST /v1/api_keys, GET /v1/api_keys/{id}, GET /v1/audit_log, …
//! let app: Router = Router::new().nest("/v1", auth.management_routes()?);
//!
//! // A model without the default scopes is refused when the router is built…
//! let bare = ApiKeyAuth::builder(MemoryStore::new())
//!     .format(KeyFormat::new("inv")?)
//!     .scopes(ScopeModel::builder().resource("invoices", ["read", "write"]).build()?)
//!     .build()?;
//! assert!(bare.management().routes::<()>().is_err());
//! // …unless the operations are given scopes it declares.
//! let routes: Router = bare
//!     .management()
//!     .with_read_scope("invoices:read")
//!     .with_write_scope("invoices:write")
//!     .with_audit_scope("invoices:write")
//!     .routes()?;
//! # let _ = (app, routes);
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "utoipa")]
mod doc;
mod handlers;

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use tower::util::BoxCloneSyncService;
use tower_layer::{Identity, Layer};

use self::handlers::{Operation, Route, Shared};
use crate::auth::{ApiKeyAuth, Guard};
use crate::error::ConfigError;
use crate::rate_limit::{Limiter, RateLimitLayer};
use crate::store::ManagedKeyStore;

/// The scope the read operations (list, get) require unless set otherwise.
pub const DEFAULT_READ_SCOPE: &str = "api_keys:read";

/// The scope the write operations (create, update, rotate, revoke) require unless set
/// otherwise.
pub const DEFAULT_WRITE_SCOPE: &str = "api_keys:write";

/// The scope reading the audit log requires unless set otherwise.
pub const DEFAULT_AUDIT_SCOPE: &str = "audit_log:read";

/// The routes, relative to where the router is nested: the keys, one key, its
/// rotation, and the audit log.
pub const KEYS_PATH: &str = "/api_keys";
/// One key: `GET`, `PATCH`, `DELETE`.
pub const KEY_PATH: &str = "/api_keys/{id}";
/// A key's rotation: `POST`.
pub const ROTATE_PATH: &str = "/api_keys/{id}/rotate";
/// A key's usage per hour: `GET`.
pub const USAGE_PATH: &str = "/api_keys/{id}/usage";
/// The audit log: `GET`.
pub const AUDIT_PATH: &str = "/audit_log";

/// Builds the key-management router of one surface: see [the module](self). Made by
/// [`ApiKeyAuth::management`]; nothing is checked until [`routes`](Self::routes).
#[must_use]
pub struct ManagementRoutes<K, R> {
    auth: ApiKeyAuth<K, R>,
    read: String,
    write: String,
    audit: String,
}

impl<K, R> fmt::Debug for ManagementRoutes<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementRoutes")
            .field("read", &self.read)
            .field("write", &self.write)
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

impl<K: ManagedKeyStore, R: Clone> ApiKeyAuth<K, R> {
    /// The key-management router of this surface, to configure: the scope each
    /// operation requires. [`management_routes`](Self::management_routes) builds it
    /// with the defaults.
    pub fn management(&self) -> ManagementRoutes<K, R> {
        ManagementRoutes {
            auth: self.clone(),
            read: DEFAULT_READ_SCOPE.to_owned(),
            write: DEFAULT_WRITE_SCOPE.to_owned(),
            audit: DEFAULT_AUDIT_SCOPE.to_owned(),
        }
    }

    /// The key-management router of this surface, requiring `api_keys:read`,
    /// `api_keys:write` and `audit_log:read`: nest it under any path (see [the
    /// module](crate::management)).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the scope model does not declare those scopes.
    pub fn management_routes<S>(&self) -> Result<Router<S>, ConfigError>
    where
        R: RouteRate,
        S: Clone + Send + Sync + 'static,
    {
        self.management().routes()
    }
}

impl<K: ManagedKeyStore, R: Clone> ManagementRoutes<K, R> {
    /// The scope requirement of listing and reading keys (an expression, as
    /// [`ApiKeyAuth::guard`] takes); `api_keys:read` unless set.
    pub fn with_read_scope(mut self, requirement: impl Into<String>) -> Self {
        self.read = requirement.into();
        self
    }

    /// The scope requirement of creating, updating, rotating and revoking keys;
    /// `api_keys:write` unless set.
    pub fn with_write_scope(mut self, requirement: impl Into<String>) -> Self {
        self.write = requirement.into();
        self
    }

    /// The scope requirement of reading the audit log; `audit_log:read` unless set.
    pub fn with_audit_scope(mut self, requirement: impl Into<String>) -> Self {
        self.audit = requirement.into();
        self
    }

    /// The guard of `requirement`.
    fn guard(&self, requirement: &str) -> Result<Guard<K, R>, ConfigError> {
        self.auth.guard(requirement).map_err(|error| {
            ConfigError::new(format!(
                "the key-management router's scope requirement {requirement:?} (set it with \
                 ManagementRoutes::with_read_scope, with_write_scope or with_audit_scope): \
                 {error}"
            ))
        })
    }

    /// The router: nest it under any path (`Router::new().nest("/v1", routes)`).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when a scope requirement does not parse or names a scope the
    /// model does not declare.
    pub fn routes<S>(&self) -> Result<Router<S>, ConfigError>
    where
        R: RouteRate,
        S: Clone + Send + Sync + 'static,
    {
        let layer = self.auth.layer();
        let shared = Arc::new(Shared {
            manager: self.auth.manager().clone(),
            renderer: Arc::clone(layer.renderer()),
            auditor: layer.request_auditor().cloned(),
        });
        let read = self.guard(&self.read)?;
        let write = self.guard(&self.write)?;
        let audit = self.guard(&self.audit)?;
        let mut routes: Vec<(&str, MethodRouter<S>)> = Vec::new();
        for (path, method, operation) in [
            (KEYS_PATH, MethodFilter::POST, Operation::Create),
            (KEYS_PATH, MethodFilter::GET, Operation::List),
            (KEY_PATH, MethodFilter::GET, Operation::Get),
            (KEY_PATH, MethodFilter::PATCH, Operation::Update),
            (KEY_PATH, MethodFilter::DELETE, Operation::Revoke),
            (ROTATE_PATH, MethodFilter::POST, Operation::Rotate),
            (USAGE_PATH, MethodFilter::GET, Operation::Usage),
            (AUDIT_PATH, MethodFilter::GET, Operation::Audit),
        ] {
            let guard = match operation {
                Operation::List | Operation::Get | Operation::Usage => &read,
                Operation::Audit => &audit,
                _ => &write,
            };
            let (auth, scope, rate) = guard.layers();
            // The guard's own stack, on this one method only.
            let service = auth.layer(scope.layer(rate.wrap(handlers::route(&shared, operation))));
            match routes.iter_mut().find(|(p, _)| *p == path) {
                Some((_, router)) => {
                    *router = std::mem::take(router).on_service(method, service);
                }
                None => routes.push((path, MethodRouter::new().on_service(method, service))),
            }
        }
        Ok(routes
            .into_iter()
            .fold(Router::new(), |router, (path, methods)| {
                router.route(path, methods)
            }))
    }
}

#[cfg(feature = "utoipa")]
impl<K: ManagedKeyStore, R: Clone> ManagementRoutes<K, R> {
    /// The router with its OpenAPI description (the `utoipa` feature): nest it in a
    /// utoipa-axum [`OpenApiRouter`](utoipa_axum::router::OpenApiRouter) and the
    /// document has every operation (ids `create_key`, `list_keys`, `get_key`,
    /// `update_key`, `rotate_key`, `revoke_key`, `audit_log`; tags `api_keys` and
    /// `audit_log`), its schemas, its scopes and security, and every refusal: the
    /// guards' and the operations' own, rendered by the surface's responder.
    ///
    /// ```
    /// use tower_api_key::prelude::*;
    /// use utoipa_axum::router::OpenApiRouter;
    ///
    /// # fn main() -> Result<(), ConfigError> {
    /// # let scopes = ScopeModel::builder()
    /// #     .resource("api_keys", ["read", "write"])
    /// #     .scope("audit_log:read")
    /// #     .build()?;
    /// let auth = ApiKeyAuth::builder(MemoryStore::new())
    ///     .format(KeyFormat::new("inv")?)
    ///     .scopes(scopes)
    ///     .build()?;
    /// let (router, mut openapi) = OpenApiRouter::new()
    ///     .nest("/v1", auth.management().openapi_routes()?)
    ///     .split_for_parts();
    /// utoipa::Modify::modify(&auth.openapi(), &mut openapi);
    /// let json = serde_json::to_value(&openapi).unwrap();
    /// let create = &json["paths"]["/v1/api_keys"]["post"];
    /// assert_eq!(create["operationId"], "create_key");
    /// assert_eq!(create["x-required-scopes"], serde_json::json!([["api_keys:write"]]));
    /// # let _: axum::Router = router;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`routes`](Self::routes).
    pub fn openapi_routes<S>(&self) -> Result<utoipa_axum::router::OpenApiRouter<S>, ConfigError>
    where
        R: RouteRate + crate::openapi::DocumentRate,
        S: Clone + Send + Sync + 'static,
    {
        let router = self.routes()?;
        let (read, write, audit) = (
            self.guard(&self.read)?,
            self.guard(&self.write)?,
            self.guard(&self.audit)?,
        );
        let docs = [read.openapi(), write.openapi(), audit.openapi()];
        let described = doc::Described {
            guards: [
                (&docs[0], read.requirement()),
                (&docs[1], write.requirement()),
                (&docs[2], audit.requirement()),
            ],
            format: self.auth.manager().format(),
            model: self.auth.scope_model(),
        };
        Ok(
            utoipa_axum::router::OpenApiRouter::with_openapi(doc::document(&described))
                .merge(utoipa_axum::router::OpenApiRouter::from(router)),
        )
    }
}

/// The rate limit of a front door's guards, as the key-management router puts it on
/// its routes. Sealed: implemented by the last layers an [`ApiKeyAuth`]'s guards can
/// have ([`Identity`], [`RateLimitLayer`] and `Either` of the two).
pub trait RouteRate: Clone + Send + Sync + 'static + sealed::Sealed {
    /// `route` behind this rate limit.
    #[doc(hidden)]
    fn wrap(
        &self,
        route: BoxCloneSyncService<Request, Response, Infallible>,
    ) -> BoxCloneSyncService<Request, Response, Infallible>;
}

mod sealed {
    pub trait Sealed {}

    impl Sealed for tower_layer::Identity {}
    impl<L> Sealed for crate::rate_limit::RateLimitLayer<L> {}
    impl<A, B> Sealed for tower::util::Either<A, B> {}
}

impl RouteRate for Identity {
    fn wrap(&self, route: Route) -> Route {
        route
    }
}

impl<L: Limiter> RouteRate for RateLimitLayer<L> {
    fn wrap(&self, route: Route) -> Route {
        BoxCloneSyncService::new(self.layer(route))
    }
}

impl<A: RouteRate, B: RouteRate> RouteRate for tower::util::Either<A, B> {
    fn wrap(&self, route: Route) -> Route {
        match self {
            Self::Left(a) => a.wrap(route),
            Self::Right(b) => b.wrap(route),
        }
    }
}
