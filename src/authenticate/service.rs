use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower_service::Service;

use axum::extract::MatchedPath;

use super::authenticator::Step;
use super::config::Config;
use crate::audit::{is_state_changing, AuditAction, AuditActor, AuditEntry};
use crate::credentials::{body_key, strip_body_field, BodyKey};
use crate::key::KeyId;
use crate::pipeline::{Admitted, RequestContext, ResponseBody, ResponseFuture, Verdict};
use crate::principal::Principal;
use crate::rejection::{request_id, Rejection, RejectionKind, REQUESTS_METRIC};
use crate::store::{KeyStore, SlotKind};

/// The service built by [`AuthenticateLayer`](super::AuthenticateLayer).
pub struct Authenticate<S, K> {
    inner: S,
    config: Arc<Config<K>>,
}

impl<S, K> Authenticate<S, K> {
    pub(crate) fn new(inner: S, config: Arc<Config<K>>) -> Self {
        Self { inner, config }
    }

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

impl<S: Clone, K> Clone for Authenticate<S, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: std::fmt::Debug, K> std::fmt::Debug for Authenticate<S, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticate")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, K, B, ResBody> Service<Request<B>> for Authenticate<S, K>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    K: KeyStore,
    B: Body + From<Bytes> + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let config = &self.config;
        // Already let through by this layer (a clone of it in front, as when guards of
        // one `ApiKeyAuth` are stacked): the principal stands. Authenticating again
        // would look the key up, audit the request and touch last-used a second time,
        // and find no key at all when credentials are hidden.
        if RequestContext::authenticated_by(req.extensions(), &config.context) {
            return ResponseFuture::call(self.inner.call(req), Admitted::default());
        }
        if config.sources.reads_body() {
            let fut = Box::pin(authenticate_body(Arc::clone(config), req));
            return ResponseFuture::deciding(fut, &mut self.inner);
        }

        let step = match config.sources.read_head(req.headers(), req.uri()) {
            Err(outcome) => Step::Refuse(outcome, None),
            Ok(None) if config.optional => {
                req.extensions_mut().insert(Arc::clone(&config.context));
                return ResponseFuture::call(self.inner.call(req), Admitted::default());
            }
            Ok(None) => Step::Refuse(RejectionKind::Missing, None),
            Ok(Some(key)) => config.authenticator.start(key),
        };
        match step {
            Step::Admit(principal) => {
                let admitted = admit(config, &mut req, principal);
                ResponseFuture::call(self.inner.call(req), admitted)
            }
            Step::Refuse(outcome, key_id) => {
                ResponseFuture::reject(refuse(config, outcome, key_id, req.headers()))
            }
            Step::Miss(lookup) => {
                let config = Arc::clone(config);
                let client = config.client_ip.client(req.headers(), req.extensions());
                if client.is_none() {
                    config.authenticator.note_unidentified_client();
                }
                let fut = Box::pin(async move {
                    match config.authenticator.finish(lookup, client).await {
                        Ok(principal) => {
                            let admitted = admit(&config, &mut req, principal);
                            Verdict::Pass(req, admitted)
                        }
                        Err(outcome) => Verdict::Refuse(refuse(
                            &config,
                            outcome,
                            Some(lookup.key_id()).flatten(),
                            req.headers(),
                        )),
                    }
                });
                ResponseFuture::deciding(fut, &mut self.inner)
            }
        }
    }
}

/// The `Sunset` header (RFC 8594) of a key in its rotation grace.
const SUNSET: header::HeaderName = header::HeaderName::from_static("sunset");

/// Lets an authenticated request through: the principal and the layer's context go
/// into the extensions, the credential is removed if asked, last-used is recorded, and an audit
/// entry is prepared for state-changing methods.
fn admit<K: KeyStore, B>(
    config: &Config<K>,
    req: &mut Request<B>,
    principal: Principal,
) -> Admitted {
    // Read only by what needs it: tracing evaluates an event's fields only when the
    // event is enabled.
    let request_id = |headers: &HeaderMap| {
        request_id(headers)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let headers = principal.sunset().and_then(|at| {
        tracing::warn!(
            target: "tower_api_key",
            key_id = principal.key_id().as_str(),
            request_id = request_id(req.headers()),
            sunset = %at,
            "deprecated API key used during its rotation grace period"
        );
        let sunset = HeaderValue::try_from(httpdate::fmt_http_date(at.into())).ok()?;
        Some(HeaderMap::from_iter([(SUNSET, sunset)]))
    });
    tracing::debug!(
        target: "tower_api_key",
        outcome = "authenticated",
        key_id = principal.key_id().as_str(),
        request_id = request_id(req.headers()),
        "request authenticated"
    );
    metrics::counter!(REQUESTS_METRIC, "outcome" => "authenticated").increment(1);

    if let Some(last_used) = &config.last_used {
        last_used.touch_unix_nanos(*principal.key_id(), principal.authenticated_at_unix_nanos());
    }
    // The key's counters, found in its cached entry's slot (by key id the first time
    // the entry is used), entered into the request's hour; counted when the response
    // says how the request ended.
    let usage = config.usage.as_ref().and_then(|usage| {
        let counters = principal
            .cached_record()
            .slot(SlotKind::Usage, || usage.counters(*principal.key_id()))?;
        counters.enter_at(principal.authenticated_at_unix_nanos());
        Some(Arc::clone(counters))
    });
    let audit = match &config.auditor {
        Some(auditor) if is_state_changing(req.method()) => {
            let mut entry = AuditEntry::about_key(
                AuditAction::Request,
                (
                    principal.key_id(),
                    principal.owner(),
                    principal.prefix(),
                    principal.environment(),
                ),
                AuditActor::Key(*principal.key_id()),
                principal.authenticated_at(),
            );
            entry.method = Some(req.method().as_str().to_owned());
            entry.path = Some(req.uri().path().to_owned());
            entry.route = req
                .extensions()
                .get::<MatchedPath>()
                .map(|m| m.as_str().to_owned());
            entry.request_id = request_id(req.headers());
            Some((auditor.clone(), entry))
        }
        _ => None,
    };

    if config.hide_credentials {
        let (headers, uri) = (&mut HeaderMap::new(), &mut req.uri().clone());
        mem::swap(headers, req.headers_mut());
        config.sources.hide_in_head(headers, uri);
        mem::swap(headers, req.headers_mut());
        *req.uri_mut() = uri.clone();
    }
    let mut usage = usage;
    if let Some(before) = req.extensions_mut().insert(principal) {
        // Authenticated again further in (another surface's guard): a charge already
        // made for this request with this same key stands, so its rate limit is not
        // spent twice, and the layer further out counts its use. A different key is
        // charged and counted on its own.
        if let Some(now) = req.extensions_mut().get_mut::<Principal>() {
            if now.key_id() == before.key_id() {
                usage = None;
                if before.charged_by() != 0 {
                    now.mark_charged(before.charged_by());
                }
            }
        }
    }
    req.extensions_mut().insert(Arc::clone(&config.context));
    Admitted::new(headers, audit).counting(usage)
}

fn refuse<K>(
    config: &Config<K>,
    outcome: RejectionKind,
    key_id: Option<KeyId>,
    headers: &HeaderMap,
) -> Response<bytes::Bytes> {
    let rejection = Rejection::new(outcome)
        .with_key_id(key_id)
        .with_request_id(request_id(headers).cloned());
    config.context.renderer.render(rejection)
}

/// Authenticates a request whose key is in its JSON body: buffers the body (within
/// the limit), finds the key field, and rebuilds the request from those bytes (less
/// the key field when credentials are hidden).
async fn authenticate_body<K, B>(config: Arc<Config<K>>, req: Request<B>) -> Verdict<B>
where
    K: KeyStore,
    B: Body + From<Bytes> + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut parts, body) = req.into_parts();
    let Some(field) = config.sources.body.as_ref() else {
        return Verdict::Refuse(refuse(
            &config,
            RejectionKind::Missing,
            None,
            &parts.headers,
        ));
    };
    let refused = |outcome, key_id, headers: &HeaderMap| {
        Verdict::Refuse(refuse(&config, outcome, key_id, headers))
    };

    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > field.limit as u64) {
        return refused(RejectionKind::PayloadTooLarge, None, &parts.headers);
    }
    if parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| !is_json(ct))
    {
        return refused(
            RejectionKind::InvalidRequest {
                reason: "expected a JSON body (Content-Type: application/json)",
            },
            None,
            &parts.headers,
        );
    }
    let collected = tokio::time::timeout(field.timeout, Limited::new(body, field.limit).collect());
    let bytes = match collected.await {
        Err(_elapsed) => return refused(RejectionKind::RequestTimeout, None, &parts.headers),
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            return refused(RejectionKind::PayloadTooLarge, None, &parts.headers)
        }
        Ok(Err(_)) => {
            return refused(
                RejectionKind::InvalidRequest {
                    reason: "the request body could not be read",
                },
                None,
                &parts.headers,
            )
        }
    };

    let key = if bytes.is_empty() {
        Ok(None)
    } else {
        match body_key(&bytes, &field.field) {
            Ok(BodyKey::Present(key)) => Ok(Some(key)),
            Ok(BodyKey::Absent) => Ok(None),
            Ok(BodyKey::NotAString) => Err(RejectionKind::Malformed),
            Err(outcome) => Err(outcome),
        }
    };
    let (result, key_id) = match key {
        Err(outcome) => (Err(outcome), None),
        Ok(None) if config.optional => {
            parts.extensions.insert(Arc::clone(&config.context));
            return Verdict::Pass(
                Request::from_parts(parts, B::from(bytes)),
                Admitted::default(),
            );
        }
        Ok(None) => (Err(RejectionKind::Missing), None),
        Ok(Some(key)) => match config.authenticator.start(key.as_bytes()) {
            Step::Admit(principal) => (Ok(principal), None),
            Step::Refuse(outcome, key_id) => (Err(outcome), key_id),
            Step::Miss(lookup) => {
                let client = config.client_ip.client(&parts.headers, &parts.extensions);
                if client.is_none() {
                    config.authenticator.note_unidentified_client();
                }
                (
                    config.authenticator.finish(lookup, client).await,
                    lookup.key_id(),
                )
            }
        },
    };
    match result {
        Ok(principal) => {
            let bytes = if config.hide_credentials {
                strip_body_field(&bytes, &field.field).map_or(bytes, Bytes::from)
            } else {
                bytes
            };
            let mut req = Request::from_parts(parts, B::from(bytes));
            let admitted = admit(&config, &mut req, principal);
            Verdict::Pass(req, admitted)
        }
        Err(outcome) => refused(outcome, key_id, &parts.headers),
    }
}

/// `application/json` or `application/*+json`, with any parameters.
fn is_json(content_type: &HeaderValue) -> bool {
    let Ok(ct) = content_type.to_str() else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json") || sub.to_ascii_lowercase().ends_with("+json"))
}
