//! The scope guards: [`RequireScopesLayer`] on routes, and the [`Scoped`]
//! extractor with scopes known at compile time ([`scope_guard!`](crate::scope_guard)).
//! Both check the [`Principal`] left by the authentication layer in front against a
//! [`Requirement`] of a [`ScopeModel`], and refuse with 403 in that layer's style.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::ConfigError;
use crate::pipeline::{render_for, Admitted, Bare, RequestContext, ResponseFuture};
use crate::principal::Principal;
use crate::rejection::{RejectionKind, RejectionResponse};
use crate::scope::{Requirement, ScopeModel};

/// Requires scopes on the routes it wraps, behind an [`AuthenticateLayer`](crate::parts::AuthenticateLayer).
///
/// Attach it per route with `MethodRouter::route_layer` (`post(handler).route_layer(…)`);
/// `Router::route_layer` applies it to every route added before it. On hot routes,
/// attaching the whole stack to the handler with axum's `Handler::layer`
/// (`post(handler.layer(ServiceBuilder::new().layer(api_key).layer(scope)))`) is
/// cheaper: axum boxes a route once per `route_layer` and clones each box on every
/// request, while a handler's layers are built inline (the demo does this; see
/// BENCHMARKS.md).
///
/// The requirement is parsed once, when the router is built: an unknown scope or an
/// unbalanced expression is a [`ConfigError`] at start-up. A refused request gets 403
/// (`insufficient_scope`, naming the missing scopes) in the style of the
/// `AuthenticateLayer` in front. With no `AuthenticateLayer` in front (a wiring mistake) every
/// request gets 500 and an error is logged: the guard never lets a request through.
///
/// ```
/// use axum::{routing::{get, post}, Router};
/// use tower_api_key::require_scopes::RequireScopesLayer;
/// use tower_api_key::ScopeModel;
///
/// let model = tower_api_key::presets::performance_blocks::scope_model();
/// let app: Router = Router::new()
///     .route(
///         "/v1/observations",
///         post(|| async { "created" })
///             .route_layer(RequireScopesLayer::new(&model, "observations:write")?),
///     )
///     .route(
///         "/v1/search",
///         get(|| async { "results" })
///             .route_layer(RequireScopesLayer::new(&model, "search:read OR employees:read")?),
///     );
/// // … then `.layer(AuthenticateLayer::new(…))` around the whole router.
/// # Ok::<(), tower_api_key::ConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct RequireScopesLayer {
    model: ScopeModel,
    requirement: Arc<Requirement>,
}

impl RequireScopesLayer {
    /// Requires `expression` (scope names, `AND`, `OR`, parentheses) under `model`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the offending text.
    pub fn new(model: &ScopeModel, expression: &str) -> Result<Self, ConfigError> {
        Ok(Self::from_requirement(
            model,
            model.requirement(expression)?,
        ))
    }

    /// Requires every one of `scopes`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming an unknown scope.
    pub fn all_of<I, S>(model: &ScopeModel, scopes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(Self::from_requirement(model, model.all_of(scopes)?))
    }

    /// Requires at least one of `scopes`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming an unknown scope.
    pub fn any_of<I, S>(model: &ScopeModel, scopes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(Self::from_requirement(model, model.any_of(scopes)?))
    }

    /// Requires an already parsed requirement of `model`.
    pub fn from_requirement(model: &ScopeModel, requirement: Requirement) -> Self {
        Self {
            model: model.clone(),
            requirement: Arc::new(requirement),
        }
    }

    /// The requirement.
    pub fn requirement(&self) -> &Requirement {
        &self.requirement
    }
}

impl fmt::Debug for RequireScopesLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScopesLayer")
            .field("requirement", &format_args!("{}", self.requirement))
            .finish()
    }
}

impl<S> Layer<S> for RequireScopesLayer {
    type Service = RequireScopes<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopes {
            inner,
            guard: self.clone(),
        }
    }
}

/// The service built by [`RequireScopesLayer`].
#[derive(Clone)]
pub struct RequireScopes<S> {
    inner: S,
    guard: RequireScopesLayer,
}

impl<S> RequireScopes<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for RequireScopes<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScopes")
            .field("inner", &self.inner)
            .field("guard", &self.guard)
            .finish()
    }
}

/// Refusals are answered in the inner service's body type (`ResBody: From<Bytes>`, as
/// axum's `Body` is), so a guard adds no body wrapper of its own.
impl<S, B, ResBody> Service<Request<B>> for RequireScopes<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B, Bare>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let outcome = match req.extensions().get::<Principal>() {
            Some(principal) => {
                let grants = principal.grants_ref(&self.guard.model);
                if self.guard.requirement.is_satisfied_by(&grants) {
                    return ResponseFuture::call(self.inner.call(req), Admitted::default());
                }
                RejectionKind::InsufficientScope {
                    required: self.guard.requirement.missing(&grants),
                }
            }
            None => RejectionKind::Missing,
        };
        ResponseFuture::reject(render_for(req.extensions(), req.headers(), outcome))
    }
}

/// A scope requirement known at compile time, for [`Scoped`]. Declare one with
/// [`scope_guard!`](crate::scope_guard).
pub trait ScopeGuard: Send + Sync + 'static {
    /// Scopes that must all be held (after implications).
    const SCOPES: &'static [&'static str];
}

/// An extractor that admits the request only if its key holds `G::SCOPES`, and yields
/// the [`Principal`] (aliri_axum's `scope_guards!`, in axum 0.8 form).
///
/// It needs an [`AuthenticateLayer`](crate::parts::AuthenticateLayer) in front, configured with
/// [`with_scope_model`](crate::parts::AuthenticateLayer::with_scope_model); otherwise, or when a
/// scope of `G` is not declared by that model, the request is refused with 500 and an
/// error is logged (a misconfiguration fails closed).
///
/// ```
/// use tower_api_key::require_scopes::Scoped;
/// use tower_api_key::scope_guard;
///
/// scope_guard!(
///     /// `observations:write`.
///     pub ObservationsWrite = ["observations:write"]
/// );
///
/// async fn create(Scoped(principal, ..): Scoped<ObservationsWrite>) -> String {
///     format!("created by {}", principal.key_id())
/// }
/// ```
pub struct Scoped<G>(pub Principal, pub PhantomData<G>);

impl<G> fmt::Debug for Scoped<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Scoped").field(&self.0).finish()
    }
}

impl<S, G> axum::extract::FromRequestParts<S> for Scoped<G>
where
    S: Send + Sync,
    G: ScopeGuard,
{
    type Rejection = RejectionResponse;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Some(context) = RequestContext::of(&parts.extensions) else {
            return Err(RejectionResponse::misconfigured());
        };
        let Some(model) = context.scope_model.as_ref() else {
            tracing::error!(
                target: "tower_api_key",
                "Scoped needs AuthenticateLayer::with_scope_model; refusing the request"
            );
            return Err(RejectionResponse::misconfigured());
        };
        if let Some(unknown) = G::SCOPES.iter().find(|s| !model.contains(s)) {
            tracing::error!(
                target: "tower_api_key",
                scope = unknown,
                "a Scoped extractor names a scope the scope model does not declare; refusing \
                 the request with 500 (fix: declare the scope in the ScopeModel, or correct \
                 the scope_guard! marker)"
            );
            return Err(RejectionResponse::from_parts(
                parts,
                RejectionKind::UndeclaredScope {
                    scope: (*unknown).to_owned(),
                },
            ));
        }
        let Some(principal) = parts.extensions.get::<Principal>().cloned() else {
            return Err(RejectionResponse::from_parts(parts, RejectionKind::Missing));
        };
        let grants = principal.grants_ref(model);
        let missing: Vec<String> = G::SCOPES
            .iter()
            .filter(|s| !grants.contains(s))
            .map(|s| (*s).to_owned())
            .collect();
        if missing.is_empty() {
            Ok(Self(principal, PhantomData))
        } else {
            Err(RejectionResponse::from_parts(
                parts,
                RejectionKind::InsufficientScope { required: missing },
            ))
        }
    }
}

/// Declares a marker type for [`Scoped`]:
/// `scope_guard!(pub EmployeesWrite = ["employees:write"]);`.
#[macro_export]
macro_rules! scope_guard {
    ($(#[$meta:meta])* $vis:vis $name:ident = [$($scope:literal),+ $(,)?]) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        $vis struct $name;

        impl $crate::require_scopes::ScopeGuard for $name {
            const SCOPES: &'static [&'static str] = &[$($scope),+];
        }
    };
}
