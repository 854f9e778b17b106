//! The demo's OpenAPI document, served at `GET /openapi.json`.
//!
//! Each handler carries `#[utoipa::path]` (its path, method, request and response
//! schemas); [`guarded!`] hands it to `Guards::route`, which builds the route's guard
//! and documents the same requirement on the same operation (security requirements,
//! key sources, refusals) with `tower_api_key::openapi`. The response bodies the
//! handlers build with `json!` are described by the types below; Schemathesis checks
//! every response against them (`.ci/schemathesis.sh`). The handlers' own refusals
//! (400, 404, 415) answer in their surface's envelope, so their responses are the
//! surface's shared ones: each operation's 4xx and 5xx are `$ref`s to one set of
//! components per surface, with one error schema each (`PerformanceBlocksError`,
//! `ProductBridgeError`).

use axum::routing::MethodFilter;
use serde::Serialize;
use utoipa::openapi::{InfoBuilder, OpenApi, Paths};
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// The calling key, as the layer verified it.
#[derive(Serialize, ToSchema)]
pub struct Session {
    pub key_id: String,
    pub name: String,
    pub organization_id: String,
    pub environment: Option<String>,
    pub scopes: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Observation {
    pub id: String,
    pub employee_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub observation: String,
    pub observation_date: String,
}

#[derive(Serialize, ToSchema)]
pub struct ObservationList {
    pub items: Vec<Observation>,
}

#[derive(Serialize, ToSchema)]
pub struct Employee {
    pub id: String,
    pub name: String,
    pub email: String,
}

#[derive(Serialize, ToSchema)]
pub struct EmployeeList {
    pub items: Vec<Employee>,
}

#[derive(Serialize, ToSchema)]
pub struct Post {
    pub id: String,
    pub title: String,
}

#[derive(Serialize, ToSchema)]
pub struct PostList {
    pub items: Vec<Post>,
    pub has_next_page: bool,
    pub cursor: Option<String>,
}

/// A whole number as JSON Schema counts it: `12` and `12.0` alike (serde's integers
/// refuse `12.0`, which every schema with `type: integer` admits).
pub fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    use serde::de::Error;
    let number = <serde_json::Number as serde::Deserialize>::deserialize(deserializer)?;
    if let Some(n) = number.as_u64() {
        return Ok(n);
    }
    match number.as_f64() {
        // Exactly representable: a whole f64 below 2^53.
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 9_007_199_254_740_992.0 => Ok(f as u64),
        _ => Err(D::Error::custom(format!(
            "expected a whole number of at least 0, found {number}"
        ))),
    }
}

/// [`whole_number`] for an optional field.
pub fn optional_whole_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Whole(#[serde(deserialize_with = "whole_number")] u64);
    Ok(<Option<Whole> as serde::Deserialize>::deserialize(deserializer)?.map(|Whole(n)| n))
}

/// The method of the one operation in `paths` (what `routes!` made from one handler).
pub fn method_of(paths: &Paths) -> Result<MethodFilter, String> {
    let mut found = Vec::new();
    for item in paths.paths.values() {
        for (operation, filter) in [
            (&item.get, MethodFilter::GET),
            (&item.post, MethodFilter::POST),
            (&item.put, MethodFilter::PUT),
            (&item.patch, MethodFilter::PATCH),
            (&item.delete, MethodFilter::DELETE),
        ] {
            if operation.is_some() {
                found.push(filter);
            }
        }
    }
    match found.as_slice() {
        [one] => Ok(*one),
        _ => Err(format!(
            "a guarded route needs exactly one documented operation, found {}",
            found.len()
        )),
    }
}

/// The finished document, as JSON: title, and the links Schemathesis follows in its
/// stateful phase (a created key → get, update, rotate, revoke; a rotated key → the
/// new key's; a created observation → get).
///
/// The links are written as JSON because utoipa 5's `Link` serializes its
/// `operation_id` field under that name instead of OpenAPI's `operationId`.
pub fn finish(mut openapi: OpenApi) -> serde_json::Value {
    openapi.info = InfoBuilder::new()
        .title("tower-api-key demo")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Two surfaces on one key store: a Performance Blocks-style API (`/v1`, keys \
             as `Authorization: Bearer` or `X-API-Key`) and a ProductBridge-style API \
             (`/api/external/v1`, the key in the JSON body's `api_key`). The security \
             of every operation is generated from the guard that enforces it.",
        ))
        .build();
    let mut json = serde_json::to_value(&openapi).unwrap_or_default();
    // Any time in the future is a valid expiry, which no schema can say: the demo's
    // document admits the years 2100 to 2999 only, always in the future, so that
    // Schemathesis' valid expiries are valid (a past one is a documented 400).
    if let Some(expires_at) =
        json.pointer_mut("/components/schemas/CreateApiKey/properties/expires_at")
    {
        expires_at["pattern"] = serde_json::json!(
            r"^2[1-9][0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$"
        );
    }
    let key_links = [
        ("GetKey", "get_key"),
        ("UpdateKey", "update_key"),
        ("RotateKey", "rotate_key"),
        ("RevokeKey", "revoke_key"),
    ];
    let observation_links = [("GetObservation", "get_observation")];
    for (path, targets) in [
        ("/v1/api_keys", &key_links[..]),
        ("/v1/api_keys/{id}/rotate", &key_links[..]),
        ("/v1/observations", &observation_links[..]),
    ] {
        let links: serde_json::Map<String, serde_json::Value> = targets
            .iter()
            .map(|(name, operation_id)| {
                (
                    (*name).to_owned(),
                    serde_json::json!({
                        "operationId": operation_id,
                        "parameters": { "id": "$response.body#/id" },
                    }),
                )
            })
            .collect();
        if let Some(created) = json
            .pointer_mut(&format!(
                "/paths/{}/post/responses/201",
                path.replace('/', "~1")
            ))
            .and_then(serde_json::Value::as_object_mut)
        {
            created.insert("links".to_owned(), serde_json::Value::Object(links));
        }
    }
    json
}
