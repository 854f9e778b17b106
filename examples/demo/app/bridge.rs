//! Surface 2: the ProductBridge-style public API (002): every request is a POST whose
//! JSON body carries `api_key`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tower_api_key::Principal;

use super::data::{Data, Partition};
use super::errors::{ApiError, ApiJson};

#[derive(Debug, Deserialize)]
pub struct ListPosts {
    #[allow(dead_code)]
    api_key: String,
    #[serde(default)]
    limit: Option<u32>,
}

pub async fn list_posts(
    State(data): State<Arc<Data>>,
    principal: Principal,
    ApiJson(request): ApiJson<ListPosts>,
) -> Json<Value> {
    let limit = request.limit.unwrap_or(25).min(100) as usize;
    let items = data.posts.list(&Partition::of(&principal), limit);
    Json(json!({ "items": items, "has_next_page": false, "cursor": null }))
}

#[derive(Debug, Deserialize)]
pub struct CreatePost {
    #[allow(dead_code)]
    api_key: String,
    title: String,
}

pub async fn create_post(
    State(data): State<Arc<Data>>,
    principal: Principal,
    ApiJson(request): ApiJson<CreatePost>,
) -> Result<(StatusCode, Json<Map<String, Value>>), ApiError> {
    if request.title.trim().is_empty() {
        return Err(ApiError::invalid("title must not be empty"));
    }
    let mut object = Map::new();
    object.insert("title".into(), request.title.into());
    let stored = data.posts.insert(&Partition::of(&principal), object);
    Ok((StatusCode::CREATED, Json(stored)))
}
