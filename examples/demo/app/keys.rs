//! Key management (Settings → API as an API) and the audit log.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tower_api_key::key::KeyId;
use tower_api_key::manage::{Actor, CreatedKey, Expiry, ManageError, NewKey};
use tower_api_key::{KeyRecord, Principal};

use super::errors::{ApiError, ApiJson};
use super::AppState;

impl From<ManageError> for ApiError {
    fn from(error: ManageError) -> Self {
        match error {
            ManageError::InvalidName(_)
            | ManageError::UnknownScope(_)
            | ManageError::UnknownEnvironment(_)
            | ManageError::ExpiryInPast => Self::invalid(error.to_string()),
            ManageError::ScopeEscalation(scope) => Self::forbidden(format!(
                "Cannot grant scope {scope}: the calling key does not hold it"
            )),
            ManageError::NotFound => Self::not_found(),
            ManageError::Conflict => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "The key is revoked or already rotated",
            ),
            _ => Self::unavailable(),
        }
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
    let environment = request.environment.unwrap_or_else(|| "live".to_owned());
    if environment != "live" && environment != "test" {
        return Err(ApiError::invalid(
            "environment must be \"live\" or \"test\"",
        ));
    }
    // A test key may only create test keys; a live key may create both.
    if principal
        .environment()
        .is_some_and(|e| e.as_str() == "test")
        && environment != "test"
    {
        return Err(ApiError::forbidden("A test key can only create test keys"));
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
    let keys = state.manager.list(principal.owner()).await?;
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
pub struct AuditQuery {
    api_key_id: Option<String>,
}

pub async fn audit_log(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let key = match query.api_key_id.as_deref() {
        Some(id) => {
            Some(KeyId::new(id).map_err(|_| ApiError::invalid("api_key_id is not a key id"))?)
        }
        None => None,
    };
    let items = state.audit.query(principal.owner(), key.as_ref()).await?;
    Ok(Json(json!({ "items": items })))
}
