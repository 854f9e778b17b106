//! Key management (Settings → API as an API) and the audit log.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tower_api_key::audit::AuditQuery;
use tower_api_key::key::KeyId;
use tower_api_key::manage::{Actor, CreatedKey, Expiry, ManageError, NewKey};
use tower_api_key::{KeyRecord, Principal};
use utoipa::ToSchema;

use super::errors::{ApiError, ApiJson};
use super::AppState;

/// The crate's own status, code and message for each refusal.
impl From<ManageError> for ApiError {
    fn from(error: ManageError) -> Self {
        Self::new(error.status(), error.code(), error.client_message())
    }
}

fn rfc3339(t: Option<OffsetDateTime>) -> Value {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .map_or(Value::Null, Value::String)
}

fn summary(record: &KeyRecord) -> Value {
    json!({
        "id": record.id,
        "name": record.name,
        "prefix": record.prefix,
        "environment": record.environment,
        "scopes": record.scopes,
        "created_at": rfc3339(Some(record.created_at)),
        "expires_at": rfc3339(record.expires_at),
        "last_used_at": rfc3339(record.last_used_at),
        "created_by": record.created_by,
        "revoked_at": rfc3339(record.revoked_at),
        "superseded_by": record.rotation.map(|r| r.superseded_by),
    })
}

fn created(created: &CreatedKey) -> (StatusCode, Json<Value>) {
    let r = &created.record;
    (
        StatusCode::CREATED,
        Json(json!({
            "id": r.id,
            "name": r.name,
            "prefix": r.prefix,
            "environment": r.environment,
            "scopes": r.scopes,
            "created_at": rfc3339(Some(r.created_at)),
            "expires_at": rfc3339(r.expires_at),
            "key": created.key.expose_secret(),
        })),
    )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Not blank, at most 100 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    name: String,
    /// `live` or `test`; the caller's own environment when absent.
    #[serde(default)]
    #[schema(pattern = "^(live|test)$")]
    environment: Option<String>,
    /// Scopes the caller holds itself.
    #[serde(default)]
    #[schema(value_type = Vec<super::openapi::Scope>)]
    scopes: Vec<String>,
    /// When the key stops working: any time in the future (RFC 3339), and no later
    /// than the calling key's own expiry if it has one (403 otherwise, and also when
    /// this is absent: no key outlives its maker). The schema admits the years 2100 to
    /// 2999 only, which are always in the future: a past time is refused with 400,
    /// which no schema can express.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(
        value_type = Option<String>,
        format = DateTime,
        pattern = r"^2[1-9][0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$"
    )]
    expires_at: Option<OffsetDateTime>,
}

/// Creates a key (Settings → API as an API). The full key is in the answer, once.
#[utoipa::path(post, path = "/v1/api_keys", tag = "api_keys",
    request_body = CreateKey,
    responses(
        (status = 201, description = "Created: `key` is shown this once", body = super::openapi::CreatedApiKey),
        (status = 400, description = "The body or a parameter is invalid", body = super::openapi::ErrorBody),
        (status = 403, description = "A key-management authority rule refused it (`permission_denied`): a scope the caller does not hold, another environment, an expiry later than the caller's own (or none while the caller expires), or a caller replaced by a rotation", body = super::openapi::ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = super::openapi::ErrorBody)
    ))]
pub async fn create_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<CreateKey>,
) -> Result<impl IntoResponse, ApiError> {
    // The caller's own environment unless another is named; whether it may name
    // another is the manager's authority rule, not this handler's.
    let environment = match request.environment {
        Some(environment) => environment,
        None => principal
            .environment()
            .map_or_else(|| "live".to_owned(), |e| e.as_str().to_owned()),
    };
    if environment != "live" && environment != "test" {
        return Err(ApiError::invalid(
            "environment must be \"live\" or \"test\"",
        ));
    }
    let mut new = NewKey::new(request.name, principal.owner().clone())
        .with_environment(environment)
        .with_scopes(request.scopes);
    if let Some(at) = request.expires_at {
        new = new.with_expiry(Expiry::At(at));
    }
    let made = state.manager.create(new, Actor::Key(&principal)).await?;
    Ok(created(&made))
}

/// The keys of the caller's organization.
#[utoipa::path(get, path = "/v1/api_keys", tag = "api_keys",
    responses(
        (status = 200, description = "The keys, without their secrets", body = super::openapi::ApiKeyList),
        (status = 403, description = "A key-management authority rule refused it (`permission_denied`): the caller was replaced by a rotation", body = super::openapi::ErrorBody)
    ))]
pub async fn list_keys(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let keys = state
        .manager
        .list(principal.owner(), Actor::Key(&principal))
        .await?;
    Ok(Json(
        json!({ "items": keys.iter().map(summary).collect::<Vec<_>>() }),
    ))
}

/// A malformed id names no key: the same 404 as a missing one, or another
/// organization's or environment's.
fn parse_id(id: &str) -> Result<KeyId, ApiError> {
    KeyId::new(id).map_err(|_| ManageError::NotFound.into())
}

/// Revokes a key: the next request with it is refused.
#[utoipa::path(delete, path = "/v1/api_keys/{id}", tag = "api_keys",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "A key-management authority rule refused it (`permission_denied`): the key holds a scope the caller does not, or the caller was replaced by a rotation", body = super::openapi::ErrorBody),
        (status = 404, description = "No such key: a missing id, and another organization's or another environment's key, get the same answer (`not_found`, \"No such key\")", body = super::openapi::ErrorBody),
        (status = 409, description = "The key is revoked or already rotated", body = super::openapi::ErrorBody)
    ))]
pub async fn revoke_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    state
        .manager
        .revoke(principal.owner(), &id, Actor::Key(&principal))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One key.
#[utoipa::path(get, path = "/v1/api_keys/{id}", tag = "api_keys",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "The key, without its secret", body = super::openapi::ApiKey),
        (status = 403, description = "A key-management authority rule refused it (`permission_denied`): the caller was replaced by a rotation", body = super::openapi::ErrorBody),
        (status = 404, description = "No such key: a missing id, and another organization's or another environment's key, get the same answer (`not_found`, \"No such key\"); or the key was revoked (`DELETE`): the list and the audit log still show it", body = super::openapi::ErrorBody)
    ))]
pub async fn get_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let record = state
        .manager
        .get(principal.owner(), &id, Actor::Key(&principal))
        .await?;
    // DELETE revoked it: the resource is no longer found (the list and the audit log
    // keep the record, with its `revoked_at`).
    if record.revoked_at.is_some() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "The key was revoked",
        ));
    }
    Ok(Json(summary(&record)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    /// The key's new scopes: ones the caller holds itself.
    #[schema(value_type = Vec<super::openapi::Scope>)]
    scopes: Vec<String>,
}

/// Replaces a key's scopes ("Update the key's scopes" in Settings → API).
#[utoipa::path(patch, path = "/v1/api_keys/{id}", tag = "api_keys",
    params(("id" = String, Path, description = "The key's id")),
    request_body = UpdateKey,
    responses(
        (status = 200, description = "The updated key", body = super::openapi::ApiKey),
        (status = 400, description = "The body or a parameter is invalid", body = super::openapi::ErrorBody),
        (status = 403, description = "A key-management authority rule refused it (`permission_denied`): the key holds, or would be given, a scope the caller does not hold, or the caller was replaced by a rotation", body = super::openapi::ErrorBody),
        (status = 404, description = "No such key: a missing id, and another organization's or another environment's key, get the same answer (`not_found`, \"No such key\")", body = super::openapi::ErrorBody),
        (status = 409, description = "The key is revoked or already rotated", body = super::openapi::ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = super::openapi::ErrorBody)
    ))]
pub async fn update_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<UpdateKey>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let record = state
        .manager
        .set_scopes(
            principal.owner(),
            &id,
            request.scopes,
            Actor::Key(&principal),
        )
        .await?;
    Ok(Json(summary(&record)))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// How long the old key keeps working (at most a year; 0 by default).
    #[serde(default, deserialize_with = "super::openapi::whole_number")]
    #[schema(minimum = 0, maximum = 31_536_000)]
    grace_seconds: u64,
}

/// Replaces a key with a new one of the same scopes; the old one works on for the
/// grace period.
#[utoipa::path(post, path = "/v1/api_keys/{id}/rotate", tag = "api_keys",
    params(("id" = String, Path, description = "The key's id")),
    request_body = Option<Rotate>,
    responses(
        (status = 201, description = "The new key: `key` is shown this once", body = super::openapi::CreatedApiKey),
        (status = 400, description = "The body or a parameter is invalid", body = super::openapi::ErrorBody),
        (status = 403, description = "A key-management authority rule refused it (`permission_denied`): the key holds a scope the caller does not, or expires later than the caller (the new key would outlive it), or the caller was replaced by a rotation", body = super::openapi::ErrorBody),
        (status = 404, description = "No such key: a missing id, and another organization's or another environment's key, get the same answer (`not_found`, \"No such key\")", body = super::openapi::ErrorBody),
        (status = 409, description = "The key is revoked or already rotated", body = super::openapi::ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = super::openapi::ErrorBody)
    ))]
pub async fn rotate_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    request: axum::extract::Request,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id)?;
    // The body is optional: no body means a grace of 0.
    let has_body = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .is_some_and(|len| len != "0")
        || request
            .headers()
            .contains_key(axum::http::header::TRANSFER_ENCODING);
    // `null` is no options too, as the schema's optional body says.
    let grace = if has_body {
        let ApiJson(rotate) =
            <ApiJson<Option<Rotate>> as axum::extract::FromRequest<()>>::from_request(request, &())
                .await?;
        rotate.map_or(0, |r| r.grace_seconds)
    } else {
        0
    };
    if grace > 365 * 86_400 {
        return Err(ApiError::invalid("grace_seconds must be at most one year"));
    }
    let made = state
        .manager
        .rotate(
            principal.owner(),
            &id,
            Duration::from_secs(grace),
            Actor::Key(&principal),
        )
        .await?;
    Ok(created(&made))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only the entries of this key.
    #[param(pattern = "^[A-Za-z0-9_-]{1,23}$")]
    api_key_id: Option<String>,
}

/// The organization's audit log: key lifecycle and state-changing requests.
#[utoipa::path(get, path = "/v1/audit_log", tag = "audit_log",
    params(AuditParams),
    responses(
        (status = 200, description = "Audit entries, newest first", body = super::openapi::AuditLog),
        (status = 400, description = "The body or a parameter is invalid", body = super::openapi::ErrorBody),
        (status = 403, description = "A key-management authority rule refused it (`permission_denied`): the caller was replaced by a rotation", body = super::openapi::ErrorBody)
    ))]
pub async fn audit_log(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<AuditParams>,
) -> Result<Json<Value>, ApiError> {
    let key = match query.api_key_id.as_deref() {
        Some(id) => {
            Some(KeyId::new(id).map_err(|_| ApiError::invalid("api_key_id is not a key id"))?)
        }
        None => None,
    };
    // Request entries are written behind: make sure this caller's are in.
    state.auditor.flush().await;
    let mut audit = AuditQuery::new(principal.owner().clone());
    if let Some(key) = key {
        audit = audit.for_key(key);
    }
    let items = state
        .manager
        .audit_log(audit, Actor::Key(&principal))
        .await?;
    Ok(Json(json!({ "items": items })))
}
