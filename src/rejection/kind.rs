//! The outcome vocabulary: every reason a request can be refused.

use std::fmt;
use std::time::Duration;

use http::StatusCode;

/// Why a request was refused. Stable and machine-readable: [`RejectionKind::code`] never
/// changes for a variant, whatever error style renders the response.
///
/// | variant | status | code |
/// |---|---|---|
/// | `Missing` | 401 | `missing` |
/// | `Malformed` | 401 | `malformed` |
/// | `Unknown` | 401 | `unknown` |
/// | `Revoked` | 401 | `revoked` |
/// | `Expired` | 401 | `expired` |
/// | `WrongEnvironment` | 403 | `wrong_environment` |
/// | `ForeignResource` | 403 | `foreign_resource` |
/// | `InsufficientScope` | 403 | `insufficient_scope` |
/// | `RateLimited` | 429 | `rate_limited` |
/// | `TooManyUnknownKeys` | 429 | `too_many_unknown_keys` |
/// | `QuotaExceeded` | 403 | `quota_exceeded` |
/// | `StoreUnavailable` | 503 | `store_unavailable` |
/// | `InvalidRequest` | 400 | `invalid_request` |
/// | `PayloadTooLarge` | 413 | `payload_too_large` |
/// | `RequestTimeout` | 408 | `request_timeout` |
/// | `Misconfigured` | 500 | `misconfigured` |
/// | `UndeclaredScope` | 500 | `undeclared_scope` |
/// | `KeyManagement` | its own (400, 403, 404, 409, 500) | its own (`not_found`, `conflict`, …) |
///
/// `Revoked` and `Expired` are only ever reported after the presented secret matched
/// the stored digest, so they never reveal that some other key exists.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No credential was presented.
    Missing,
    /// A credential was presented but is not a key of a configured format (wrong
    /// scheme, bad characters, wrong length, failed checksum).
    Malformed,
    /// Well-formed, but no stored key matches it.
    Unknown,
    /// The key was revoked.
    Revoked,
    /// The key expired, or it was superseded by a rotation and its grace period ended.
    Expired,
    /// The key's environment is not accepted here (a `test` key on a live-only API).
    WrongEnvironment,
    /// The key is valid but the resource belongs to another organization.
    ForeignResource,
    /// The key lacks a scope this route needs.
    InsufficientScope {
        /// What would have satisfied the requirement, e.g. `["observations:write"]`.
        required: Vec<String>,
    },
    /// The key is over its rate limit.
    RateLimited {
        /// How long until a request of the same cost would be allowed.
        retry_after: Duration,
    },
    /// The client spent its budget of lookups for unknown keys: an uncached key from
    /// it is refused without a lookup (see [`budget`](crate::budget)).
    TooManyUnknownKeys {
        /// How long until one more lookup is allowed.
        retry_after: Duration,
    },
    /// The owner's daily or monthly quota is spent.
    QuotaExceeded,
    /// The key store could not answer: fail closed with 503.
    StoreUnavailable,
    /// The request is malformed in a way that is not about the key itself: a key sent
    /// by more than one method, a JSON body that does not parse, several
    /// `Authorization` headers.
    InvalidRequest {
        /// A short, fixed description. Never contains the key.
        reason: &'static str,
    },
    /// The body is larger than the buffering limit of the JSON-body key source.
    PayloadTooLarge,
    /// The body of a JSON-body key source did not arrive within its timeout.
    RequestTimeout,
    /// A guard or extractor ran with no `AuthenticateLayer` in front of it: a wiring mistake
    /// of the application (500), logged once with the fix. Never the client's fault,
    /// and never a pass.
    Misconfigured,
    /// A route requires a scope the layer's scope model does not declare (a
    /// [`Scoped`](crate::require_scopes::Scoped) marker naming a scope nobody declared): a
    /// wiring mistake of the application (500), logged with the scope. Never a pass.
    UndeclaredScope {
        /// The scope no model declares.
        scope: String,
    },
    /// The key manager refused a lifecycle operation (an invalid name, an authority
    /// rule, a key that is not found or in the wrong state): a
    /// [`ManageError`](crate::manage::ManageError) as a refusal, so that key endpoints
    /// answer in the same style as the guards
    /// ([`ApiKeyAuth::respond`](crate::auth::ApiKeyAuth::respond)). A store outage is
    /// [`RejectionKind::StoreUnavailable`] instead.
    KeyManagement {
        /// The status.
        status: StatusCode,
        /// The manager's code: `invalid_request`, `permission_denied`, `not_found`,
        /// `conflict`, …
        code: &'static str,
        /// A message safe to show the client.
        message: String,
    },
}

impl RejectionKind {
    /// The HTTP status this outcome is answered with by default.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Missing | Self::Malformed | Self::Unknown | Self::Revoked | Self::Expired => {
                StatusCode::UNAUTHORIZED
            }
            Self::WrongEnvironment
            | Self::ForeignResource
            | Self::InsufficientScope { .. }
            | Self::QuotaExceeded => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } | Self::TooManyUnknownKeys { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Misconfigured | Self::UndeclaredScope { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::KeyManagement { status, .. } => *status,
        }
    }

    /// A stable snake_case code, for logs, metrics and custom responders.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Unknown => "unknown",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::WrongEnvironment => "wrong_environment",
            Self::ForeignResource => "foreign_resource",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::RateLimited { .. } => "rate_limited",
            Self::QuotaExceeded => "quota_exceeded",
            Self::StoreUnavailable => "store_unavailable",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::PayloadTooLarge => "payload_too_large",
            Self::TooManyUnknownKeys { .. } => "too_many_unknown_keys",
            Self::RequestTimeout => "request_timeout",
            Self::Misconfigured => "misconfigured",
            Self::UndeclaredScope { .. } => "undeclared_scope",
            Self::KeyManagement { code, .. } => code,
        }
    }

    /// `true` for the outcomes answered with 401.
    pub fn is_unauthenticated(&self) -> bool {
        self.status() == StatusCode::UNAUTHORIZED
    }
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::error::Error for RejectionKind {}
