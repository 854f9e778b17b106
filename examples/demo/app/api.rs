//! Surface 1: the Performance Blocks-style API (000).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tower_api_key::Principal;
use utoipa::ToSchema;

use super::data::{Data, Partition};
use super::errors::{ApiError, ApiJson};

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `/healthz` behind a key: what the end-to-end benchmark compares it with.
#[utoipa::path(get, path = "/v1/ping", tag = "performance_blocks",
    responses(
        (status = 200, description = "The server is up", body = super::openapi::Health)
    ))]
pub async fn ping() -> Json<Value> {
    healthz().await
}

/// The calling key.
#[utoipa::path(get, path = "/v1/session", tag = "performance_blocks",
    responses(
        (status = 200, description = "The key that made the request", body = super::openapi::Session)
    ))]
pub async fn session(principal: Principal) -> Json<Value> {
    Json(json!({
        "key_id": principal.key_id(),
        "name": principal.name(),
        "organization_id": principal.owner().id(),
        "environment": principal.environment(),
        "scopes": principal.scopes(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewObservation {
    #[schema(min_length = 1, pattern = r"\S")]
    employee_id: String,
    #[serde(rename = "type")]
    #[schema(min_length = 1, pattern = r"\S")]
    kind: String,
    #[schema(min_length = 1, pattern = r"\S")]
    observation: String,
    #[schema(format = Date)]
    observation_date: String,
}

/// The observations of the key's organization and environment.
#[utoipa::path(get, path = "/v1/observations", tag = "performance_blocks",
    responses(
        (status = 200, description = "The observations", body = super::openapi::ObservationList)
    ))]
pub async fn list_observations(State(data): State<Arc<Data>>, principal: Principal) -> Json<Value> {
    Json(json!({ "items": data.observations.list(&Partition::of(&principal), usize::MAX) }))
}

/// Records an observation.
#[utoipa::path(post, path = "/v1/observations", tag = "performance_blocks",
    request_body = NewObservation,
    responses(
        (status = 201, description = "Created", body = super::openapi::Observation),
        (status = 400, description = "The body or a parameter is invalid"),
        (status = 415, description = "The body is not `application/json`")
    ))]
pub async fn create_observation(
    State(data): State<Arc<Data>>,
    principal: Principal,
    ApiJson(new): ApiJson<NewObservation>,
) -> Result<(StatusCode, Json<Map<String, Value>>), ApiError> {
    for (field, value) in [
        ("employee_id", &new.employee_id),
        ("type", &new.kind),
        ("observation", &new.observation),
    ] {
        if value.trim().is_empty() {
            return Err(ApiError::invalid(format!("{field} must not be empty")));
        }
    }
    let date = time::macros::format_description!("[year]-[month]-[day]");
    if time::Date::parse(&new.observation_date, &date).is_err() {
        return Err(ApiError::invalid(
            "observation_date must be a date like 2026-04-12",
        ));
    }
    let mut object = Map::new();
    object.insert("employee_id".into(), new.employee_id.into());
    object.insert("type".into(), new.kind.into());
    object.insert("observation".into(), new.observation.into());
    object.insert("observation_date".into(), new.observation_date.into());
    let stored = data.observations.insert(&Partition::of(&principal), object);
    Ok((StatusCode::CREATED, Json(stored)))
}

/// One observation.
#[utoipa::path(get, path = "/v1/observations/{id}", tag = "performance_blocks",
    params(("id" = String, Path, description = "The observation's id")),
    responses(
        (status = 200, description = "The observation", body = super::openapi::Observation),
        (status = 404, description = "No such object (or another organization's, or another environment's)")
    ))]
pub async fn get_observation(
    State(data): State<Arc<Data>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Map<String, Value>>, ApiError> {
    data.observations
        .get(&Partition::of(&principal), &id)
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEmployee {
    #[schema(min_length = 1, pattern = r"\S")]
    name: String,
    /// Any text with an `@`.
    #[schema(pattern = "@")]
    email: String,
}

/// The employees of the key's organization and environment.
#[utoipa::path(get, path = "/v1/employees", tag = "performance_blocks",
    responses(
        (status = 200, description = "The employees", body = super::openapi::EmployeeList)
    ))]
pub async fn list_employees(State(data): State<Arc<Data>>, principal: Principal) -> Json<Value> {
    Json(json!({ "items": data.employees.list(&Partition::of(&principal), usize::MAX) }))
}

/// Adds an employee.
#[utoipa::path(post, path = "/v1/employees", tag = "performance_blocks",
    request_body = NewEmployee,
    responses(
        (status = 201, description = "Created", body = super::openapi::Employee),
        (status = 400, description = "The body or a parameter is invalid"),
        (status = 415, description = "The body is not `application/json`")
    ))]
pub async fn create_employee(
    State(data): State<Arc<Data>>,
    principal: Principal,
    ApiJson(new): ApiJson<NewEmployee>,
) -> Result<(StatusCode, Json<Map<String, Value>>), ApiError> {
    if new.name.trim().is_empty() {
        return Err(ApiError::invalid("name must not be empty"));
    }
    if !new.email.contains('@') {
        return Err(ApiError::invalid("email must be an email address"));
    }
    let mut object = Map::new();
    object.insert("name".into(), new.name.into());
    object.insert("email".into(), new.email.into());
    let stored = data.employees.insert(&Partition::of(&principal), object);
    Ok((StatusCode::CREATED, Json(stored)))
}
