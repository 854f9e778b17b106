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
//! - every error carries `X-Request-Id` when the request had one (set it with
//!   tower-http's `SetRequestIdLayer` in front of this crate's layer).
//!
//! ```
//! use tower_api_key::rejection::{ErrorStyle, Rejection, Responder};
//! use tower_api_key::Outcome;
//!
//! let response = ErrorStyle::envelope().respond(&Rejection::new(Outcome::Unknown));
//! assert_eq!(response.status(), 401);
//! assert_eq!(
//!     response.body().as_ref(),
//!     br#"{"error":{"code":"authentication_required","message":"API key is missing or invalid"}}"#
//! );
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use serde_json::json;

use crate::key::KeyId;
use crate::outcome::Outcome;
use crate::scope::ScopeModel;
use crate::ConfigError;

/// The counter of authentication outcomes, labelled `outcome` (`authenticated`, or an
/// [`Outcome::code`]). Alert on a spike of `unknown` or `malformed`: leaked-key probes.
pub const OUTCOME_METRIC: &str = "tower_api_key_requests_total";

/// The `X-Request-Id` header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A refused request: the [`Outcome`] and what is known about the request.
///
/// The layer attaches a clone to the response extensions, so outer layers and tests
/// can read why a request was refused:
/// `response.extensions().get::<Rejection>()`.
#[derive(Clone, PartialEq, Eq)]
pub struct Rejection {
    outcome: Outcome,
    key_id: Option<KeyId>,
    request_id: Option<HeaderValue>,
    credential_presented: bool,
}

impl Rejection {
    /// A rejection with no request context.
    pub fn new(outcome: Outcome) -> Self {
        let credential_presented = !matches!(outcome, Outcome::Missing);
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

    /// Records the request id.
    #[must_use]
    pub fn with_request_id(mut self, request_id: Option<HeaderValue>) -> Self {
        self.request_id = request_id;
        self
    }

    /// Why the request was refused.
    pub fn outcome(&self) -> &Outcome {
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
/// | quota exceeded | 403 `quota_exceeded` | 403 `quota_exceeded` | 403 `quota_exceeded` | 403 |
/// | store unavailable | 503 `service_unavailable` | same | same | 503 |
/// | invalid request | 400 `invalid_request` | same | same | 400 |
/// | payload too large | 413 `payload_too_large` | same | same | 413 |
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
    pub fn prompt_floe() -> Self {
        Self::with_style(Style::PromptFloe)
    }

    /// ProductBridge (002): one generic 401 `invalid api_key` for a missing, unknown,
    /// revoked or expired key and for a key of the wrong kind (missing scope, wrong
    /// environment).
    pub fn product_bridge() -> Self {
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

    fn status(&self, outcome: &Outcome) -> StatusCode {
        match (self.style, outcome) {
            (
                Style::ProductBridge,
                Outcome::InsufficientScope { .. } | Outcome::WrongEnvironment,
            ) => StatusCode::UNAUTHORIZED,
            _ => outcome.status(),
        }
    }

    fn code_and_message(&self, outcome: &Outcome) -> (&'static str, String) {
        const GENERIC_401: &str = "API key is missing or invalid";
        match (self.style, outcome) {
            (Style::ProductBridge, o)
                if o.is_unauthenticated()
                    || matches!(
                        o,
                        Outcome::InsufficientScope { .. } | Outcome::WrongEnvironment
                    ) =>
            {
                ("authentication_required", "invalid api_key".to_owned())
            }
            (Style::PromptFloe, Outcome::Expired) => (
                "expired_key",
                "Key expired, or was rotated and its grace period ended".to_owned(),
            ),
            (Style::PromptFloe, o) if o.is_unauthenticated() => (
                "invalid_key",
                "Key is malformed, revoked, or doesn't exist".to_owned(),
            ),
            (_, o) if o.is_unauthenticated() => ("authentication_required", GENERIC_401.to_owned()),
            (Style::PromptFloe, Outcome::InsufficientScope { required }) => {
                ("missing_scope", required_message(required))
            }
            (Style::PromptFloe, Outcome::WrongEnvironment) => (
                "wrong_environment",
                "API key environment is not allowed here".to_owned(),
            ),
            (_, Outcome::InsufficientScope { required }) => {
                ("permission_denied", required_message(required))
            }
            (_, Outcome::WrongEnvironment) => (
                "permission_denied",
                "API key environment is not allowed here".to_owned(),
            ),
            (_, Outcome::ForeignResource) => (
                "permission_denied",
                "The resource belongs to another organization".to_owned(),
            ),
            (_, Outcome::RateLimited { retry_after }) => (
                "rate_limited",
                format!(
                    "Rate limit exceeded; retry after {} seconds",
                    retry_after_secs(*retry_after)
                ),
            ),
            (_, Outcome::QuotaExceeded) => (
                "quota_exceeded",
                "Quota exceeded; wait for the reset or raise the limit".to_owned(),
            ),
            (_, Outcome::StoreUnavailable) => (
                "service_unavailable",
                "Authentication is temporarily unavailable; retry later".to_owned(),
            ),
            (_, Outcome::InvalidRequest { reason }) => ("invalid_request", (*reason).to_owned()),
            (_, Outcome::PayloadTooLarge) => {
                ("payload_too_large", "Request body is too large".to_owned())
            }
            (_, _) => ("authentication_required", GENERIC_401.to_owned()),
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

impl Responder for ErrorStyle {
    fn respond(&self, rejection: &Rejection) -> Response<Bytes> {
        let outcome = rejection.outcome();
        let status = self.status(outcome);
        let (code, message) = self.code_and_message(outcome);
        let request_id = rejection.request_id().filter(|_| self.request_id_in_body);
        let (content_type, body) = if self.style == Style::Problem {
            let mut doc = json!({
                "type": format!("{}{}", self.problem_type_base, outcome.code()),
                "title": status.canonical_reason().unwrap_or("Error"),
                "status": status.as_u16(),
                "detail": message,
                "code": code,
            });
            if let Outcome::InsufficientScope { required } = outcome {
                doc["required_scopes"] = json!(required);
            }
            if let Some(id) = request_id {
                doc["request_id"] = json!(id);
            }
            ("application/problem+json", doc)
        } else {
            let mut error = json!({ "code": code, "message": message });
            if let Some(id) = request_id {
                error["request_id"] = json!(id);
            }
            ("application/json", json!({ "error": error }))
        };
        let mut response = Response::new(Bytes::from(body.to_string()));
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
    unavailable_retry_after: Duration,
    scope_model: Option<ScopeModel>,
}

impl Renderer {
    pub(crate) fn new(
        responder: Arc<dyn Responder>,
        realm: Arc<str>,
        scope_model: Option<ScopeModel>,
    ) -> Self {
        Self {
            responder,
            realm,
            unavailable_retry_after: Duration::from_secs(5),
            scope_model,
        }
    }

    /// The scope model of the layer, for typed scope guards.
    pub(crate) fn scope_model(&self) -> Option<&ScopeModel> {
        self.scope_model.as_ref()
    }

    /// Renders, adds the standard headers, logs one event, and attaches the rejection.
    pub(crate) fn render(&self, rejection: Rejection) -> Response<Bytes> {
        let mut response = self.responder.respond(&rejection);
        self.add_headers(&rejection, response.status(), response.headers_mut());
        tracing::info!(
            target: "tower_api_key",
            outcome = rejection.outcome().code(),
            status = response.status().as_u16(),
            key_id = rejection.key_id().map(KeyId::as_str),
            request_id = rejection.request_id(),
            "request refused"
        );
        metrics::counter!(OUTCOME_METRIC, "outcome" => rejection.outcome().code()).increment(1);
        response.extensions_mut().insert(rejection);
        response
    }

    fn add_headers(&self, rejection: &Rejection, status: StatusCode, headers: &mut HeaderMap) {
        let outcome = rejection.outcome();
        if !headers.contains_key(header::WWW_AUTHENTICATE) {
            let challenge = match (status, outcome) {
                (StatusCode::UNAUTHORIZED, _) if rejection.credential_presented() => Some(format!(
                    "Bearer realm=\"{}\", error=\"invalid_token\"",
                    self.realm
                )),
                (StatusCode::UNAUTHORIZED, _) => Some(format!("Bearer realm=\"{}\"", self.realm)),
                (StatusCode::FORBIDDEN, Outcome::InsufficientScope { required }) => Some(format!(
                    "Bearer realm=\"{}\", error=\"insufficient_scope\", scope=\"{}\"",
                    self.realm,
                    required.join(" ")
                )),
                (StatusCode::BAD_REQUEST, Outcome::InvalidRequest { .. }) => Some(format!(
                    "Bearer realm=\"{}\", error=\"invalid_request\"",
                    self.realm
                )),
                _ => None,
            };
            if let Some(value) = challenge.and_then(|c| HeaderValue::try_from(c).ok()) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        if !headers.contains_key(header::RETRY_AFTER) {
            let retry = match outcome {
                Outcome::RateLimited { retry_after } => Some(*retry_after),
                Outcome::StoreUnavailable => Some(self.unavailable_retry_after),
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
pub struct Refused {
    response: Response<Bytes>,
}

impl Refused {
    /// Renders `outcome` in the style of the [`ApiKeyLayer`](crate::ApiKeyLayer) that
    /// handled this request. Without such a layer in front (a wiring mistake), the
    /// answer is a 500 and an error is logged: a guard never lets a request through
    /// unauthenticated.
    pub fn from_parts(parts: &http::request::Parts, outcome: Outcome) -> Self {
        Self {
            response: render_for(&parts.extensions, &parts.headers, outcome),
        }
    }

    /// The 500 for a guard or extractor with no `ApiKeyLayer` in front of it.
    pub(crate) fn misconfigured() -> Self {
        tracing::error!(
            target: "tower_api_key",
            "an API-key guard or extractor ran without an ApiKeyLayer in front of it; \
             refusing the request (add ApiKeyLayer to the router, outside this route)"
        );
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

impl axum::response::IntoResponse for Refused {
    fn into_response(self) -> axum::response::Response {
        self.response.map(axum::body::Body::from)
    }
}

/// The renderer of the `ApiKeyLayer` that handled a request: carried by the
/// [`Principal`](crate::Principal), or alone for an anonymous request admitted by an
/// optional layer.
pub(crate) fn renderer_of(extensions: &http::Extensions) -> Option<&Renderer> {
    match extensions.get::<crate::Principal>() {
        Some(principal) => principal.renderer(),
        None => extensions.get::<Arc<Renderer>>().map(|r| &**r),
    }
}

/// Renders `outcome` for a request with these extensions and headers, in the style of
/// the `ApiKeyLayer` that handled it, or as the misconfiguration 500 without one.
pub(crate) fn render_for(
    extensions: &http::Extensions,
    headers: &HeaderMap,
    outcome: Outcome,
) -> Response<Bytes> {
    let Some(renderer) = renderer_of(extensions) else {
        return Refused::misconfigured().response;
    };
    let key_id = extensions.get::<crate::Principal>().map(|p| *p.key_id());
    let rejection = Rejection::new(outcome)
        .with_key_id(key_id)
        .with_request_id(headers.get(X_REQUEST_ID).cloned());
    renderer.render(rejection)
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

    fn body(style: &ErrorStyle, outcome: Outcome) -> (StatusCode, serde_json::Value) {
        let r = style.respond(&Rejection::new(outcome));
        (r.status(), serde_json::from_slice(r.body()).unwrap())
    }

    #[test]
    fn every_401_looks_the_same_in_the_envelope_style() {
        let style = ErrorStyle::envelope();
        let expected = body(&style, Outcome::Missing);
        for o in [
            Outcome::Malformed,
            Outcome::Unknown,
            Outcome::Revoked,
            Outcome::Expired,
        ] {
            assert_eq!(body(&style, o), expected);
        }
        assert_eq!(expected.0, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn prompt_floe_distinguishes_expired_keys() {
        let style = ErrorStyle::prompt_floe();
        assert_eq!(
            body(&style, Outcome::Expired).1["error"]["code"],
            "expired_key"
        );
        assert_eq!(
            body(&style, Outcome::Revoked).1["error"]["code"],
            "invalid_key"
        );
    }

    #[test]
    fn product_bridge_turns_wrong_kind_into_401() {
        let style = ErrorStyle::product_bridge();
        let (status, b) = body(
            &style,
            Outcome::InsufficientScope {
                required: vec!["public_api".into()],
            },
        );
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(b["error"]["message"], "invalid api_key");
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
