//! The demo server over real HTTP: every route and every documented error.
//!
//! The demo's application module is compiled in here, served on 127.0.0.1:0 with a
//! manual clock (rotation grace and rate windows move without sleeping), and driven
//! with reqwest.

#[allow(clippy::all, unreachable_pub)]
#[path = "../examples/demo/app/mod.rs"]
mod app;
mod support;

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use tower_api_key::clock::ManualClock;
use tower_api_key::store::MemoryStore;

use app::{Demo, DemoStore, Settings};

const GENERIC_401: &str = "API key is missing or invalid";

struct Server {
    base: String,
    clock: ManualClock,
    acme: String,
    globex: String,
    demo: Demo,
    client: Client,
}

async fn start(rate_limit: &str) -> Server {
    start_on(DemoStore::Memory(MemoryStore::new()), rate_limit).await
}

async fn start_on(store: DemoStore, rate_limit: &str) -> Server {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let settings = Settings {
        rate_limit: (rate_limit != "off").then(|| rate_limit.parse().unwrap()),
        clock: Arc::new(clock.clone()),
        ..Settings::default()
    };
    let demo = app::build(store, settings).unwrap();
    let keys = demo.bootstrap().await.unwrap();
    let key = |org: &str| keys.iter().find(|(o, _)| o == org).unwrap().1.clone();
    serve(demo, clock, key("acme"), key("globex")).await
}

/// Serves `demo` on a free port; `acme` and `globex` are its admin keys.
async fn serve(demo: Demo, clock: ManualClock, acme: String, globex: String) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = demo.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Server {
        base,
        clock,
        acme,
        globex,
        demo,
        client: Client::new(),
    }
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("not JSON: {}", self.text))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    fn code(&self) -> Value {
        self.json()["error"]["code"].clone()
    }
}

impl Server {
    async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = req.send().await.unwrap();
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str, key: Option<&str>) -> Reply {
        self.send(Method::GET, path, key, None).await
    }

    async fn post(&self, path: &str, key: Option<&str>, body: Value) -> Reply {
        self.send(Method::POST, path, key, Some(body)).await
    }

    async fn raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
        key: &str,
    ) -> Reply {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let response = req.send().await.unwrap();
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    /// Creates a key with the acme admin key (or `with`), returning the JSON reply.
    async fn create_key(&self, with: &str, body: Value) -> Reply {
        self.post("/v1/api_keys", Some(with), body).await
    }

    async fn new_key(&self, scopes: &[&str], environment: &str) -> (String, String) {
        let reply = self
            .create_key(
                &self.acme,
                json!({"name": "k", "scopes": scopes, "environment": environment}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let v = reply.json();
        (
            v["key"].as_str().unwrap().to_owned(),
            v["id"].as_str().unwrap().to_owned(),
        )
    }
}

fn observation() -> Value {
    json!({"employee_id": "emp_01", "type": "strength", "observation": "Led the retro.", "observation_date": "2026-04-12"})
}

#[tokio::test]
async fn healthz_ping_and_request_ids() {
    let s = start("100/s").await;
    let health = s.get("/healthz", None).await;
    assert_eq!(
        (health.status, health.json()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    assert!(health
        .header("x-request-id")
        .is_some_and(|id| !id.is_empty()));

    let ping = s.get("/v1/ping", Some(&s.acme)).await;
    assert_eq!(
        (ping.status, ping.text.as_str()),
        (StatusCode::OK, health.text.as_str())
    );

    let echoed = s
        .client
        .get(format!("{}/v1/ping", s.base))
        .header("x-request-id", "client-chosen-1")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(echoed.headers()["x-request-id"], "client-chosen-1");
    let body: Value = echoed.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], "client-chosen-1");
}

#[tokio::test]
async fn every_401_is_the_same_and_carries_a_challenge() {
    let s = start("100/s").await;
    let missing = s.get("/v1/session", None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.code(), "authentication_required");
    assert_eq!(missing.json()["error"]["message"], GENERIC_401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some(r#"Bearer realm="Performance Blocks""#)
    );
    for bad in [
        "pb_live_nope",
        "pb_test_0000000000000000000000000000000000000",
    ] {
        let reply = s.get("/v1/session", Some(bad)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.json()["error"]["message"], GENERIC_401);
        assert_eq!(
            reply.header("www-authenticate"),
            Some(r#"Bearer realm="Performance Blocks", error="invalid_token""#)
        );
    }
    // X-API-Key works too; `Token` does not.
    let by_header = s
        .client
        .get(format!("{}/v1/session", s.base))
        .header("x-api-key", &s.acme)
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), StatusCode::OK);
    let token = s
        .client
        .get(format!("{}/v1/session", s.base))
        .header("authorization", format!("Token {}", s.acme))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn session_describes_the_key() {
    let s = start("100/s").await;
    let reply = s.get("/v1/session", Some(&s.acme)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let v = reply.json();
    assert_eq!(v["organization_id"], "acme");
    assert_eq!(v["environment"], "live");
    assert_eq!(v["name"], "acme admin");
    assert_eq!(v["scopes"].as_array().unwrap().len(), app::SCOPES.len());
    assert!(s
        .acme
        .starts_with(&format!("pb_live_{}", v["key_id"].as_str().unwrap())));
}

#[tokio::test]
async fn observations_are_partitioned_by_organization_and_environment() {
    let s = start("100/s").await;
    let created = s
        .post("/v1/observations", Some(&s.acme), observation())
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(created.json()["observation_date"], "2026-04-12");

    let list = s.get("/v1/observations", Some(&s.acme)).await;
    assert_eq!(list.json()["items"].as_array().unwrap().len(), 1);
    let one = s
        .get(&format!("/v1/observations/{id}"), Some(&s.acme))
        .await;
    assert_eq!(
        (one.status, one.json()["id"].clone()),
        (StatusCode::OK, json!(id))
    );

    let other_org = s
        .get(&format!("/v1/observations/{id}"), Some(&s.globex))
        .await;
    assert_eq!(
        (other_org.status, other_org.code()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );
    assert_eq!(
        s.get("/v1/observations", Some(&s.globex)).await.json()["items"],
        json!([])
    );

    let (test_key, _) = s.new_key(&["observations:write"], "test").await;
    let from_test = s
        .get(&format!("/v1/observations/{id}"), Some(&test_key))
        .await;
    assert_eq!(from_test.status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.get("/v1/observations", Some(&test_key)).await.json()["items"],
        json!([])
    );
    let test_obs = s
        .post("/v1/observations", Some(&test_key), observation())
        .await;
    assert_eq!(test_obs.status, StatusCode::CREATED);
    let test_id = test_obs.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.get(&format!("/v1/observations/{test_id}"), Some(&s.acme))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn scopes_write_implies_read_and_403_names_the_scope() {
    let s = start("100/s").await;
    let (writer, _) = s.new_key(&["employees:write"], "live").await;
    let made = s
        .post(
            "/v1/employees",
            Some(&writer),
            json!({"name": "Ada", "email": "ada@example.com"}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    assert!(made.json()["id"].is_string());
    let listed = s.get("/v1/employees", Some(&writer)).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json()["items"][0]["name"], "Ada");

    let (reader, _) = s.new_key(&["observations:read"], "live").await;
    let denied = s
        .post("/v1/observations", Some(&reader), observation())
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.code(), "permission_denied");
    assert_eq!(
        denied.json()["error"]["message"],
        "Required scope: observations:write"
    );
    assert_eq!(
        denied.header("www-authenticate"),
        Some(
            r#"Bearer realm="Performance Blocks", error="insufficient_scope", scope="observations:write""#
        )
    );
    // Every key holds session:read.
    assert_eq!(
        s.get("/v1/session", Some(&reader)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.get("/v1/employees", Some(&reader)).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn axum_rejections_use_the_envelope() {
    let s = start("100/s").await;
    let not_json = s
        .raw(
            "/v1/observations",
            Some("application/json"),
            "{nope",
            &s.acme,
        )
        .await;
    assert_eq!(
        (not_json.status, not_json.code()),
        (StatusCode::BAD_REQUEST, json!("invalid_request"))
    );
    let wrong_shape = s
        .post("/v1/observations", Some(&s.acme), json!({"employee_id": 1}))
        .await;
    assert_eq!(
        (wrong_shape.status, wrong_shape.code()),
        (StatusCode::BAD_REQUEST, json!("invalid_request"))
    );
    let no_type = s
        .raw("/v1/observations", None, observation().to_string(), &s.acme)
        .await;
    assert_eq!(no_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(no_type.json()["error"]["code"].is_string());
    let wrong_type = s
        .raw(
            "/v1/observations",
            Some("text/plain"),
            observation().to_string(),
            &s.acme,
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let unknown = s.get("/v1/nowhere", Some(&s.acme)).await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );
    let wrong_method = s
        .send(Method::PUT, "/v1/observations", Some(&s.acme), None)
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(wrong_method.json()["error"]["code"].is_string());
}

#[tokio::test]
async fn creating_keys_validates_everything() {
    let s = start("100/s").await;
    let ok = s
        .create_key(&s.acme, json!({"name": "BI", "scopes": ["observations:read"], "expires_at": "2099-01-01T00:00:00Z"}))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let v = ok.json();
    for field in [
        "id",
        "name",
        "prefix",
        "environment",
        "scopes",
        "created_at",
        "expires_at",
        "key",
    ] {
        assert!(v.get(field).is_some(), "missing {field}");
    }
    assert_eq!(v["environment"], "live");
    assert_eq!(v["expires_at"], "2099-01-01T00:00:00Z");
    assert!(v["key"]
        .as_str()
        .unwrap()
        .starts_with(v["prefix"].as_str().unwrap()));

    for bad in [
        json!({"name": "x", "scopes": ["employees:delete"]}),
        json!({"name": "", "scopes": []}),
        json!({"name": "x", "scopes": [], "expires_at": "2000-01-01T00:00:00Z"}),
        json!({"name": "x", "scopes": [], "environment": "prod"}),
    ] {
        let reply = s.create_key(&s.acme, bad.clone()).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::BAD_REQUEST, json!("invalid_request")),
            "{bad}"
        );
    }
    // A scope the calling key lacks.
    let (limited, _) = s.new_key(&["api_keys:write"], "live").await;
    let escalation = s
        .create_key(
            &limited,
            json!({"name": "x", "scopes": ["employees:write"]}),
        )
        .await;
    assert_eq!(
        (escalation.status, escalation.code()),
        (StatusCode::FORBIDDEN, json!("permission_denied"))
    );
    // A test key may only create test keys.
    let (test_admin, _) = s
        .new_key(&["api_keys:write", "employees:read"], "test")
        .await;
    let live = s
        .create_key(
            &test_admin,
            json!({"name": "x", "scopes": ["employees:read"], "environment": "live"}),
        )
        .await;
    assert_eq!(
        (live.status, live.code()),
        (StatusCode::FORBIDDEN, json!("permission_denied"))
    );
    assert_eq!(
        live.json()["error"]["message"],
        "A test key can only act on test keys"
    );
    // Without an environment, a key creates keys of its own.
    let own = s
        .create_key(&test_admin, json!({"name": "x", "scopes": []}))
        .await;
    assert_eq!(own.status, StatusCode::CREATED);
    assert_eq!(own.json()["environment"], "test");
    let test = s
        .create_key(
            &test_admin,
            json!({"name": "x", "scopes": ["employees:read"], "environment": "test"}),
        )
        .await;
    assert_eq!(test.status, StatusCode::CREATED);
    assert!(test.json()["key"].as_str().unwrap().starts_with("pb_test_"));
}

#[tokio::test]
async fn listing_revoking_and_last_used() {
    let s = start("100/s").await;
    let (key, id) = s.new_key(&["observations:read"], "live").await;
    let list = s.get("/v1/api_keys", Some(&s.acme)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(!list.text.contains(&key[20..]), "a full key in the list");
    let entry = list.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    for field in [
        "id",
        "name",
        "prefix",
        "environment",
        "scopes",
        "created_at",
        "expires_at",
        "last_used_at",
        "created_by",
        "revoked_at",
    ] {
        assert!(entry.get(field).is_some(), "missing {field}");
    }
    assert_eq!(entry["last_used_at"], Value::Null);
    let globex_list = s.get("/v1/api_keys", Some(&s.globex)).await;
    assert!(
        !globex_list.text.contains(&id),
        "another organization's key is listed"
    );

    assert_eq!(
        s.get("/v1/observations", Some(&key)).await.status,
        StatusCode::OK
    );
    s.demo.auth.flush().await.unwrap();
    let list = s.get("/v1/api_keys", Some(&s.acme)).await;
    let entry = list.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(entry["last_used_at"].is_string(), "{entry}");

    let foreign = s
        .send(
            Method::DELETE,
            &format!("/v1/api_keys/{id}"),
            Some(&s.globex),
            None,
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.get("/v1/observations", Some(&key)).await.status,
        StatusCode::OK
    );
    let revoked = s
        .send(
            Method::DELETE,
            &format!("/v1/api_keys/{id}"),
            Some(&s.acme),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let after = s.get("/v1/observations", Some(&key)).await;
    assert_eq!(
        (after.status, after.code()),
        (StatusCode::UNAUTHORIZED, json!("authentication_required"))
    );
}

#[tokio::test]
async fn rotation_with_and_without_grace() {
    let s = start("100/s").await;
    let (old, id) = s.new_key(&["observations:read"], "live").await;
    let rotated = s
        .post(
            &format!("/v1/api_keys/{id}/rotate"),
            Some(&s.acme),
            json!({"grace_seconds": 60}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.text);
    let v = rotated.json();
    assert_eq!(v["name"], "k");
    assert_eq!(v["scopes"], json!(["observations:read"]));
    let new = v["key"].as_str().unwrap().to_owned();

    let during = s.get("/v1/observations", Some(&old)).await;
    assert_eq!(during.status, StatusCode::OK);
    assert!(during.header("sunset").is_some());
    assert!(s
        .get("/v1/observations", Some(&new))
        .await
        .header("sunset")
        .is_none());
    s.clock.advance(Duration::from_secs(60));
    assert_eq!(
        s.get("/v1/observations", Some(&old)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.get("/v1/observations", Some(&new)).await.status,
        StatusCode::OK
    );

    // Default grace is 0: the old key dies at once.
    let new_id = v["id"].as_str().unwrap();
    let again = s
        .send(
            Method::POST,
            &format!("/v1/api_keys/{new_id}/rotate"),
            Some(&s.acme),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    assert_eq!(
        s.get("/v1/observations", Some(&new)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // A revoked key cannot be rotated.
    let (_, revoked) = s.new_key(&[], "live").await;
    s.send(
        Method::DELETE,
        &format!("/v1/api_keys/{revoked}"),
        Some(&s.acme),
        None,
    )
    .await;
    let conflict = s
        .post(
            &format!("/v1/api_keys/{revoked}/rotate"),
            Some(&s.acme),
            json!({"grace_seconds": 0}),
        )
        .await;
    assert_eq!(
        (conflict.status, conflict.code()),
        (StatusCode::CONFLICT, json!("conflict"))
    );
}

#[tokio::test]
async fn the_audit_log_records_lifecycle_and_writes_but_never_reads() {
    let s = start("100/s").await;
    let (key, id) = s.new_key(&["observations:write"], "live").await;
    s.get("/v1/observations", Some(&key)).await;
    s.post("/v1/observations", Some(&key), observation()).await;
    s.send(
        Method::DELETE,
        &format!("/v1/api_keys/{id}"),
        Some(&s.acme),
        None,
    )
    .await;

    let log = s.get("/v1/audit_log", Some(&s.acme)).await;
    assert_eq!(log.status, StatusCode::OK);
    let items = log.json()["items"].as_array().unwrap().clone();
    assert!(
        items.iter().all(|e| e["method"] != "GET"),
        "a read was audited"
    );
    let ids: Vec<u64> = items.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let actions: Vec<&str> = items
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["api_key.created", "api_key.revoked", "request"] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }

    let for_key = s
        .get(&format!("/v1/audit_log?api_key_id={id}"), Some(&s.acme))
        .await
        .json()["items"]
        .clone();
    let for_key = for_key.as_array().unwrap();
    let shape: Vec<(&str, Option<&str>)> = for_key
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["method"].as_str()))
        .collect();
    assert_eq!(
        shape,
        [
            ("api_key.revoked", None),
            ("request", Some("POST")),
            ("api_key.created", None)
        ]
    );
    let revoked = &for_key[0];
    assert_eq!(revoked["api_key_id"], id.as_str());
    assert_eq!(revoked["actor"]["kind"], "key");
    assert!(revoked["prefix"].as_str().unwrap().starts_with("pb_live_"));
    assert_eq!(revoked["environment"], "live");
    let request = &for_key[1];
    assert_eq!(
        (request["path"].clone(), request["status"].clone()),
        (json!("/v1/observations"), json!(201))
    );
    for field in [
        "id",
        "occurred_at",
        "action",
        "api_key_id",
        "method",
        "path",
        "status",
    ] {
        assert!(request.get(field).is_some(), "missing {field}");
    }
    assert!(
        s.get("/v1/audit_log", Some(&s.globex)).await.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["api_key_id"] != id.as_str())
    );
}

#[tokio::test]
async fn rate_limiting_can_be_switched_off_while_scopes_still_apply() {
    let s = start("off").await;
    let (key, _) = s.new_key(&["observations:read"], "live").await;
    for _ in 0..5 {
        let reply = s.get("/v1/observations", Some(&key)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("ratelimit"), None);
    }
    assert_eq!(
        s.get("/v1/employees", Some(&key)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.get("/v1/observations", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn rate_limits_are_per_key_and_shared_across_a_rotation() {
    let s = start("3/min").await;
    let (key, id) = s.new_key(&["observations:read"], "live").await;
    // Refusals spend nothing.
    for _ in 0..5 {
        assert_eq!(
            s.get("/v1/employees", Some(&key)).await.status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            s.get("/v1/observations", None).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        s.get("/v1/observations", Some(&key)).await.status,
        StatusCode::OK
    );
    let rotated = s
        .post(
            &format!("/v1/api_keys/{id}/rotate"),
            Some(&s.acme),
            json!({"grace_seconds": 600}),
        )
        .await;
    let new = rotated.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(
        s.get("/v1/observations", Some(&new)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.get("/v1/observations", Some(&key)).await.status,
        StatusCode::OK
    );
    let limited = s.get("/v1/observations", Some(&new)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), "rate_limited");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert_eq!(
        limited.header("ratelimit"),
        Some(format!(r#""default";r=0;t={retry}"#).as_str())
    );
    assert_eq!(
        limited.header("ratelimit-policy"),
        Some(r#""default";q=3;w=60"#)
    );
    // Another key has its own bucket.
    assert_eq!(
        s.get("/v1/session", Some(&s.globex)).await.status,
        StatusCode::OK
    );
    s.clock.advance(Duration::from_secs(retry));
    assert_eq!(
        s.get("/v1/observations", Some(&new)).await.status,
        StatusCode::OK
    );
}

// ---- ProductBridge surface ----

const LIST: &str = "/api/external/v1/feedback-posts/list";
const CREATE: &str = "/api/external/v1/feedback-posts/create";
const INVALID_API_KEY: &str =
    r#"{"error":{"code":"authentication_required","message":"invalid api_key"}}"#;

impl Server {
    async fn bridge(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let response = req.body(body).send().await.unwrap();
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }
}

#[tokio::test]
async fn product_bridge_lists_and_creates_posts() {
    let s = start("100/s").await;
    let created = s
        .bridge(
            CREATE,
            json!({"api_key": s.acme, "title": "Dark mode"}).to_string(),
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert!(created.json()["id"].is_string());
    assert_eq!(created.json()["title"], "Dark mode");
    let list = s
        .bridge(
            LIST,
            json!({"api_key": s.acme, "limit": 25}).to_string(),
            &[],
        )
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let v = list.json();
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        (v["has_next_page"].clone(), v["cursor"].clone()),
        (json!(false), Value::Null)
    );
    let other = s
        .bridge(
            LIST,
            json!({"api_key": s.globex, "limit": 25}).to_string(),
            &[],
        )
        .await;
    assert_eq!(other.json()["items"], json!([]));
}

#[tokio::test]
async fn product_bridge_has_one_generic_401() {
    let s = start("100/s").await;
    let (no_public_api, _) = s.new_key(&["observations:read"], "live").await;
    let (revoked, revoked_id) = s.new_key(&["public_api"], "live").await;
    s.send(
        Method::DELETE,
        &format!("/v1/api_keys/{revoked_id}"),
        Some(&s.acme),
        None,
    )
    .await;
    let cases = [
        (json!({"limit": 25}).to_string(), vec![]),
        (
            json!({"api_key": "pb_live_unknown", "limit": 25}).to_string(),
            vec![],
        ),
        (json!({"api_key": revoked, "limit": 25}).to_string(), vec![]),
        (
            json!({"api_key": no_public_api, "limit": 25}).to_string(),
            vec![],
        ),
        (
            json!({"limit": 25}).to_string(),
            vec![("authorization", format!("Bearer {}", s.acme))],
        ),
        (
            json!({"limit": 25}).to_string(),
            vec![("x-api-key", s.acme.clone())],
        ),
    ];
    for (body, headers) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = s.bridge(LIST, body.clone(), &headers).await;
        assert_eq!(
            (reply.status, reply.text.as_str()),
            (StatusCode::UNAUTHORIZED, INVALID_API_KEY),
            "{body}"
        );
    }
    let in_query = s
        .client
        .post(format!("{}{LIST}?api_key={}", s.base, s.acme))
        .header("content-type", "application/json")
        .body(r#"{"limit":25}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(in_query.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn product_bridge_rejects_bad_bodies() {
    let s = start("100/s").await;
    let not_json = s.bridge(LIST, "api_key=nope", &[]).await;
    assert_eq!(
        (not_json.status, not_json.code()),
        (StatusCode::BAD_REQUEST, json!("invalid_request"))
    );
    let huge = format!(
        r#"{{"api_key":"{}","title":"{}"}}"#,
        s.acme,
        "x".repeat(1024 * 1024)
    );
    let too_large = s.bridge(CREATE, huge, &[]).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// The attacks of the key-lifecycle issue, replayed over HTTP: each is 403
/// `permission_denied` naming what is missing (or 409 for a lost race), changes
/// nothing, and the positive controls still pass.
async fn keys_of(s: &Server, key: &str) -> Vec<Value> {
    let reply = s.get("/v1/api_keys", Some(key)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.json()["items"].as_array().unwrap().clone()
}

async fn lifecycle_attacks_fail_over_http(s: Server) {
    let admin_id = keys_of(&s, &s.acme).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (writer, writer_id) = s.new_key(&["api_keys:write"], "live").await;
    let before = keys_of(&s, &s.acme).await;

    // An api_keys:write key lists the keys, then tries to rotate the admin key into a
    // new admin key with a year of grace, revoke it, or mint itself a stronger key.
    let rotate = s
        .post(
            &format!("/v1/api_keys/{admin_id}/rotate"),
            Some(&writer),
            json!({"grace_seconds": 31_536_000}),
        )
        .await;
    assert_eq!(
        (rotate.status, rotate.code()),
        (StatusCode::FORBIDDEN, json!("permission_denied")),
        "{}",
        rotate.text
    );
    assert_eq!(
        rotate.json()["error"]["message"],
        "Cannot act on a key holding scope employees:read: the acting key does not hold it"
    );
    let revoke = s
        .send(
            Method::DELETE,
            &format!("/v1/api_keys/{admin_id}"),
            Some(&writer),
            None,
        )
        .await;
    assert_eq!(revoke.status, StatusCode::FORBIDDEN);
    let create = s
        .create_key(&writer, json!({"name": "x", "scopes": ["audit_log:read"]}))
        .await;
    assert_eq!(create.status, StatusCode::FORBIDDEN);
    assert_eq!(
        create.json()["error"]["message"],
        "Cannot grant scope audit_log:read: the acting key does not hold it"
    );

    // A test key with api_keys:write reaches no live key: it cannot create one, and
    // live keys are not found (see `other_owners_and_environments_keys_are_missing`).
    let (tester, _) = s
        .new_key(&["api_keys:write", "employees:read"], "test")
        .await;
    for (method, path, body) in [
        (
            Method::POST,
            format!("/v1/api_keys/{writer_id}/rotate"),
            Some(json!({})),
        ),
        (Method::DELETE, format!("/v1/api_keys/{writer_id}"), None),
        (Method::GET, format!("/v1/api_keys/{writer_id}"), None),
    ] {
        let reply = s.send(method, &path, Some(&tester), body).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::NOT_FOUND, json!("not_found")),
            "{path}: {}",
            reply.text
        );
    }
    let reply = s
        .create_key(
            &tester,
            json!({"name": "x", "scopes": [], "environment": "live"}),
        )
        .await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::FORBIDDEN, json!("permission_denied")),
        "{}",
        reply.text
    );
    assert_eq!(
        reply.json()["error"]["message"],
        "A test key can only act on test keys"
    );
    let seen = keys_of(&s, &tester).await;
    assert!(seen.iter().all(|k| k["environment"] == "test"), "{seen:?}");

    // Scope changes: not to grant oneself more, not on a stronger key.
    let widen = s
        .send(
            Method::PATCH,
            &format!("/v1/api_keys/{writer_id}"),
            Some(&writer),
            Some(json!({"scopes": ["api_keys:write", "employees:write"]})),
        )
        .await;
    assert_eq!(widen.status, StatusCode::FORBIDDEN, "{}", widen.text);
    let narrow_admin = s
        .send(
            Method::PATCH,
            &format!("/v1/api_keys/{admin_id}"),
            Some(&writer),
            Some(json!({"scopes": []})),
        )
        .await;
    assert_eq!(narrow_admin.status, StatusCode::FORBIDDEN);

    // Another organization's admin: acme's keys do not exist for it.
    let foreign = s
        .send(
            Method::DELETE,
            &format!("/v1/api_keys/{writer_id}"),
            Some(&s.globex),
            None,
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);

    // Nothing changed: the same keys (plus the test key), the admin key unrotated.
    let after = keys_of(&s, &s.acme).await;
    assert_eq!(after.len(), before.len() + 1);
    assert!(after
        .iter()
        .all(|k| k["superseded_by"].is_null() && k["revoked_at"].is_null()));
    assert_eq!(
        s.get("/v1/session", Some(&s.acme)).await.status,
        StatusCode::OK
    );

    // Eight concurrent rotations of one key: one 201, seven 409.
    let (_, target) = s.new_key(&["employees:read"], "live").await;
    let path = format!("/v1/api_keys/{target}/rotate");
    let replies = futures_util::future::join_all(
        (0..8).map(|_| s.post(&path, Some(&s.acme), json!({"grace_seconds": 60}))),
    )
    .await;
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);
    let successor = replies
        .iter()
        .find(|r| r.status == StatusCode::CREATED)
        .unwrap()
        .json();
    assert_eq!(
        s.get("/v1/session", Some(successor["key"].as_str().unwrap()))
            .await
            .status,
        StatusCode::OK
    );

    // Positive controls: the writer rotates a key whose scopes it holds; the admin
    // rotates the writer; a revocation is in the audit log.
    let (_, reader_id) = s.new_key(&["api_keys:read"], "live").await;
    let ok = s
        .post(
            &format!("/v1/api_keys/{reader_id}/rotate"),
            Some(&writer),
            json!({}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let ok = s
        .post(
            &format!("/v1/api_keys/{writer_id}/rotate"),
            Some(&s.acme),
            json!({}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let (_, wide) = s.new_key(&["employees:write"], "live").await;
    let narrowed = s
        .send(
            Method::PATCH,
            &format!("/v1/api_keys/{wide}"),
            Some(&s.acme),
            Some(json!({"scopes": ["employees:read"]})),
        )
        .await;
    assert_eq!(narrowed.status, StatusCode::OK, "{}", narrowed.text);
    assert_eq!(narrowed.json()["scopes"], json!(["employees:read"]));
    let (_, doomed) = s.new_key(&[], "live").await;
    let gone = s
        .send(
            Method::DELETE,
            &format!("/v1/api_keys/{doomed}"),
            Some(&s.acme),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let log = s
        .get(&format!("/v1/audit_log?api_key_id={doomed}"), Some(&s.acme))
        .await
        .json();
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["api_key.revoked", "api_key.created"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_attacks_fail_over_http_on_the_memory_store() {
    lifecycle_attacks_fail_over_http(start("100/s").await).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_attacks_fail_over_http_on_sqlite() {
    let db = support::stores::TempDb::new().await;
    let store = DemoStore::Sqlite(db.store.clone());
    lifecycle_attacks_fail_over_http(start_on(store, "100/s").await).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_attacks_fail_over_http_on_postgres() {
    let Some(db) = support::stores::TestSchema::new().await else {
        return;
    };
    let store = DemoStore::Postgres(db.store.clone());
    lifecycle_attacks_fail_over_http(start_on(store, "100/s").await).await;
}

/// Runs the case `$case(server)` against the demo on the memory store, on SQLite and
/// on PostgreSQL (when `TOWER_API_KEY_TEST_POSTGRES_URL` is set), as
/// `$module::{memory, sqlite, postgres}`.
macro_rules! on_every_store {
    ($module:ident, $case:ident) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                $case(start("100/s").await).await;
            }

            #[cfg(feature = "sqlite")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = support::stores::TempDb::new().await;
                $case(start_on(DemoStore::Sqlite(db.store.clone()), "100/s").await).await;
            }

            #[cfg(feature = "postgres")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = support::stores::TestSchema::new().await else {
                    return;
                };
                $case(start_on(DemoStore::Postgres(db.store.clone()), "100/s").await).await;
            }
        }
    };
}

/// Issue 23, attack 2: an admin rotates key A to A2 with an hour of grace. The old A
/// still authenticates, but manages nothing: it can neither mint keys nor rotate A2
/// away (which would lock A2's holder out), nor revoke, change, read or list keys, nor
/// read the audit log. A2 keeps working and manages keys.
async fn a_rotated_away_key_manages_nothing(s: Server) {
    let all = [
        "api_keys:read",
        "api_keys:write",
        "audit_log:read",
        "employees:read",
    ];
    let (old, old_id) = s.new_key(&all, "live").await;
    let rotated = s
        .post(
            &format!("/v1/api_keys/{old_id}/rotate"),
            Some(&s.acme),
            json!({"grace_seconds": 3_600}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.text);
    let successor = rotated.json()["key"].as_str().unwrap().to_owned();
    let successor_id = rotated.json()["id"].as_str().unwrap().to_owned();
    let before = keys_of(&s, &s.acme).await;

    // Still authenticates ordinary requests, with a Sunset header.
    let session = s.get("/v1/session", Some(&old)).await;
    assert_eq!(session.status, StatusCode::OK);
    assert!(session.header("sunset").is_some());

    let replaced = "The acting key was replaced by a rotation: it works until its grace \
                    period ends, but only its successor manages keys";
    let target = format!("/v1/api_keys/{successor_id}");
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/api_keys".to_owned(),
            Some(json!({"name": "forever", "scopes": ["employees:read"]})),
        ),
        (
            Method::POST,
            format!("{target}/rotate"),
            Some(json!({"grace_seconds": 0})),
        ),
        (Method::DELETE, target.clone(), None),
        (
            Method::PATCH,
            target.clone(),
            Some(json!({"scopes": ["employees:read"]})),
        ),
        (Method::GET, target.clone(), None),
        (Method::GET, "/v1/api_keys".to_owned(), None),
        (Method::GET, "/v1/audit_log".to_owned(), None),
    ] {
        let reply = s.send(method.clone(), &path, Some(&old), body).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::FORBIDDEN, json!("permission_denied")),
            "{method} {path}: {}",
            reply.text
        );
        assert_eq!(
            reply.json()["error"]["message"],
            replaced,
            "{method} {path}"
        );
    }

    // Nothing changed: A2's holder is not locked out, and A2 manages keys.
    assert_eq!(keys_of(&s, &s.acme).await, before);
    assert_eq!(
        s.get("/v1/session", Some(&successor)).await.status,
        StatusCode::OK
    );
    let made = s
        .create_key(&successor, json!({"name": "by A2", "scopes": []}))
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    s.clock.advance(Duration::from_secs(3_600));
    assert_eq!(
        s.get("/v1/session", Some(&old)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.get("/v1/session", Some(&successor)).await.status,
        StatusCode::OK
    );
}

on_every_store!(
    rotated_away_keys_manage_nothing,
    a_rotated_away_key_manages_nothing
);

/// Issue 23, attack 1 and the rotation gap: a key with `api_keys:write` that expires in
/// two minutes creates no key without an expiry or with a later one, and rotates no key
/// that expires later than itself (the rotation would hand it a longer-lived secret).
/// Keys that expire no later are allowed.
async fn an_expiring_key_obtains_nothing_that_outlives_it(s: Server) {
    use tower_api_key::clock::Clock;
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let now = s.clock.now();
    let made = s
        .create_key(
            &s.acme,
            json!({
                "name": "two minutes",
                "scopes": ["api_keys:write", "employees:read"],
                "expires_at": rfc3339(now + time::Duration::minutes(2)),
            }),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let short = made.json()["key"].as_str().unwrap().to_owned();
    let short_id = made.json()["id"].as_str().unwrap().to_owned();
    let limit = made.json()["expires_at"].as_str().unwrap().to_owned();
    let (permanent, permanent_id) = s.new_key(&["employees:read"], "live").await;
    let before = keys_of(&s, &s.acme).await;

    let outlives = format!("The new key would outlive the acting key (which expires {limit})");
    for body in [
        json!({"name": "forever", "scopes": ["employees:read"]}),
        json!({"name": "forever", "scopes": ["employees:read"], "expires_at": null}),
        json!({
            "name": "a year",
            "scopes": ["employees:read"],
            "expires_at": rfc3339(now + time::Duration::days(365)),
        }),
    ] {
        let reply = s.create_key(&short, body.clone()).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::FORBIDDEN, json!("permission_denied")),
            "{body}: {}",
            reply.text
        );
        assert_eq!(reply.json()["error"]["message"], outlives.as_str());
    }
    // The rotation gap: a two-minute key rotating a permanent key would receive a
    // permanent secret.
    let rotate = s
        .post(
            &format!("/v1/api_keys/{permanent_id}/rotate"),
            Some(&short),
            json!({"grace_seconds": 0}),
        )
        .await;
    assert_eq!(rotate.status, StatusCode::FORBIDDEN, "{}", rotate.text);
    assert_eq!(rotate.json()["error"]["message"], outlives.as_str());
    assert_eq!(keys_of(&s, &s.acme).await, before, "nothing changed");
    assert_eq!(
        s.get("/v1/session", Some(&permanent)).await.status,
        StatusCode::OK
    );

    // Positive controls: a key expiring with it, and rotating itself.
    let child = s
        .create_key(
            &short,
            json!({"name": "with it", "scopes": ["employees:read"], "expires_at": limit}),
        )
        .await;
    assert_eq!(child.status, StatusCode::CREATED, "{}", child.text);
    assert_eq!(child.json()["expires_at"], limit.as_str());
    let itself = s
        .post(
            &format!("/v1/api_keys/{short_id}/rotate"),
            Some(&short),
            json!({}),
        )
        .await;
    assert_eq!(itself.status, StatusCode::CREATED, "{}", itself.text);
    assert_eq!(itself.json()["expires_at"], limit.as_str());
}

on_every_store!(
    expiring_keys_obtain_nothing_that_outlives_them,
    an_expiring_key_obtains_nothing_that_outlives_it
);

/// Issue 23, attack 5, the existence oracle: to a test key, a live key's id is exactly
/// like a missing one (and a malformed one), and so is another organization's key to
/// that organization's admin: the same 404 and the same body, on every operation on a
/// key. Nothing changes. A key lacking the route's scope still gets the route guard's
/// 403, which reveals nothing about ids.
async fn other_owners_and_environments_keys_are_missing(s: Server) {
    let (live, live_id) = s
        .new_key(&["api_keys:write", "employees:read"], "live")
        .await;
    let (tester, _) = s
        .new_key(&["api_keys:write", "employees:read"], "test")
        .await;
    let (_, test_id) = s.new_key(&["employees:read"], "test").await;
    let before = keys_of(&s, &s.acme).await;
    let missing = "AAAAAAAAAAA";
    let malformed = "not-a-key-id-because-it-is-too-long";

    let operations = |id: &str| {
        let path = format!("/v1/api_keys/{id}");
        [
            (Method::GET, path.clone(), None),
            (Method::DELETE, path.clone(), None),
            (
                Method::PATCH,
                path.clone(),
                Some(json!({"scopes": ["employees:read"]})),
            ),
            (
                Method::POST,
                format!("{path}/rotate"),
                Some(json!({"grace_seconds": 0})),
            ),
        ]
    };
    let not_found = json!({"error": {"code": "not_found", "message": "No such key"}});
    for (caller, hidden) in [
        (&tester, &live_id),
        (&s.globex, &live_id),
        (&s.globex, &test_id),
    ] {
        for id in [hidden.as_str(), missing, malformed] {
            for (method, path, body) in operations(id) {
                let reply = s.send(method.clone(), &path, Some(caller), body).await;
                // In the surface's style, as every refusal: with the request's id,
                // which differs from request to request and says nothing about keys.
                let mut body = reply.json();
                let request_id = body["error"].as_object_mut().unwrap().remove("request_id");
                assert_eq!(
                    request_id.as_ref().and_then(Value::as_str),
                    reply.header("x-request-id"),
                    "{method} {path}"
                );
                assert_eq!(
                    (reply.status, body),
                    (StatusCode::NOT_FOUND, not_found.clone()),
                    "{method} {path}: {}",
                    reply.text
                );
            }
        }
    }
    // Nothing changed, and the hidden key works.
    assert_eq!(keys_of(&s, &s.acme).await, before);
    assert_eq!(
        s.get("/v1/session", Some(&live)).await.status,
        StatusCode::OK
    );
    // Positive control: the test key reads a test key.
    let read = s
        .get(&format!("/v1/api_keys/{test_id}"), Some(&tester))
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    // The route guard's 403 does not depend on the id.
    let (reader, _) = s.new_key(&["employees:read"], "live").await;
    let mut guarded = Vec::new();
    for id in [live_id.as_str(), missing] {
        let reply = s.get(&format!("/v1/api_keys/{id}"), Some(&reader)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
        let mut body = reply.json();
        body["error"].as_object_mut().unwrap().remove("request_id");
        guarded.push(body);
    }
    assert_eq!(guarded[0], guarded[1]);
    assert_eq!(
        guarded[0]["error"]["message"],
        "Required scope: api_keys:read"
    );
}

on_every_store!(
    other_owners_and_environments_keys_are_missing_over_http,
    other_owners_and_environments_keys_are_missing
);

/// A client with no valid key sending distinct forged, well-formed keys: the first 100
/// a minute are looked up (401), past that each is 429 without a lookup, and a real key
/// from the same client keeps working throughout; a minute later lookups resume.
async fn forged_keys_are_budgeted_over_http(s: Server) {
    let format = tower_api_key::presets::performance_blocks::key_format();
    let forge = || {
        format
            .generate(Some("live"))
            .unwrap()
            .key
            .expose_secret()
            .to_owned()
    };
    for n in 0..100 {
        let reply = s.get("/v1/session", Some(&forge())).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "forged key {n}");
    }
    for _ in 0..20 {
        let reply = s.get("/v1/session", Some(&forge())).await;
        assert_eq!(
            reply.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            reply.text
        );
        assert_eq!(reply.code(), "rate_limited");
        assert!(reply.header("retry-after").is_some());
        assert_eq!(
            s.get("/v1/session", Some(&s.acme)).await.status,
            StatusCode::OK
        );
    }
    s.clock.advance(Duration::from_secs(60));
    let reply = s.get("/v1/session", Some(&forge())).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_keys_are_budgeted_on_the_memory_store() {
    forged_keys_are_budgeted_over_http(start("off").await).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_keys_are_budgeted_on_sqlite() {
    let db = support::stores::TempDb::new().await;
    forged_keys_are_budgeted_over_http(start_on(DemoStore::Sqlite(db.store.clone()), "off").await)
        .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_keys_are_budgeted_on_postgres() {
    let Some(db) = support::stores::TestSchema::new().await else {
        return;
    };
    forged_keys_are_budgeted_over_http(
        start_on(DemoStore::Postgres(db.store.clone()), "off").await,
    )
    .await;
}

/// A second instance over the same store (a restart, or another server of the fleet):
/// its own cache, budgets and memory of known keys; the first one's admin keys.
fn second_instance(store: DemoStore, first: &Server) -> Server {
    let settings = Settings {
        rate_limit: None,
        clock: Arc::new(first.clock.clone()),
        ..Settings::default()
    };
    let demo = app::build(store, settings).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = demo.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Server {
        base,
        clock: first.clock.clone(),
        acme: first.acme.clone(),
        globex: first.globex.clone(),
        demo,
        client: Client::new(),
    }
}

/// Forged keys as an attacker makes them: well-formed, checksum-valid, tagged under a
/// secret of the attacker's own with the id the server's keys carry.
fn forged_tagged(like: &str) -> String {
    use tower_api_key::key::{TagKey, TAGGED_BODY_LEN};
    let body = &like[like.len() - TAGGED_BODY_LEN..];
    let secret_id = char::from(body.as_bytes()[11 + 22]);
    let attacker = TagKey::new(secret_id, &[0x66; 32]).unwrap();
    tower_api_key::presets::performance_blocks::key_format()
        .generate_tagged(Some("live"), &attacker)
        .unwrap()
        .key
        .expose_secret()
        .to_owned()
}

/// Issue 23's third attack, replayed: forged keys from one address must not turn a
/// valid key from that address into 429, after a restart or on an instance that has
/// never seen it, and must not reach the store at all.
///
/// `second` is another connection to the first instance's database, for a second
/// instance; `None` for the memory store, of which a process holds one front door (a
/// second one over a clone is a `ConfigError`) and which no other process shares.
async fn forged_tagged_keys_lock_nobody_out_over_http(first: Server, second: Option<DemoStore>) {
    let forged = || forged_tagged(&first.acme);
    for n in 0..300 {
        let reply = first.get("/v1/session", Some(&forged())).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "forged key {n}");
    }
    assert_eq!(
        first.demo.cache.negative_entry_count(),
        0,
        "a forged key was looked up"
    );
    assert_eq!(
        first.get("/v1/session", Some(&first.acme)).await.status,
        StatusCode::OK
    );
    // A key made through the first instance, never used there.
    let (fresh, _) = first.new_key(&["employees:read"], "live").await;

    let Some(store) = second else {
        return;
    };
    let second = second_instance(store, &first);
    for n in 0..300 {
        let reply = second.get("/v1/session", Some(&forged())).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "forged key {n}");
    }
    for key in [&second.acme, &fresh] {
        let reply = second.get("/v1/session", Some(key)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    assert_eq!(
        second.demo.cache.negative_entry_count(),
        0,
        "a forged key was looked up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tagged_keys_lock_nobody_out_on_the_memory_store() {
    let first = start_on(DemoStore::Memory(MemoryStore::new()), "off").await;
    forged_tagged_keys_lock_nobody_out_over_http(first, None).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tagged_keys_lock_nobody_out_on_sqlite() {
    let db = support::stores::TempDb::new().await;
    let first = start_on(DemoStore::Sqlite(db.store.clone()), "off").await;
    let second = tower_api_key::store::sql::SqliteStore::connect(&support::stores::url(&db.path))
        .await
        .unwrap();
    forged_tagged_keys_lock_nobody_out_over_http(first, Some(DemoStore::Sqlite(second))).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tagged_keys_lock_nobody_out_on_postgres() {
    let Some(db) = support::stores::TestSchema::new().await else {
        return;
    };
    let first = start_on(DemoStore::Postgres(db.store.clone()), "off").await;
    let second = DemoStore::Postgres(db.connect().await);
    forged_tagged_keys_lock_nobody_out_over_http(first, Some(second)).await;
}

/// Three demo instances sharing PostgreSQL (keys) and Redis (limits and quotas), with
/// requests spread round-robin: one limit and one quota for the fleet.
#[cfg(all(feature = "postgres", feature = "redis"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_limits_and_quotas_through_redis() {
    use tower_api_key::rate_limit::RedisLimiter;

    let Some(db) = support::stores::TestSchema::new().await else {
        return;
    };
    let Some(redis) = support::redis_server::RedisServer::start() else {
        return;
    };
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let mut instances = Vec::new();
    let mut admin = None;
    for _ in 0..3 {
        let settings = Settings {
            rate_limit: Some("60/min".parse().unwrap()),
            clock: Arc::new(clock.clone()),
            limiter: app::DemoLimiter::Redis(RedisLimiter::new(&redis.url()).unwrap()),
            daily_quota: Some(100),
            ..Settings::default()
        };
        let store = DemoStore::Postgres(db.connect().await);
        let demo = app::build(store, settings).unwrap();
        // The first instance makes the admin keys; the others find them.
        let keys = demo.bootstrap().await.unwrap();
        let (acme, globex) = admin.get_or_insert_with(|| {
            let key = |org: &str| keys.iter().find(|(o, _)| o == org).unwrap().1.clone();
            (key("acme"), key("globex"))
        });
        instances.push(serve(demo, clock.clone(), acme.clone(), globex.clone()).await);
    }
    let (key, _) = instances[0].new_key(&["observations:read"], "live").await;

    // 60 a minute across the fleet: 60 successes in all, then 429 everywhere with the
    // same Retry-After and RateLimit fields.
    let mut ok = 0;
    let mut limited = Vec::new();
    for i in 0..75 {
        let reply = instances[i % 3].get("/v1/observations", Some(&key)).await;
        match reply.status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited.push((
                reply.header("retry-after").unwrap().to_owned(),
                reply.header("ratelimit").unwrap().to_owned(),
            )),
            other => panic!("{other}: {}", reply.text),
        }
    }
    assert_eq!(ok, 60);
    assert_eq!(limited.len(), 15);
    assert!(limited.iter().all(|l| *l == limited[0]), "{limited:?}");
    assert_eq!(limited[0].0, "1");

    // The acme admin has spent some of the daily quota of 100 (creating the key, and
    // the quota is per organization): spend the rest with fresh keys, round-robin.
    let mut spent = 0;
    for i in 0.. {
        let (reader, _) = instances[i % 3]
            .new_key(&["observations:read"], "live")
            .await;
        let reply = instances[(i + 1) % 3]
            .get("/v1/observations", Some(&reader))
            .await;
        if reply.status == StatusCode::FORBIDDEN {
            assert_eq!(reply.code(), json!("quota_exceeded"), "{}", reply.text);
            break;
        }
        spent += 1;
        assert!(spent < 100, "the quota was never reached");
    }
    // Exhausted on one instance: exhausted on all.
    for server in &instances {
        let reply = server.get("/v1/session", Some(&server.acme)).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::FORBIDDEN, json!("quota_exceeded"))
        );
    }
}
