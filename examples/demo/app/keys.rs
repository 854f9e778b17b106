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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

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

fn parse_id(id: &str) -> Result<KeyId, ApiError> {
    KeyId::new(id).map_err(|_| ApiError::not_found())
}

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
    Ok(Json(summary(&record)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    scopes: Vec<String>,
}

/// Replaces a key's scopes ("Update the key's scopes" in Settings → API).
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    #[serde(default)]
    grace_seconds: u64,
}

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
    let grace = if has_body {
        let ApiJson(rotate) =
            <ApiJson<Rotate> as axum::extract::FromRequest<()>>::from_request(request, &()).await?;
        rotate.grace_seconds
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

#[derive(Debug, Deserialize)]
pub struct AuditParams {
    api_key_id: Option<String>,
}

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
