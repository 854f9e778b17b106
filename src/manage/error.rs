//! Why a lifecycle operation was refused, and how that reads over HTTP.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use time::OffsetDateTime;

use crate::key::{Environment, KeyError};
use crate::rejection::{Rejection, RejectionKind};
use crate::store::StoreError;

/// Which authority rule refused an operation: see [the rules](super::KeyManager#authority). The
/// message names what is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// The new key (or the rotation's successor) would hold a scope the acting key
    /// does not hold.
    #[error("cannot grant scope {0}: the acting key does not hold it")]
    GrantNotHeld(String),
    /// The key acted on holds a scope the acting key does not hold.
    #[error("cannot act on a key holding scope {0}: the acting key does not hold it")]
    TargetNotHeld(String),
    /// The acting key's environment does not reach the environment of the key it
    /// would create. (A key it does not reach is [`ManageError::NotFound`] instead,
    /// exactly like a missing one.)
    #[error("{}", environment_message(*.acting))]
    Environment {
        /// The acting key's environment.
        acting: Option<Environment>,
        /// The environment of the key acted on or created.
        target: Option<Environment>,
    },
    /// The acting key belongs to another owner than the one acted on.
    #[error("the acting key belongs to another {}", .0)]
    OtherOwner(&'static str),
    /// The acting key was replaced by a rotation: it still authenticates until its
    /// grace period ends, but manages no keys, its successor does.
    #[error(
        "the acting key was replaced by a rotation: it works until its grace period ends, \
         but only its successor manages keys"
    )]
    Superseded,
    /// The new key (or the rotation's successor) would outlive the acting key, which
    /// expires at the given instant: a key never obtains a credential that outlives
    /// it.
    #[error("the new key would outlive the acting key (which expires {})", rfc3339(*.0))]
    Outlives(OffsetDateTime),
    /// The acting key was revoked, rotated, re-scoped or re-dated, or expired, after
    /// its authority was judged and before the change was written: the store refused
    /// the change ([`Applied::ActorChanged`](crate::store::Applied::ActorChanged)).
    #[error(
        "the acting key was revoked, rotated, changed or expired while the operation ran; \
         nothing was changed"
    )]
    ActorChanged,
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

fn environment_message(acting: Option<Environment>) -> String {
    match acting {
        Some(env) => format!("a {env} key can only act on {env} keys"),
        None => "a key without an environment can only act on keys without one".to_owned(),
    }
}

/// Why a lifecycle operation was refused. Nothing was changed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// The name is empty, too long, or has control characters.
    #[error("invalid key name: {0}")]
    InvalidName(&'static str),
    /// A scope is not declared by the scope model.
    #[error("unknown scope {0:?}")]
    UnknownScope(String),
    /// The environment is not one of the key format's, or the format needs one and
    /// none was given; the message names the format's environments.
    #[error(transparent)]
    InvalidEnvironment(KeyError),
    /// The expiry is not in the future, or past the calendar's end.
    #[error("the expiry must be in the future")]
    ExpiryInPast,
    /// The rotation's grace period ends past the calendar's end.
    #[error("the grace period is too long")]
    InvalidGrace,
    /// A time range is empty, reversed or too long; the message says which.
    #[error("invalid time range: {0}")]
    InvalidRange(&'static str),
    /// An authority rule refused the operation (403 `permission_denied`).
    #[error("permission denied: {0}")]
    PermissionDenied(#[from] Denied),
    /// No key with this id belongs to this owner.
    #[error("no such key")]
    NotFound,
    /// The key is revoked, expired or already rotated, or it changed while the
    /// operation ran, so the operation does not apply to it (409).
    #[error("the key is revoked, expired or already rotated")]
    Conflict,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ManageError {
    /// The HTTP status for this error: 400 for invalid input, 403 for an authority
    /// rule, 404, 409 for a key in the wrong state or a lost race, 503 while the store
    /// is unavailable, and 500 for a store whose data is corrupt.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidName(_)
            | Self::UnknownScope(_)
            | Self::InvalidEnvironment(_)
            | Self::ExpiryInPast
            | Self::InvalidGrace
            | Self::InvalidRange(_) => StatusCode::BAD_REQUEST,
            Self::PermissionDenied(_) => StatusCode::FORBIDDEN,
            Self::NotFound | Self::Store(StoreError::NotFound) => StatusCode::NOT_FOUND,
            Self::Conflict | Self::Store(StoreError::Conflict) => StatusCode::CONFLICT,
            Self::Store(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable, machine-readable code: `invalid_request`, `permission_denied`,
    /// `not_found`, `conflict`, `service_unavailable` or `internal_error`.
    pub fn code(&self) -> &'static str {
        match self.status() {
            StatusCode::BAD_REQUEST => "invalid_request",
            StatusCode::FORBIDDEN => "permission_denied",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::SERVICE_UNAVAILABLE => "service_unavailable",
            _ => "internal_error",
        }
    }

    /// The message for the client, capitalized: this error's own words for the
    /// client's mistakes, a fixed sentence for the store's failures (whose details
    /// belong in the server's log, not in a response).
    pub fn client_message(&self) -> String {
        let message = match self {
            Self::Store(StoreError::Unavailable(_)) => {
                return "The key store is unavailable; retry later".to_owned()
            }
            Self::Store(StoreError::Corrupt(_)) => return "Internal error".to_owned(),
            Self::PermissionDenied(denied) => denied.to_string(),
            other => other.to_string(),
        };
        let mut chars = message.chars();
        chars.next().map_or_else(String::new, |first| {
            first.to_uppercase().chain(chars).collect()
        })
    }
}

/// `{"error":{"code":…,"message":…}}` (the Performance Blocks envelope) with
/// [`ManageError::status`], and `Retry-After: 5` on a 503, so a key-management handler
/// can return `Result<_, ManageError>`.
///
/// ```
/// use axum::response::IntoResponse;
/// use tower_api_key::manage::{Denied, ManageError};
///
/// let response = ManageError::PermissionDenied(Denied::GrantNotHeld("employees:write".into()))
///     .into_response();
/// assert_eq!(response.status(), 403);
/// ```
impl ManageError {
    /// The refusal this error is, for a responder: a store outage is
    /// [`RejectionKind::StoreUnavailable`] (503 with `Retry-After`), everything else
    /// [`RejectionKind::KeyManagement`] with this error's status, code and client
    /// message. [`ApiKeyAuth::respond`](crate::auth::ApiKeyAuth::respond) renders it in
    /// the application's style.
    pub fn rejection(&self) -> Rejection {
        match self {
            Self::Store(StoreError::Unavailable(_)) => {
                Rejection::new(RejectionKind::StoreUnavailable)
            }
            other => Rejection::new(RejectionKind::KeyManagement {
                status: other.status(),
                code: other.code(),
                message: other.client_message(),
            }),
        }
    }
}

impl IntoResponse for ManageError {
    fn into_response(self) -> Response {
        if let Self::Store(error) = &self {
            tracing::warn!(target: "tower_api_key", %error, "key management failed in the store");
        }
        let body = serde_json::json!({
            "error": { "code": self.code(), "message": self.client_message() }
        });
        let json = http::HeaderValue::from_static("application/json");
        let mut response = (
            self.status(),
            [(http::header::CONTENT_TYPE, json)],
            body.to_string(),
        )
            .into_response();
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_status_a_code_and_a_safe_message() {
        let cases = [
            (
                ManageError::InvalidName("the name is empty"),
                400,
                "invalid_request",
            ),
            (ManageError::InvalidGrace, 400, "invalid_request"),
            (
                ManageError::PermissionDenied(Denied::GrantNotHeld("a:write".into())),
                403,
                "permission_denied",
            ),
            (Denied::Superseded.into(), 403, "permission_denied"),
            (
                Denied::Outlives(OffsetDateTime::UNIX_EPOCH).into(),
                403,
                "permission_denied",
            ),
            (Denied::ActorChanged.into(), 403, "permission_denied"),
            (ManageError::NotFound, 404, "not_found"),
            (ManageError::Conflict, 409, "conflict"),
            (
                ManageError::Store(StoreError::unavailable(std::io::Error::other(
                    "connection to 10.0.0.7 refused",
                ))),
                503,
                "service_unavailable",
            ),
            (
                ManageError::Store(StoreError::Corrupt("row 7 digest".into())),
                500,
                "internal_error",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!((error.status().as_u16(), error.code()), (status, code));
            let message = error.client_message();
            assert!(message.starts_with(char::is_uppercase), "{message}");
            assert!(!message.contains("10.0.0.7") && !message.contains("row 7"));
        }
        assert_eq!(
            ManageError::PermissionDenied(Denied::Environment {
                acting: Some(Environment::test()),
                target: Some(Environment::live()),
            })
            .client_message(),
            "A test key can only act on test keys"
        );
        // The acting key's expiry, to the microsecond, in RFC 3339.
        let limit = time::macros::datetime!(2026-03-01 09:32:00.123456 UTC);
        assert_eq!(
            ManageError::from(Denied::Outlives(limit)).client_message(),
            "The new key would outlive the acting key (which expires \
             2026-03-01T09:32:00.123456Z)"
        );
    }

    #[tokio::test]
    async fn the_response_is_the_envelope() {
        let response = ManageError::Conflict.into_response();
        assert_eq!(response.status(), 409);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "conflict");
        let unavailable =
            ManageError::Store(StoreError::unavailable(std::io::Error::other("down")))
                .into_response();
        assert_eq!(unavailable.headers()["retry-after"], "5");
    }
}
