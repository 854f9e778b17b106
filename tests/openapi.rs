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

/// The status the operation documents for a scope refusal: the one response whose
/// reference says it answers `insufficient_scope` (each reference lists the outcomes
/// the operation answers at that status).
fn insufficient_scope_status(operation: &Value) -> StatusCode {
    let responses = operation["responses"].as_object().unwrap();
    let found: Vec<&String> = responses
        .iter()
        .filter(|(_, response)| {
            response["description"]
                .as_str()
                .is_some_and(|s| s.contains("insufficient_scope"))
        })
        .map(|(status, _)| status)
        .collect();
    assert_eq!(found.len(), 1, "one documented scope refusal: {found:?}");
    StatusCode::from_u16(found[0].parse().unwrap()).unwrap()
}

/// The component a `$ref` names (`#/components/responses/X`).
fn component<'a>(document: &'a Value, reference: &Value) -> &'a Value {
    let location = reference["$ref"]
        .as_str()
        .unwrap_or_else(|| panic!("a reference: {reference}"));
    let path = location
        .strip_prefix("#")
        .unwrap_or_else(|| panic!("a local reference: {location}"));
    document
        .pointer(path)
        .unwrap_or_else(|| panic!("{location} is in the document"))
}

#[tokio::test]
async fn every_documented_scope_is_enforced_exactly() {
    let s = start().await;
    let document = s.document().await;
    let model = app::scope_model().unwrap();
    let for_all: BTreeSet<&str> = model.granted_to_all().iter().map(String::as_str).collect();
    let operations = operations(&document);
    assert_eq!(operations.len(), 17, "every guarded route is documented");

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
    // 17 operations; the two that need only `session:read` have no key lacking it.
    assert_eq!((passed, refused), (17, 15));
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
    let unauthorized = component(&document, &session["responses"]["401"]);
    for header in ["www-authenticate", "x-request-id", "cache-control"] {
        assert!(
            unauthorized["headers"][header].is_object(),
            "401 documents {header}"
        );
    }
    let too_many = component(&document, &session["responses"]["429"]);
    for header in ["retry-after", "ratelimit", "ratelimit-policy"] {
        assert!(
            too_many["headers"][header].is_object(),
            "429 documents {header}"
        );
    }
    let unavailable = component(&document, &session["responses"]["503"]);
    assert!(unavailable["headers"]["retry-after"].is_object());

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

    // The shared 403 cannot name a route's scope: the operation's reference does, and
    // the answer to a key lacking it names the same scope, in the documented shape.
    let audit = &document["paths"]["/v1/audit_log"]["get"];
    let reference = &audit["responses"]["403"];
    assert!(
        reference["description"]
            .as_str()
            .unwrap()
            .contains("insufficient_scope, quota_exceeded). Required scopes: `audit_log:read`."),
        "{reference}"
    );
    assert_eq!(audit["x-required-scopes"], json!([["audit_log:read"]]));
    let forbidden = component(&document, reference);
    let shared =
        &forbidden["content"]["application/json"]["examples"]["insufficient_scope"]["value"];
    assert_eq!(shared["error"]["message"], "Required scope: <scope>");
    let key = s.key(&["api_keys:read"]).await;
    let reply = s
        .client
        .get(format!("{}/v1/audit_log", s.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::FORBIDDEN);
    let mut answered = reply.json::<Value>().await.unwrap();
    assert_eq!(
        answered["error"]["message"],
        "Required scope: audit_log:read"
    );
    assert_eq!(answered["error"]["code"], shared["error"]["code"]);
    // The same members as the example, the request id aside (each request has its own).
    answered["error"]
        .as_object_mut()
        .unwrap()
        .remove("request_id");
    let members = |v: &Value| {
        v["error"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(members(&answered), members(shared));
}

/// Documented once: every 4xx and 5xx of every operation is a `$ref` to a response in
/// the components, each surface's responses reference its one error schema, and the
/// document has exactly one error schema per surface (error style), so a generated
/// client has one error type per style instead of one per operation and status.
#[tokio::test]
async fn every_refusal_is_a_reference_to_one_shared_response_per_surface() {
    let s = start().await;
    let document = s.document().await;
    let mut referenced: BTreeSet<String> = BTreeSet::new();
    let mut refusals = 0;
    for (method, path, operation) in operations(&document) {
        let surface = if path.starts_with("/api/external/") {
            "ProductBridge"
        } else {
            "PerformanceBlocks"
        };
        for (status, response) in operation["responses"].as_object().unwrap() {
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            let label = format!("{} {path} {status}", method.to_uppercase());
            let location = response["$ref"]
                .as_str()
                .unwrap_or_else(|| panic!("{label} is a $ref: {response}"));
            let name = location
                .strip_prefix("#/components/responses/")
                .unwrap_or_else(|| panic!("{label}: {location}"));
            assert!(name.starts_with(surface), "{label}: {name}");
            // Only a reference's own description may sit beside it.
            let siblings: Vec<&String> = response
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "$ref" && *k != "description")
                .collect();
            assert!(siblings.is_empty(), "{label}: {siblings:?}");
            let shared = component(&document, response);
            for (content_type, media) in shared["content"].as_object().unwrap() {
                assert_eq!(
                    media["schema"],
                    json!({ "$ref": format!("#/components/schemas/{surface}Error") }),
                    "{label} {content_type}"
                );
            }
            referenced.insert(name.to_owned());
            refusals += 1;
        }
    }
    assert!(refusals > 80, "{refusals} refusals documented");
    // Every reference names a response the document has.
    let responses: BTreeSet<String> = document["components"]["responses"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(referenced.is_subset(&responses));
    // One error schema per style: the two surfaces' and no other (no demo-specific
    // error body, no per-operation copy).
    let errors: Vec<&String> = document["components"]["schemas"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|name| name.to_lowercase().contains("error"))
        .collect();
    assert_eq!(errors, ["PerformanceBlocksError", "ProductBridgeError"]);
    let mut schemas_used: BTreeSet<String> = BTreeSet::new();
    for response in document["components"]["responses"]
        .as_object()
        .unwrap()
        .values()
    {
        for media in response["content"].as_object().unwrap().values() {
            schemas_used.insert(media["schema"]["$ref"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        schemas_used,
        BTreeSet::from([
            "#/components/schemas/PerformanceBlocksError".to_owned(),
            "#/components/schemas/ProductBridgeError".to_owned(),
        ])
    );
    // Operation ids: present, unique; operations tagged.
    let mut ids = BTreeSet::new();
    for (method, path, operation) in operations(&document) {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(!id.is_empty(), "{method} {path} has an operationId");
        assert!(ids.insert(id.clone()), "{id} is unique");
        assert!(
            operation["tags"].as_array().is_some_and(|t| !t.is_empty()),
            "{method} {path} is tagged"
        );
    }
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
    assert_eq!(checked, 5, "get, delete, patch, rotate and usage");
}
