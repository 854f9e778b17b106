use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::limits::Start;
use super::{Decision, Limiter, Limits, MemoryLimiter};
use crate::error::ConfigError;
use crate::pipeline::{render_for, Admitted, Bare, ResponseFuture, Verdict};
use crate::principal::Principal;
use crate::rejection::RejectionKind;

/// Charges every request against its key's rate limit and its owner's quota; use it
/// behind an [`AuthenticateLayer`](crate::parts::AuthenticateLayer) and behind any scope guard, so that
/// requests refused with 401 or 403 never spend anything (the order of checks is
/// authenticate → scope → rate limit → quota).
///
/// A limited request gets 429 with `Retry-After` (whole seconds, never 0) and the
/// `RateLimit` / `RateLimit-Policy` fields, in the style of the `AuthenticateLayer` in
/// front; a spent quota gets 403 `quota_exceeded` (the status is configurable).
/// Successful responses can carry the `RateLimit` fields too
/// ([`RateLimitLayer::with_success_headers`]).
///
/// ```
/// use axum::{routing::get, Router};
/// use tower_api_key::rate_limit::{RateLimitLayer, Limits};
///
/// let limits = Limits::new("100/s".parse()?)
///     .with_environment_policy("dev", "10/s".parse()?)?;
/// let app: Router = Router::new()
///     .route("/v1/builds", get(|| async { "ok" }).route_layer(RateLimitLayer::new(limits).with_cost(5)?));
/// # Ok::<(), tower_api_key::ConfigError>(())
/// ```
#[must_use]
pub struct RateLimitLayer<L = MemoryLimiter> {
    limits: Limits<L>,
    cost: u32,
    success_headers: bool,
    quota_status: StatusCode,
    /// Set for the guards of one `ApiKeyAuth`: a request one of them charged is not
    /// charged again by another behind it.
    once: Option<ChargeId>,
}

/// Names the rate limit of one `ApiKeyAuth`'s guards, shared by their clones; never
/// 0, which marks a request no such limit charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChargeId(u64);

impl<L: Clone> Clone for RateLimitLayer<L> {
    fn clone(&self) -> Self {
        Self {
            limits: self.limits.clone(),
            cost: self.cost,
            success_headers: self.success_headers,
            quota_status: self.quota_status,
            once: self.once,
        }
    }
}

impl<L> RateLimitLayer<L> {
    /// Charges a cost of 1 per request under `limits`.
    pub fn new(limits: Limits<L>) -> Self {
        Self {
            limits,
            cost: 1,
            success_headers: false,
            quota_status: StatusCode::FORBIDDEN,
            once: None,
        }
    }

    /// Charges a request once however many clones of this layer it passes: the first
    /// charges it and marks it, the others let it through (the guards of one
    /// `ApiKeyAuth` stacked on a handler for "A and B"). Separate layers, even over
    /// the same limits, still charge each.
    pub(crate) fn once_per_request(mut self) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        self.once = Some(ChargeId(NEXT.fetch_add(1, Ordering::Relaxed)));
        self
    }

    /// Charges `cost` units per request on the routes this layer wraps (a weight).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the cost is larger than the burst of a configured policy
    /// (such a request could never pass).
    pub fn with_cost(mut self, cost: u32) -> Result<Self, ConfigError> {
        self.limits.validate_cost(cost)?;
        self.cost = cost;
        Ok(self)
    }

    /// Whether successful responses carry `RateLimit` and `RateLimit-Policy` (off by
    /// default: the draft lets servers send them only when useful, and they cost two
    /// header values per response). Refusals always carry them.
    pub fn with_success_headers(mut self, enabled: bool) -> Self {
        self.success_headers = enabled;
        self
    }

    /// The status of a quota refusal: 403 by default (PromptFloe), 429 if you prefer.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a status that is not a 4xx.
    pub fn with_quota_status(mut self, status: StatusCode) -> Result<Self, ConfigError> {
        if !status.is_client_error() {
            return Err(ConfigError::new(format!(
                "quota status {status} is not a 4xx status"
            )));
        }
        self.quota_status = status;
        Ok(self)
    }

    /// The limits.
    pub fn limits(&self) -> &Limits<L> {
        &self.limits
    }
}

impl<L: fmt::Debug> fmt::Debug for RateLimitLayer<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limits", &self.limits)
            .field("cost", &self.cost)
            .field("success_headers", &self.success_headers)
            .field("quota_status", &self.quota_status)
            .field("once_per_request", &self.once.is_some())
            .finish()
    }
}

impl<S, L: Clone> Layer<S> for RateLimitLayer<L> {
    type Service = RateLimit<S, L>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service built by [`RateLimitLayer`].
pub struct RateLimit<S, L = MemoryLimiter> {
    inner: S,
    layer: RateLimitLayer<L>,
}

impl<S: Clone, L: Clone> Clone for RateLimit<S, L> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S, L> RateLimit<S, L> {
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

impl<S: fmt::Debug, L: fmt::Debug> fmt::Debug for RateLimit<S, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

/// Refusals are answered in the inner service's body type (`ResBody: From<Bytes>`, as
/// axum's `Body` is), so the limiter adds no body wrapper of its own.
impl<S, L, B, ResBody> Service<Request<B>> for RateLimit<S, L>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    L: Limiter,
    B: Send + 'static,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B, Bare>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let once = self.layer.once;
        let Some(principal) = req.extensions_mut().get_mut::<Principal>() else {
            return ResponseFuture::reject(render_for(
                req.extensions(),
                req.headers(),
                RejectionKind::Missing,
            ));
        };
        if let Some(ChargeId(id)) = once {
            if principal.charged_by() == id {
                return ResponseFuture::call(self.inner.call(req), Admitted::default());
            }
        }
        match self.layer.limits.start(principal, self.layer.cost) {
            Start::Decided(decision) => {
                if let (Some(ChargeId(id)), true) = (once, decision.is_allowed()) {
                    principal.mark_charged(id);
                }
                match settle(&self.layer, decision, &req) {
                    Ok(admitted) => ResponseFuture::call(self.inner.call(req), admitted),
                    Err(response) => ResponseFuture::reject(response),
                }
            }
            Start::Ask(request) => {
                let layer = self.layer.clone();
                let fut = Box::pin(async move {
                    let mut req = req;
                    let decided = layer.limits.backend().check(&request).await;
                    let result = match decided {
                        Ok(decision) => settle(&layer, decision, &req),
                        Err(error) => {
                            tracing::error!(target: "tower_api_key", %error, "rate-limit backend failed; refusing");
                            Err(render_for(
                                req.extensions(),
                                req.headers(),
                                RejectionKind::StoreUnavailable,
                            ))
                        }
                    };
                    match result {
                        Ok(admitted) => {
                            mark(once, &mut req);
                            Verdict::Pass(req, admitted)
                        }
                        Err(response) => Verdict::Refuse(response),
                    }
                });
                ResponseFuture::deciding(fut, &mut self.inner)
            }
        }
    }
}

/// Marks an admitted request as charged, for a layer that charges once per request.
fn mark<B>(once: Option<ChargeId>, req: &mut Request<B>) {
    if let Some(ChargeId(id)) = once {
        if let Some(principal) = req.extensions_mut().get_mut::<Principal>() {
            principal.mark_charged(id);
        }
    }
}

/// Turns a decision into either what to add to a successful response, or the refusal.
// The refusal is returned to the caller once and never propagated with `?`.
#[allow(clippy::result_large_err)]
fn settle<L, B>(
    layer: &RateLimitLayer<L>,
    decision: Decision,
    req: &Request<B>,
) -> Result<Admitted, Response<Bytes>> {
    let refuse = |outcome| render_for(req.extensions(), req.headers(), outcome);
    match decision {
        Decision::Allowed(status) if layer.success_headers => {
            let mut headers = HeaderMap::new();
            status.insert_headers(&mut headers);
            Ok(Admitted::new(Some(headers), None))
        }
        Decision::Allowed(_) => Ok(Admitted::default()),
        Decision::Limited(status) => {
            let retry_after = status.retry_after.unwrap_or_default();
            let mut response = refuse(RejectionKind::RateLimited { retry_after });
            status.insert_headers(response.headers_mut());
            Err(response)
        }
        Decision::QuotaExceeded(quota) => {
            let mut response = refuse(RejectionKind::QuotaExceeded);
            *response.status_mut() = layer.quota_status;
            quota.insert_headers(response.headers_mut());
            Err(response)
        }
        Decision::CostExceedsBurst { .. } => Err(refuse(RejectionKind::InvalidRequest {
            reason: "the request costs more than the key's rate limit allows at once",
        })),
    }
}
