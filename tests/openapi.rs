//! The demo's `/openapi.json` tells the truth about its guards: for every operation, a
//! key holding exactly the scopes of a documented alternative passes the guard, and a
//! key lacking any one of them is refused with the status the document gives for
//! `insufficient_scope` (403 on the Performance Blocks surface, ProductBridge's generic
//! 401 on the other). Requests go over real HTTP to the demo router.
#![cfg(feature = "utoipa")]

#[allow(clippy::all, unreachable_pub)]
#[path = "../examples/demo/app/mod.rs"]
mod app;

use std::collections::BTreeSet;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use tower_api_key::manage::{Actor, NewKey};
use tower_api_key::store::MemoryStore;
use tower_api_key::Owner;

use app::{Demo, DemoStore, Settings};

struct Server {
    base: String,
    demo: Demo,
    client: Client,
}

async fn start() -> Server {
    let demo = app::build(DemoStore::Memory(MemoryStore::new()), Settings::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = demo.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Server {
        base,
        demo,
        client: Client::new(),
    }
}

impl Server {
    async fn document(&self) -> Value {
        let reply = self
            .client
            .get(format!("{}/openapi.json", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::OK, "served without a key");
        reply.json().await.unwrap()
    }

    /// A live acme key holding exactly `scopes`.
    async fn key(&self, scopes: &[&str]) -> String {
        let created = self
            .demo
            .manager
            .create(
                NewKey::new(
                    format!("probe {}", scopes.join(" ")),
                    Owner::organization("acme"),
                )
                .with_environment("live")
                .with_scopes(scopes.iter().copied()),
                Actor::System("openapi test"),
            )
            .await
            .unwrap();
        created.key.expose_secret().to_owned()
    }

    /// Calls `operation` with `key`, the way its document says the key is sent: as a
    /// Bearer token when it has security requirements, else in the JSON body's
    /// `api_key`. Path ids name nothing, bodies are empty objects: the guard runs
    /// before the handler looks at either.
    async fn call(&self, method: &str, path: &str, operation: &Value, key: &str) -> Reply {
        let url = format!("{}{}", self.base, path.replace("{id}", "no_such_id"));
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut request = self.client.request(method, url);
        if operation["security"].is_array() {
            request = request.bearer_auth(key);
            if operation["requestBody"].is_object() {
                request = request.json(&json!({}));
            }
        } else {
            request = request.json(&json!({ "api_key": key }));
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        Reply { status, text }
    }
}

struct Reply {
    status: StatusCode,
    text: String,
}

/// Every operation of the document: (method, path, operation).
fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            out.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    out
}

/// The documented alternatives of an operation.
fn alternatives(operation: &Value) -> Vec<Vec<String>> {
    operation["x-required-scopes"]
        .as_array()
        .expect("every operation documents its scopes")
        .iter()
        .map(|alternative| {
            alternative
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

/// The status the operation documents for a scope refusal: the response with an
/// example whose outcomes include `insufficient_scope`.
fn insufficient_scope_status(operation: &Value) -> StatusCode {
    let responses = operation["responses"].as_object().unwrap();
    let found: Vec<&String> = responses
        .iter()
        .filter(|(_, response)| {
            response["content"]
                .as_object()
                .into_iter()
                .flat_map(|content| content.values())
                .filter_map(|media| media["examples"].as_object())
                .flat_map(|examples| examples.values())
                .any(|example| {
                    example["summary"]
                        .as_str()
                        .is_some_and(|s| s.contains("insufficient_scope"))
                })
        })
        .map(|(status, _)| status)
        .collect();
    assert_eq!(found.len(), 1, "one documented scope refusal: {found:?}");
    StatusCode::from_u16(found[0].parse().unwrap()).unwrap()
}

#[tokio::test]
async fn every_documented_scope_is_enforced_exactly() {
    let s = start().await;
    let document = s.document().await;
    let model = app::scope_model().unwrap();
    let for_all: BTreeSet<&str> = model.granted_to_all().iter().map(String::as_str).collect();
    let operations = operations(&document);
    assert_eq!(operations.len(), 16, "every guarded route is documented");

    let mut passed = 0;
    let mut refused = 0;
    for (method, path, operation) in &operations {
        let label = format!("{} {path}", method.to_uppercase());
        let refusal = insufficient_scope_status(operation);
        for alternative in alternatives(operation) {
            let scopes: Vec<&str> = alternative.iter().map(String::as_str).collect();
            let key = s.key(&scopes).await;
            let reply = s.call(method, path, operation, &key).await;
            assert!(
                reply.status != StatusCode::UNAUTHORIZED && reply.status != StatusCode::FORBIDDEN,
                "{label} with exactly {scopes:?}: {} {}",
                reply.status,
                reply.text
            );
            passed += 1;

            for lacking in &scopes {
                if for_all.contains(lacking) {
                    // Every key holds it: no key can lack it.
                    continue;
                }
                let rest: Vec<&str> = scopes.iter().copied().filter(|s| s != lacking).collect();
                let key = s.key(&rest).await;
                let reply = s.call(method, path, operation, &key).await;
                assert_eq!(
                    reply.status, refusal,
                    "{label} without {lacking}: {}",
                    reply.text
                );
                refused += 1;
            }
        }
    }
    // 16 operations; the two that need only `session:read` have no key lacking it.
    assert_eq!((passed, refused), (16, 14));
}

#[tokio::test]
async fn the_security_requirements_are_the_guards_alternatives_for_each_scheme() {
    let s = start().await;
    let document = s.document().await;
    let schemes: Vec<&str> = document["components"]["securitySchemes"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(schemes, ["api_key", "bearer"]);
    assert_eq!(
        document["components"]["securitySchemes"]["api_key"],
        json!({
            "type": "apiKey",
            "in": "header",
            "name": "x-api-key",
            "description": "The API key in the `x-api-key` header. Send the key by one method only.",
        })
    );
    for (method, path, operation) in operations(&document) {
        let expected: Vec<Value> = alternatives(&operation)
            .into_iter()
            .flat_map(|alternative| {
                [
                    json!({ "bearer": alternative.clone() }),
                    json!({ "api_key": alternative }),
                ]
            })
            .collect();
        if path.starts_with("/api/external/") {
            // The key is in the body: no scheme, the field is in the request schema.
            assert!(operation.get("security").is_none(), "{method} {path}");
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            assert_eq!(
                schema["allOf"][1]["required"],
                json!(["api_key"]),
                "{method} {path}"
            );
        } else {
            assert_eq!(operation["security"], json!(expected), "{method} {path}");
        }
        for status in ["401", "403", "429", "503"] {
            assert!(
                operation["responses"][status].is_object(),
                "{method} {path} documents {status}"
            );
        }
    }
}

#[tokio::test]
async fn the_documented_refusals_are_the_ones_answered() {
    let s = start().await;
    let document = s.document().await;
    let session = &document["paths"]["/v1/session"]["get"];
    let unauthorized = &session["responses"]["401"];
    for header in ["www-authenticate", "x-request-id", "cache-control"] {
        assert!(
            unauthorized["headers"][header].is_object(),
            "401 documents {header}"
        );
    }
    let too_many = &session["responses"]["429"];
    for header in ["retry-after", "ratelimit", "ratelimit-policy"] {
        assert!(
            too_many["headers"][header].is_object(),
            "429 documents {header}"
        );
    }
    assert!(session["responses"]["503"]["headers"]["retry-after"].is_object());

    // The documented 401 body is the one the demo answers, request id included.
    let example = &unauthorized["content"]["application/json"]["examples"]
        ["missing_with_request_id"]["value"];
    let reply = s
        .client
        .get(format!("{}/v1/session", s.base))
        .header("x-request-id", "req_8f14e45fceea167a")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(&reply.json::<Value>().await.unwrap(), example);

    // The 403's example names the route's own scope.
    let forbidden = &document["paths"]["/v1/audit_log"]["get"]["responses"]["403"];
    assert_eq!(
        forbidden["content"]["application/json"]["examples"]["insufficient_scope"]["value"]
            ["error"]["message"],
        "Required scope: audit_log:read"
    );
}

/// Schemathesis' `use_after_free`: after `DELETE` answered 204, reading the key
/// answered 200. It is now 404, while the list still shows the revoked key.
#[tokio::test]
async fn a_revoked_key_is_not_found_after_delete() {
    let s = start().await;
    let admin = s.key(&["api_keys:read", "api_keys:write"]).await;
    let created: Value = s
        .client
        .post(format!("{}/v1/api_keys", s.base))
        .bearer_auth(&admin)
        .json(&json!({ "name": "short-lived", "scopes": ["api_keys:read"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let url = format!("{}/v1/api_keys/{id}", s.base);
    let get = |url: String| {
        let (client, admin) = (s.client.clone(), admin.clone());
        async move { client.get(url).bearer_auth(admin).send().await.unwrap() }
    };
    assert_eq!(get(url.clone()).await.status(), StatusCode::OK);
    let deleted = s
        .client
        .delete(&url)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let after = get(url.clone()).await;
    assert_eq!(after.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        after.json::<Value>().await.unwrap()["error"]["message"],
        "The key was revoked"
    );
    let list: Value = get(format!("{}/v1/api_keys", s.base))
        .await
        .json()
        .await
        .unwrap();
    let listed = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .expect("still listed");
    assert!(listed["revoked_at"].is_string());
}

/// The document promises 404 for a missing key and for another organization's or
/// another environment's, on every operation on a key; a test key asking about a live
/// key gets exactly that 404, with the body of a missing id.
#[tokio::test]
async fn keys_out_of_reach_are_documented_and_answered_as_missing() {
    let s = start().await;
    let document = s.document().await;
    let make = |env: &'static str| {
        s.demo.manager.create(
            NewKey::new(env, Owner::organization("acme"))
                .with_environment(env)
                .with_scopes(["api_keys:write"]),
            Actor::System("openapi test"),
        )
    };
    let tester = make("test").await.unwrap();
    let tester = tester.key.expose_secret().to_owned();
    let live_id = make("live").await.unwrap().record.id.to_string();
    let mut checked = 0;
    for (method, path, operation) in operations(&document) {
        if !path.starts_with("/v1/api_keys/{id}") {
            continue;
        }
        let not_found = &operation["responses"]["404"];
        let description = not_found["description"].as_str().unwrap_or_default();
        assert!(
            description.contains("another organization's or another environment's key"),
            "{method} {path}: {description}"
        );
        let mut bodies = Vec::new();
        for id in [live_id.as_str(), "AAAAAAAAAAA"] {
            let url = format!("{}{}", s.base, path.replace("{id}", id));
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut request = s.client.request(method, url).bearer_auth(&tester);
            if operation["requestBody"].is_object() {
                let body = if path.ends_with("/rotate") {
                    json!({})
                } else {
                    json!({"scopes": []})
                };
                request = request.json(&body);
            }
            let reply = request.send().await.unwrap();
            assert_eq!(reply.status(), StatusCode::NOT_FOUND, "{path} {id}");
            let mut body = reply.json::<Value>().await.unwrap();
            // Each request's own id, which says nothing about the key.
            body["error"].as_object_mut().unwrap().remove("request_id");
            bodies.push(body);
        }
        assert_eq!(bodies[0], bodies[1], "{method} {path}");
        checked += 1;
    }
    assert_eq!(checked, 4, "get, delete, patch and rotate");
}
