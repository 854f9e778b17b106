//! Surface 1: the Performance Blocks-style API (000).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tower_api_key::Principal;

use super::data::{Data, Partition};
use super::errors::{ApiError, ApiJson};

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn session(principal: Principal) -> Json<Value> {
    Json(json!({
        "key_id": principal.key_id(),
        "name": principal.name(),
        "organization_id": principal.owner().id(),
        "environment": principal.environment(),
        "scopes": principal.scopes(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewObservation {
    employee_id: String,
    #[serde(rename = "type")]
    kind: String,
    observation: String,
    observation_date: String,
}

pub async fn list_observations(State(data): State<Arc<Data>>, principal: Principal) -> Json<Value> {
    Json(json!({ "items": data.observations.list(&Partition::of(&principal), usize::MAX) }))
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEmployee {
    name: String,
    email: String,
}

pub async fn list_employees(State(data): State<Arc<Data>>, principal: Principal) -> Json<Value> {
    Json(json!({ "items": data.employees.list(&Partition::of(&principal), usize::MAX) }))
}

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
