//! Surface 2: the ProductBridge-style public API (002): every request is a POST whose
//! JSON body carries `api_key`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tower_api_key::Principal;
use utoipa::ToSchema;

use super::data::{Data, Partition};
use super::errors::{ApiError, ApiJson};

#[derive(Debug, Deserialize, ToSchema)]
pub struct ListPosts {
    #[allow(dead_code)]
    api_key: String,
    /// At most 100; 25 by default.
    #[serde(default, deserialize_with = "super::openapi::optional_whole_number")]
    #[schema(value_type = Option<u32>, minimum = 0)]
    limit: Option<u64>,
}

/// The feedback posts (the key is the body's `api_key`).
#[utoipa::path(post, path = "/api/external/v1/feedback-posts/list", tag = "product_bridge",
    request_body = ListPosts,
    responses(
        (status = 200, description = "The posts", body = super::openapi::PostList),
        (status = 400, description = "The body or a parameter is invalid"),
        (status = 415, description = "The body is not `application/json`")
    ))]
pub async fn list_posts(
    State(data): State<Arc<Data>>,
    principal: Principal,
    ApiJson(request): ApiJson<ListPosts>,
) -> Json<Value> {
    let limit = usize::try_from(request.limit.unwrap_or(25).min(100)).unwrap_or(100);
    let items = data.posts.list(&Partition::of(&principal), limit);
    Json(json!({ "items": items, "has_next_page": false, "cursor": null }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreatePost {
    #[allow(dead_code)]
    api_key: String,
    #[schema(min_length = 1, pattern = r"\S")]
    title: String,
}

/// Creates a feedback post.
#[utoipa::path(post, path = "/api/external/v1/feedback-posts/create", tag = "product_bridge",
    request_body = CreatePost,
    responses(
        (status = 201, description = "Created", body = super::openapi::Post),
        (status = 400, description = "The body or a parameter is invalid"),
        (status = 415, description = "The body is not `application/json`")
    ))]
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
