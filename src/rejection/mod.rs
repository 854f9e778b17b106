//! Turning a refused request into a response: the [`Rejection`], the replaceable
//! [`Responder`], and the built-in [`ErrorStyle`]s that reproduce the documented
//! bodies.
//!
//! Whatever the style, the layer adds the headers the standards ask for, unless the
//! responder already set them:
//!
//! - every 401 carries `WWW-Authenticate: Bearer realm="…"`, with
//!   `error="invalid_token"` when a credential was presented (RFC 6750 §3);
//! - a scope refusal carries `error="insufficient_scope", scope="…"`, and a 400
//!   `error="invalid_request"`;
//! - 429 and 503 carry `Retry-After` in whole seconds (never 0);
//! - every error carries `X-Request-Id` when the request had a valid one (set it with
//!   tower-http's `SetRequestIdLayer` in front of this crate's layer). An id longer
//!   than [`MAX_REQUEST_ID_LEN`] characters or with anything but visible ASCII is
//!   never logged, echoed or audited: see [`is_valid_request_id`].
//!
//! Each refusal is one `DEBUG` event (target `tower_api_key`, with the outcome, the
//! key id when known, never the key) and one increment of [`REQUESTS_METRIC`]:
//! refusals are what an attacker controls, so they are counted rather than logged at
//! a level that is on in production.
//!
//! ```
//! use tower_api_key::rejection::{ErrorStyle, Rejection, Responder};
//! use tower_api_key::RejectionKind;
//!
//! let response = ErrorStyle::envelope().respond(&Rejection::new(RejectionKind::Unknown));
//! assert_eq!(response.status(), 401);
//! assert_eq!(
//!     response.body().as_ref(),
//!     br#"{"error":{"code":"authentication_required","message":"API key is missing or invalid"}}"#
//! );
//! ```

use std::borrow::Cow;
use std::fmt;
use std::future::Future as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use serde::{Serialize, Serializer};

use crate::key::KeyId;
mod kind;

pub use self::kind::RejectionKind;
use crate::error::ConfigError;

/// The counter of authentication outcomes, labelled `outcome` (`authenticated`, or an
/// [`RejectionKind::code`]). Alert on a spike of `unknown` or `malformed`: leaked-key probes.
pub const REQUESTS_METRIC: &str = "tower_api_key_requests_total";

/// The `X-Request-Id` header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id used: 128 characters.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Whether a request id may be logged, echoed and stored: 1 to
/// [`MAX_REQUEST_ID_LEN`] characters of visible ASCII (no spaces, no control
/// characters). This crate ignores any other `X-Request-Id`; put a layer in front that
/// replaces it with a generated one (the demo shows how).
///
/// ```
/// use http::HeaderValue;
/// use tower_api_key::rejection::is_valid_request_id;
///
/// assert!(is_valid_request_id(&HeaderValue::from_static("req-42")));
/// assert!(!is_valid_request_id(&HeaderValue::from_static("two words")));
/// assert!(!is_valid_request_id(&HeaderValue::from_str(&"x".repeat(129)).unwrap()));
/// ```
pub fn is_valid_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= MAX_REQUEST_ID_LEN && bytes.iter().all(u8::is_ascii_graphic)
}

/// The request's `X-Request-Id`, when it is a valid one.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<&HeaderValue> {
    headers.get(X_REQUEST_ID).filter(|v| is_valid_request_id(v))
}

/// A refused request: the [`RejectionKind`] and what is known about the request.
///
/// The layer attaches a clone to the response extensions, so outer layers and tests
/// can read why a request was refused:
/// `response.extensions().get::<Rejection>()`.
#[derive(Clone, PartialEq, Eq)]
pub struct Rejection {
    outcome: RejectionKind,
    key_id: Option<KeyId>,
    request_id: Option<HeaderValue>,
    credential_presented: bool,
}

impl Rejection {
    /// A rejection with no request context.
    pub fn new(outcome: RejectionKind) -> Self {
        let credential_presented = !matches!(outcome, RejectionKind::Missing);
        Self {
            outcome,
            key_id: None,
            request_id: None,
            credential_presented,
        }
    }

    /// Records the id of the key involved (known once the key matched).
    #[must_use]
    pub fn with_key_id(mut self, key_id: Option<KeyId>) -> Self {
        self.key_id = key_id;
        self
    }

    /// Records the request id (dropped unless [`is_valid_request_id`]).
    #[must_use]
    pub fn with_request_id(mut self, request_id: Option<HeaderValue>) -> Self {
        self.request_id = request_id.filter(is_valid_request_id);
        self
    }

    /// Why the request was refused.
    pub fn kind(&self) -> &RejectionKind {
        &self.outcome
    }

    /// The id of the key, when the key was recognised.
    pub fn key_id(&self) -> Option<&KeyId> {
        self.key_id.as_ref()
    }

    /// The request id (`X-Request-Id`), when the request had one.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_ref().and_then(|v| v.to_str().ok())
    }

    /// `true` when the request carried a credential (so a 401 challenge names
    /// `error="invalid_token"`).
    pub fn credential_presented(&self) -> bool {
        self.credential_presented
    }

    /// The status the built-in styles answer with (the outcome's own).
    pub fn status(&self) -> StatusCode {
        self.outcome.status()
    }

    /// The code of the default style (the Performance Blocks envelope), for a custom
    /// body that keeps the crate's vocabulary: `authentication_required`,
    /// `permission_denied`, `rate_limited`, …
    pub fn code(&self) -> &'static str {
        ErrorStyle::envelope().code_and_message(&self.outcome).0
    }

    /// The default style's message: "API key is missing or invalid",
    /// "Required scope: invoices:write", "Rate limit exceeded; retry after 12 seconds", …
    pub fn message(&self) -> Cow<'static, str> {
        ErrorStyle::envelope().code_and_message(&self.outcome).1
    }

    /// For a rate-limit refusal, the `Retry-After` the layer sends: whole seconds,
    /// rounded up, never 0. (The layer adds the header itself unless the responder set
    /// it, also for 503.)
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self.outcome {
            RejectionKind::RateLimited { retry_after }
            | RejectionKind::TooManyUnknownKeys { retry_after } => {
                Some(retry_after_secs(retry_after))
            }
            _ => None,
        }
    }
}

/// A [`Responder`] from a closure returning anything axum can answer with: your own
/// error type, `(StatusCode, Json<…>)`, … Its argument needs no type annotation:
///
/// ```
/// use axum::http::StatusCode;
/// use tower_api_key::rejection::responder_fn;
///
/// let responder = responder_fn(|rejection| {
///     (rejection.status(), format!("{{\"problem\":\"{}\"}}", rejection.code()))
/// });
/// # let _ = responder;
/// ```
///
/// The layer still adds `WWW-Authenticate`, `Retry-After` and `X-Request-Id` unless the
/// response has them. The body must be complete when the closure returns (any body
/// built from bytes, a string or JSON is); a streaming body is answered with a 500 and
/// logged.
pub fn responder_fn<F, R>(f: F) -> FnResponder<F>
where
    F: Fn(&Rejection) -> R + Send + Sync + 'static,
    R: axum::response::IntoResponse,
{
    FnResponder(f)
}

/// The [`Responder`] made by [`responder_fn`].
#[derive(Clone, Copy)]
pub struct FnResponder<F>(F);

impl<F> fmt::Debug for FnResponder<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnResponder")
    }
}

impl<F, R> Responder for FnResponder<F>
where
    F: Fn(&Rejection) -> R + Send + Sync + 'static,
    R: axum::response::IntoResponse,
{
    fn respond(&self, rejection: &Rejection) -> Response<Bytes> {
        use http_body_util::BodyExt as _;
        let (parts, body) = (self.0)(rejection).into_response().into_parts();
        // A body made of bytes is ready at once: collect it with one poll.
        let mut collect = std::pin::pin!(body.collect());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match collect.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Ok(collected)) => {
                Response::from_parts(parts, collected.to_bytes())
            }
            _ => {
                tracing::error!(
                    target: "tower_api_key",
                    "a responder_fn returned a body that was not complete; answering 500. \
                     Build refusal bodies from bytes, strings or JSON"
                );
                let mut response = Response::new(Bytes::new());
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                response
            }
        }
    }
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("outcome", &self.outcome)
            .field("key_id", &self.key_id)
            .field("request_id", &self.request_id())
            .finish()
    }
}

/// Renders a [`Rejection`] as a response. Replace it to answer in your own format;
/// a closure `Fn(&Rejection) -> Response<Bytes>` works too.
///
/// The layer adds the standard headers afterwards (see the [module docs](self)),
/// unless the responder set them itself.
pub trait Responder: Send + Sync + 'static {
    /// The response for this rejection. Never include the presented key.
    fn respond(&self, rejection: &Rejection) -> Response<Bytes>;
}

impl<F> Responder for F
where
    F: Fn(&Rejection) -> Response<Bytes> + Send + Sync + 'static,
{
    fn respond(&self, rejection: &Rejection) -> Response<Bytes> {
        self(rejection)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Envelope,
    PromptFloe,
    ProductBridge,
    Problem,
}

/// The built-in error styles.
///
/// | outcome | `envelope()` (Performance Blocks) | `prompt_floe()` | `product_bridge()` | `problem_json()` |
/// |---|---|---|---|---|
/// | any 401 | 401 `authentication_required` "API key is missing or invalid" | 401 `invalid_key` (`expired_key` once the secret matched) | 401 `authentication_required` "invalid api_key" | 401 `application/problem+json` |
/// | insufficient scope | 403 `permission_denied` "Required scope: observations:write" | 403 `missing_scope` | 401 "invalid api_key" (the wrong kind of key) | 403 |
/// | wrong environment | 403 `permission_denied` | 403 `wrong_environment` | 401 "invalid api_key" | 403 |
/// | rate limited | 429 `rate_limited` | 429 `rate_limited` | 429 `rate_limited` | 429 |
/// | too many unknown keys | 429 `rate_limited` | same | same | 429 |
/// | quota exceeded | 403 `quota_exceeded` | 403 `quota_exceeded` | 403 `quota_exceeded` | 403 |
/// | store unavailable | 503 `service_unavailable` | same | same | 503 |
/// | invalid request | 400 `invalid_request` | same | same | 400 |
/// | payload too large | 413 `payload_too_large` | same | same | 413 |
/// | request timeout (body) | 408 `request_timeout` | same | same | 408 |
///
/// The first three answer `{"error":{"code":…,"message":…}}`; with
/// [`ErrorStyle::with_request_id_in_body`] a `request_id` member is added inside
/// `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorStyle {
    style: Style,
    request_id_in_body: bool,
    problem_type_base: Arc<str>,
}

impl ErrorStyle {
    /// Performance Blocks (000): one 401 for every authentication failure, so nothing
    /// reveals whether a key exists; 403 `permission_denied` naming the scope.
    pub fn envelope() -> Self {
        Self::with_style(Style::Envelope)
    }

    /// PromptFloe (004): `invalid_key`, `expired_key`, `missing_scope`,
    /// `quota_exceeded`.
    pub(crate) fn prompt_floe() -> Self {
        Self::with_style(Style::PromptFloe)
    }

    /// ProductBridge (002): one generic 401 `invalid api_key` for a missing, unknown,
    /// revoked or expired key and for a key of the wrong kind (missing scope, wrong
    /// environment).
    pub(crate) fn product_bridge() -> Self {
        Self::with_style(Style::ProductBridge)
    }

    /// RFC 9457 `application/problem+json`, with `type`, `title`, `status`, `detail`,
    /// a `code` extension member and, for scope refusals, `required_scopes`.
    pub fn problem_json() -> Self {
        Self::with_style(Style::Problem)
    }

    fn with_style(style: Style) -> Self {
        Self {
            style,
            request_id_in_body: false,
            problem_type_base: Arc::from("urn:tower-api-key:problem:"),
        }
    }

    /// Adds the request id inside the body (`error.request_id`, or `request_id` in a
    /// problem document).
    #[must_use]
    pub fn with_request_id_in_body(mut self, enabled: bool) -> Self {
        self.request_id_in_body = enabled;
        self
    }

    /// The prefix of problem `type` URIs (`urn:tower-api-key:problem:` by default),
    /// followed by the outcome's code.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the base is empty or contains spaces or quotes.
    pub fn with_problem_type_base(mut self, base: &str) -> Result<Self, ConfigError> {
        if base.is_empty() || !base.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
            return Err(ConfigError::new(format!(
                "invalid problem type base {base:?}"
            )));
        }
        self.problem_type_base = Arc::from(base);
        Ok(self)
    }

    fn status(&self, outcome: &RejectionKind) -> StatusCode {
        match (self.style, outcome) {
            (
                Style::ProductBridge,
                RejectionKind::InsufficientScope { .. } | RejectionKind::WrongEnvironment,
            ) => StatusCode::UNAUTHORIZED,
            _ => outcome.status(),
        }
    }

    fn code_and_message(&self, outcome: &RejectionKind) -> (&'static str, Cow<'static, str>) {
        const GENERIC_401: &str = "API key is missing or invalid";
        match (self.style, outcome) {
            // The manager's own words, in every style.
            (_, RejectionKind::KeyManagement { code, message, .. }) => {
                (code, Cow::Owned(message.clone()))
            }
            (Style::ProductBridge, o)
                if o.is_unauthenticated()
                    || matches!(
                        o,
                        RejectionKind::InsufficientScope { .. } | RejectionKind::WrongEnvironment
                    ) =>
            {
                ("authentication_required", Cow::Borrowed("invalid api_key"))
            }
            (Style::PromptFloe, RejectionKind::Expired) => (
                "expired_key",
                Cow::Borrowed("Key expired, or was rotated and its grace period ended"),
            ),
            (Style::PromptFloe, o) if o.is_unauthenticated() => (
                "invalid_key",
                Cow::Borrowed("Key is malformed, revoked, or doesn't exist"),
            ),
            (_, o) if o.is_unauthenticated() => {
                ("authentication_required", Cow::Borrowed(GENERIC_401))
            }
            (Style::PromptFloe, RejectionKind::InsufficientScope { required }) => {
                ("missing_scope", Cow::Owned(required_message(required)))
            }
            (Style::PromptFloe, RejectionKind::WrongEnvironment) => (
                "wrong_environment",
                Cow::Borrowed("API key environment is not allowed here"),
            ),
            (_, RejectionKind::InsufficientScope { required }) => {
                ("permission_denied", Cow::Owned(required_message(required)))
            }
            (_, RejectionKind::WrongEnvironment) => (
                "permission_denied",
                Cow::Borrowed("API key environment is not allowed here"),
            ),
            (_, RejectionKind::ForeignResource) => (
                "permission_denied",
                Cow::Borrowed("The resource belongs to another organization"),
            ),
            (_, RejectionKind::RateLimited { retry_after }) => (
                "rate_limited",
                Cow::Owned(format!(
                    "Rate limit exceeded; retry after {} seconds",
                    retry_after_secs(*retry_after)
                )),
            ),
            (_, RejectionKind::TooManyUnknownKeys { retry_after }) => (
                "rate_limited",
                Cow::Owned(format!(
                    "Too many unknown API keys from this client; retry after {} seconds",
                    retry_after_secs(*retry_after)
                )),
            ),
            (_, RejectionKind::Misconfigured) => (
                "internal_error",
                Cow::Borrowed("Authentication is not configured for this route"),
            ),
            (_, RejectionKind::UndeclaredScope { .. }) => (
                "internal_error",
                Cow::Borrowed("This route requires a scope that the API does not declare"),
            ),
            (_, RejectionKind::RequestTimeout) => (
                "request_timeout",
                Cow::Borrowed("The request body did not arrive in time"),
            ),
            (_, RejectionKind::QuotaExceeded) => (
                "quota_exceeded",
                Cow::Borrowed("Quota exceeded; wait for the reset or raise the limit"),
            ),
            (_, RejectionKind::StoreUnavailable) => (
                "service_unavailable",
                Cow::Borrowed("Authentication is temporarily unavailable; retry later"),
            ),
            (_, RejectionKind::InvalidRequest { reason }) => {
                ("invalid_request", Cow::Borrowed(*reason))
            }
            (_, RejectionKind::PayloadTooLarge) => (
                "payload_too_large",
                Cow::Borrowed("Request body is too large"),
            ),
            (_, _) => ("authentication_required", Cow::Borrowed(GENERIC_401)),
        }
    }
}

impl Default for ErrorStyle {
    /// [`ErrorStyle::envelope`].
    fn default() -> Self {
        Self::envelope()
    }
}

fn required_message(required: &[String]) -> String {
    match required {
        [one] => format!("Required scope: {one}"),
        many => format!("Required scopes: {}", many.join(", ")),
    }
}

/// `{"error":{…}}`. Members in alphabetical order, as in every body this crate has
/// answered (they were built as `serde_json::Value` maps once).
#[derive(Serialize)]
struct EnvelopeBody<'a> {
    error: EnvelopeError<'a>,
}

#[derive(Serialize)]
struct EnvelopeError<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

/// An RFC 9457 problem document, members in alphabetical order.
#[derive(Serialize)]
struct ProblemBody<'a> {
    code: &'a str,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    required_scopes: Option<&'a [String]>,
    status: u16,
    title: &'a str,
    #[serde(rename = "type")]
    kind: ProblemType<'a>,
}

/// The problem `type` URI, written without building it as a string first.
struct ProblemType<'a>(&'a str, &'a str);

impl Serialize for ProblemType<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}{}", self.0, self.1))
    }
}

impl Responder for ErrorStyle {
    fn respond(&self, rejection: &Rejection) -> Response<Bytes> {
        let outcome = rejection.kind();
        let status = self.status(outcome);
        let (code, message) = self.code_and_message(outcome);
        let request_id = rejection.request_id().filter(|_| self.request_id_in_body);
        // Serializing borrowed strings and integers cannot fail; should it ever, the
        // status and headers still say what happened.
        let (content_type, body) = if self.style == Style::Problem {
            let doc = ProblemBody {
                code,
                detail: &message,
                request_id,
                required_scopes: match outcome {
                    RejectionKind::InsufficientScope { required } => Some(required),
                    _ => None,
                },
                status: status.as_u16(),
                title: status.canonical_reason().unwrap_or("Error"),
                kind: ProblemType(&self.problem_type_base, outcome.code()),
            };
            ("application/problem+json", serde_json::to_vec(&doc))
        } else {
            let doc = EnvelopeBody {
                error: EnvelopeError {
                    code,
                    message: &message,
                    request_id,
                },
            };
            ("application/json", serde_json::to_vec(&doc))
        };
        let mut response = Response::new(Bytes::from(body.unwrap_or_default()));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }
}

/// `Retry-After` seconds: rounded up, at least 1.
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

/// What the layer hands to downstream guards, so scope refusals are rendered in the
/// same style as authentication refusals.
#[derive(Clone)]
pub(crate) struct Renderer {
    responder: Arc<dyn Responder>,
    realm: Arc<str>,
    /// The fixed challenges, built once: `Bearer realm="…"`, with
    /// `error="invalid_token"`, and with `error="invalid_request"`. `None` only if the
    /// realm could not be a header value, which realm validation rules out.
    challenge: Option<HeaderValue>,
    challenge_invalid_token: Option<HeaderValue>,
    challenge_invalid_request: Option<HeaderValue>,
    unavailable_retry_after: Duration,
}

impl Renderer {
    pub(crate) fn new(responder: Arc<dyn Responder>, realm: Arc<str>) -> Self {
        let challenge =
            |error: &str| HeaderValue::try_from(format!("Bearer realm=\"{realm}\"{error}")).ok();
        Self {
            challenge: challenge(""),
            challenge_invalid_token: challenge(", error=\"invalid_token\""),
            challenge_invalid_request: challenge(", error=\"invalid_request\""),
            responder,
            realm,
            unavailable_retry_after: Duration::from_secs(5),
        }
    }

    /// The response for `rejection` with the standard headers, neither logged nor
    /// counted: what an OpenAPI document shows as this layer's refusal.
    #[cfg(feature = "utoipa")]
    pub(crate) fn sample(&self, rejection: &Rejection) -> Response<Bytes> {
        let mut response = self.responder.respond(rejection);
        self.add_headers(rejection, response.status(), response.headers_mut());
        response
    }

    /// The realm of the challenges: what names the surface's OpenAPI components.
    #[cfg(feature = "utoipa")]
    pub(crate) fn realm(&self) -> &str {
        &self.realm
    }

    /// Renders, adds the standard headers, logs one event, and attaches the rejection.
    pub(crate) fn render(&self, rejection: Rejection) -> Response<Bytes> {
        let mut response = self.responder.respond(&rejection);
        self.add_headers(&rejection, response.status(), response.headers_mut());
        tracing::debug!(
            target: "tower_api_key",
            outcome = rejection.kind().code(),
            status = response.status().as_u16(),
            key_id = rejection.key_id().map(KeyId::as_str),
            request_id = rejection.request_id(),
            "request refused"
        );
        metrics::counter!(REQUESTS_METRIC, "outcome" => rejection.kind().code()).increment(1);
        response.extensions_mut().insert(rejection);
        response
    }

    fn add_headers(&self, rejection: &Rejection, status: StatusCode, headers: &mut HeaderMap) {
        let outcome = rejection.kind();
        if !headers.contains_key(header::WWW_AUTHENTICATE) {
            let challenge = match (status, outcome) {
                (StatusCode::UNAUTHORIZED, _) if rejection.credential_presented() => {
                    self.challenge_invalid_token.clone()
                }
                (StatusCode::UNAUTHORIZED, _) => self.challenge.clone(),
                (StatusCode::FORBIDDEN, RejectionKind::InsufficientScope { required }) => {
                    HeaderValue::try_from(format!(
                        "Bearer realm=\"{}\", error=\"insufficient_scope\", scope=\"{}\"",
                        self.realm,
                        required.join(" ")
                    ))
                    .ok()
                }
                (StatusCode::BAD_REQUEST, RejectionKind::InvalidRequest { .. }) => {
                    self.challenge_invalid_request.clone()
                }
                _ => None,
            };
            if let Some(value) = challenge {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        if !headers.contains_key(header::RETRY_AFTER) {
            let retry = match outcome {
                RejectionKind::RateLimited { retry_after }
                | RejectionKind::TooManyUnknownKeys { retry_after } => Some(*retry_after),
                RejectionKind::StoreUnavailable => Some(self.unavailable_retry_after),
                _ => None,
            };
            if let Some(retry) = retry {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(retry)),
                );
            }
        }
        if let Some(id) = &rejection.request_id {
            if !headers.contains_key(X_REQUEST_ID) {
                headers.insert(X_REQUEST_ID, id.clone());
            }
        }
        if !headers.contains_key(header::CACHE_CONTROL) {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
}

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renderer")
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// A refusal produced outside the layer (by an extractor or a guard), ready to be
/// returned from an axum handler.
#[derive(Debug)]
pub struct RejectionResponse {
    response: Response<Bytes>,
}

impl RejectionResponse {
    /// A refusal answered with `response`.
    pub(crate) fn from_response(response: Response<Bytes>) -> Self {
        Self { response }
    }

    /// The 500 for a guard or extractor with no `AuthenticateLayer` in front of it, in the
    /// default envelope: no front door ran, so no application style is known (there is
    /// no process-wide style; every other refusal is rendered by the responder of the
    /// layer it came through).
    pub(crate) fn misconfigured() -> Self {
        // Once per process: the same mistake repeats on every request of the route.
        static LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::error!(
                target: "tower_api_key",
                "an API-key guard or extractor ran without an AuthenticateLayer in front of it; \
                 refusing with 500 (fix: build route guards with ApiKeyAuth::guard, which \
                 include authentication, or add AuthenticateLayer to the router after this route \
                 is added: Router::layer only wraps routes added before it)"
            );
        }
        let mut response = Response::new(Bytes::from_static(
            br#"{"error":{"code":"internal_error","message":"authentication is not configured for this route"}}"#,
        ));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Self { response }
    }

    /// The response.
    pub fn into_response(self) -> Response<Bytes> {
        self.response
    }
}

impl axum::response::IntoResponse for RejectionResponse {
    fn into_response(self) -> axum::response::Response {
        self.response.map(axum::body::Body::from)
    }
}

/// Checks a realm for use inside a quoted `WWW-Authenticate` parameter.
pub(crate) fn validate_realm(realm: &str) -> Result<(), ConfigError> {
    if realm.is_empty()
        || !realm
            .bytes()
            .all(|b| (b == b' ' || b.is_ascii_graphic()) && b != b'"' && b != b'\\')
    {
        return Err(ConfigError::new(format!(
            "invalid realm {realm:?}: visible ASCII without quotes or backslashes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(style: &ErrorStyle, outcome: RejectionKind) -> (StatusCode, serde_json::Value) {
        let r = style.respond(&Rejection::new(outcome));
        (r.status(), serde_json::from_slice(r.body()).unwrap())
    }

    #[test]
    fn every_401_looks_the_same_in_the_envelope_style() {
        let style = ErrorStyle::envelope();
        let expected = body(&style, RejectionKind::Missing);
        for o in [
            RejectionKind::Malformed,
            RejectionKind::Unknown,
            RejectionKind::Revoked,
            RejectionKind::Expired,
        ] {
            assert_eq!(body(&style, o), expected);
        }
        assert_eq!(expected.0, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn prompt_floe_distinguishes_expired_keys() {
        let style = ErrorStyle::prompt_floe();
        assert_eq!(
            body(&style, RejectionKind::Expired).1["error"]["code"],
            "expired_key"
        );
        assert_eq!(
            body(&style, RejectionKind::Revoked).1["error"]["code"],
            "invalid_key"
        );
    }

    #[test]
    fn product_bridge_turns_wrong_kind_into_401() {
        let style = ErrorStyle::product_bridge();
        let (status, b) = body(
            &style,
            RejectionKind::InsufficientScope {
                required: vec!["public_api".into()],
            },
        );
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(b["error"]["message"], "invalid api_key");
    }

    /// The bodies as they were built before serializing from structs: `serde_json`
    /// maps, whose members come out in alphabetical order.
    fn reference_body(style: &ErrorStyle, rejection: &Rejection) -> serde_json::Value {
        use serde_json::json;
        let outcome = rejection.kind();
        let status = style.status(outcome);
        let (code, message) = style.code_and_message(outcome);
        let request_id = rejection.request_id().filter(|_| style.request_id_in_body);
        if style.style == Style::Problem {
            let mut doc = json!({
                "type": format!("{}{}", style.problem_type_base, outcome.code()),
                "title": status.canonical_reason().unwrap_or("Error"),
                "status": status.as_u16(),
                "detail": message,
                "code": code,
            });
            if let RejectionKind::InsufficientScope { required } = outcome {
                doc["required_scopes"] = json!(required);
            }
            if let Some(id) = request_id {
                doc["request_id"] = json!(id);
            }
            doc
        } else {
            let mut error = json!({ "code": code, "message": message });
            if let Some(id) = request_id {
                error["request_id"] = json!(id);
            }
            json!({ "error": error })
        }
    }

    #[test]
    fn bodies_are_byte_for_byte_the_documented_ones() {
        let outcomes = || {
            [
                RejectionKind::Missing,
                RejectionKind::Malformed,
                RejectionKind::Unknown,
                RejectionKind::Revoked,
                RejectionKind::Expired,
                RejectionKind::InsufficientScope {
                    required: vec!["observations:write".into()],
                },
                RejectionKind::InsufficientScope {
                    required: vec!["a:write".into(), "b\"q\\:write".into()],
                },
                RejectionKind::WrongEnvironment,
                RejectionKind::ForeignResource,
                RejectionKind::RateLimited {
                    retry_after: Duration::from_millis(11_200),
                },
                RejectionKind::QuotaExceeded,
                RejectionKind::StoreUnavailable,
                RejectionKind::InvalidRequest {
                    reason: "bad \"thing\"",
                },
                RejectionKind::PayloadTooLarge,
                RejectionKind::TooManyUnknownKeys {
                    retry_after: Duration::from_millis(600),
                },
                RejectionKind::RequestTimeout,
            ]
        };
        let styles = [
            ErrorStyle::envelope(),
            ErrorStyle::prompt_floe(),
            ErrorStyle::product_bridge(),
            ErrorStyle::problem_json(),
            ErrorStyle::problem_json()
                .with_problem_type_base("https://errors.example/a\\b/")
                .unwrap(),
        ];
        let request_ids = [
            None,
            Some(HeaderValue::from_static("req-9")),
            Some(HeaderValue::from_static("a\"b\\c")),
        ];
        let mut checked = 0;
        for style in styles {
            for in_body in [false, true] {
                let style = style.clone().with_request_id_in_body(in_body);
                for request_id in &request_ids {
                    for outcome in outcomes() {
                        let rejection = Rejection::new(outcome).with_request_id(request_id.clone());
                        let response = style.respond(&rejection);
                        let expected = reference_body(&style, &rejection).to_string();
                        assert_eq!(
                            std::str::from_utf8(response.body()).unwrap(),
                            expected,
                            "{style:?} {rejection:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 5 * 2 * 3 * 16);
    }

    #[test]
    fn challenges_name_the_realm() {
        let renderer = Renderer::new(Arc::new(ErrorStyle::envelope()), Arc::from("my api"));
        let challenge = |rejection: Rejection| {
            renderer.render(rejection).headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            challenge(Rejection::new(RejectionKind::Missing)),
            r#"Bearer realm="my api""#
        );
        assert_eq!(
            challenge(Rejection::new(RejectionKind::Unknown)),
            r#"Bearer realm="my api", error="invalid_token""#
        );
        assert_eq!(
            challenge(Rejection::new(RejectionKind::InvalidRequest {
                reason: "x"
            })),
            r#"Bearer realm="my api", error="invalid_request""#
        );
        assert_eq!(
            challenge(Rejection::new(RejectionKind::InsufficientScope {
                required: vec!["a:read".into(), "b:read".into()]
            })),
            r#"Bearer realm="my api", error="insufficient_scope", scope="a:read b:read""#
        );
    }

    #[test]
    fn retry_after_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(12)), 12);
    }

    #[test]
    fn realms_are_validated() {
        assert!(validate_realm("api").is_ok());
        assert!(validate_realm("my api").is_ok());
        assert!(validate_realm("a\"b").is_err());
        assert!(validate_realm("").is_err());
        assert!(validate_realm("a\nb").is_err());
    }
}
