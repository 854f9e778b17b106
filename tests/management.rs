//! The key-management router (`ApiKeyAuth::management_routes`) over a real axum router,
//! nested under `/v1`, on the memory store, SQLite and PostgreSQL (when
//! `TOWER_API_KEY_TEST_POSTGRES_URL` is set): every operation, every refusal, pages
//! under concurrent inserts, each filter, and bad input.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;
use tower_api_key::clock::{Clock, ManualClock};
use tower_api_key::manage::{Actor, NewKey};
use tower_api_key::prelude::*;

const ADMIN_SCOPES: [&str; 5] = [
    "api_keys:read",
    "api_keys:write",
    "audit_log:read",
    "invoices:read",
    "invoices:write",
];

fn scopes() -> ScopeModel {
    ScopeModel::builder()
        .resource("invoices", ["read", "write"])
        .action_implies("write", "read")
        .resource("api_keys", ["read", "write"])
        .scope("audit_log:read")
        .build()
        .unwrap()
}

fn format() -> KeyFormat {
    KeyFormat::new("inv")
        .unwrap()
        .with_environments(["live", "test"])
        .unwrap()
}

/// The router nested under `/v1`, a manual clock, and admin keys of `acme` and `globex`.
struct Api {
    router: Router,
    clock: ManualClock,
    acme: String,
    globex: String,
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
    fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
    #[track_caller]
    fn expect(self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        self.body
    }
}

async fn api<K: ManagedKeyStore>(store: K) -> Api {
    api_with(store, |b| b).await
}

async fn api_with<K, G>(
    store: K,
    configure: impl FnOnce(ApiKeyAuthBuilder<K>) -> ApiKeyAuthBuilder<K, G>,
) -> Api
where
    K: ManagedKeyStore,
    G: tower_api_key::auth::GuardRate,
    G::Layer: tower_api_key::management::RouteRate,
{
    let clock = ManualClock::new(time::macros::datetime!(2026-03-01 09:00 UTC));
    let auth = configure(
        ApiKeyAuth::builder(store)
            .clock(clock.clone())
            .format(format())
            .scopes(scopes()),
    )
    .build()
    .unwrap();
    let mut admins = Vec::new();
    for org in ["acme", "globex"] {
        let made = auth
            .manager()
            .create(
                NewKey::new(format!("{org} admin"), Owner::organization(org))
                    .with_environment("live")
                    .with_scopes(ADMIN_SCOPES),
                Actor::System("test"),
            )
            .await
            .unwrap();
        admins.push(made.key.expose_secret().to_owned());
    }
    let router = Router::new().nest("/v1", auth.management_routes().unwrap());
    Api {
        router,
        clock,
        globex: admins.pop().unwrap(),
        acme: admins.pop().unwrap(),
    }
}

impl Api {
    async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        self.raw(request).await
    }

    async fn raw(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, key: &str) -> Reply {
        self.send(Method::GET, path, Some(key), None).await
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(key), Some(body)).await
    }

    /// Creates a key with `with`: `(key, id)`.
    async fn create(&self, with: &str, body: Value) -> (String, String) {
        let made = self
            .post("/v1/api_keys", with, body)
            .await
            .expect(StatusCode::CREATED);
        (
            made["key"].as_str().unwrap().to_owned(),
            made["id"].as_str().unwrap().to_owned(),
        )
    }

    /// An acme key of `environment` with `scopes`, made by the acme admin.
    async fn key(&self, scopes: &[&str], environment: &str) -> (String, String) {
        self.create(
            &self.acme,
            json!({"name": "k", "scopes": scopes, "environment": environment}),
        )
        .await
    }

    /// Every key the acme admin sees, by id, walking every page.
    async fn all_ids(&self, query: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/api_keys?limit=3{query}");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let page = self.get(&path, &self.acme).await.expect(StatusCode::OK);
            ids.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| k["id"].as_str().unwrap().to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return ids,
            }
        }
    }
}

/// Runs `$case(Api)` on the memory store, SQLite and PostgreSQL.
macro_rules! on_every_store {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory() {
                    super::$case(api(MemoryStore::new()).await).await;
                }

                #[cfg(feature = "sqlite")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let db = support::stores::TempDb::new().await;
                    super::$case(api(db.store.clone()).await).await;
                }

                #[cfg(feature = "postgres")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(db) = support::stores::TestSchema::new().await else {
                        return;
                    };
                    super::$case(api(db.store.clone()).await).await;
                }
            }
        )*
    };
}

on_every_store!(
    every_operation,
    scopes_guard_each_operation,
    other_owners_and_environments_are_missing,
    revoked_keys_conflict,
    an_expiring_key_mints_nothing_permanent,
    a_rotated_away_key_manages_nothing,
    pages_hold_under_concurrent_inserts,
    filters,
    bad_input_is_400_never_500,
    renames_change_the_name_alone_with_the_scope_rules,
);

/// `PATCH {"name": …}` renames (audited, the scopes untouched); the name is checked as
/// at creation; a key lacking the target's scopes, another owner's admin and a revoked
/// key are refused; `name` and `scopes` together, neither, or a `null` are 400.
async fn renames_change_the_name_alone_with_the_scope_rules(s: Api) {
    let (_, id) = s.key(&["invoices:read"], "live").await;
    let path = format!("/v1/api_keys/{id}");
    let patch = |key: &str, body: Value| {
        let (path, key) = (path.clone(), key.to_owned());
        let s = &s;
        async move { s.send(Method::PATCH, &path, Some(&key), Some(body)).await }
    };
    let renamed = patch(&s.acme, json!({"name": "Nightly export"}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(renamed["name"], "Nightly export");
    assert_eq!(renamed["scopes"], json!(["invoices:read"]));
    let fetched = s.get(&path, &s.acme).await.expect(StatusCode::OK);
    assert_eq!(fetched["name"], "Nightly export");
    let log = s
        .get(&format!("/v1/audit_log?api_key_id={id}"), &s.acme)
        .await
        .expect(StatusCode::OK);
    assert!(
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "api_key.renamed"),
        "{log}"
    );

    for body in [
        json!({"name": "   "}),
        json!({"name": "x".repeat(101)}),
        json!({"name": "tab\tinside"}),
        json!({"name": "a", "scopes": []}),
        json!({}),
        json!({"name": null}),
    ] {
        let reply = patch(&s.acme, body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
    }
    // A writer without the key's scopes renames nothing; another owner's admin finds
    // no key.
    let (writer, _) = s.key(&["api_keys:write"], "live").await;
    let reply = patch(&writer, json!({"name": "mine now"})).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = patch(&s.globex, json!({"name": "mine now"})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let unchanged = s.get(&path, &s.acme).await.expect(StatusCode::OK);
    assert_eq!(
        unchanged["name"], "Nightly export",
        "a refusal changes nothing"
    );

    s.send(Method::DELETE, &path, Some(&s.acme), None).await;
    let reply = patch(&s.acme, json!({"name": "after revocation"})).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
}

async fn every_operation(s: Api) {
    // Create: 201, the secret once.
    let made = s
        .post(
            "/v1/api_keys",
            &s.acme,
            json!({"name": "ci-deploy", "scopes": ["invoices:read"]}),
        )
        .await
        .expect(StatusCode::CREATED);
    let key = made["key"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(
        key.starts_with("inv_live_"),
        "the caller's environment: {key}"
    );
    assert!(key.starts_with(made["prefix"].as_str().unwrap()));
    assert_eq!(made["name"], "ci-deploy");
    assert_eq!(made["status"], "active");
    assert_eq!(made["scopes"], json!(["invoices:read"]));
    assert_eq!(made["expires_at"], Value::Null);

    // Get: the key, never its secret.
    let got = s
        .get(&format!("/v1/api_keys/{id}"), &s.acme)
        .await
        .expect(StatusCode::OK);
    assert_eq!(got["id"], id.as_str());
    assert!(got.get("key").is_none());
    assert!(!got.to_string().contains(&key[12..]), "a secret in {got}");
    assert_eq!(got["created_by"], made["created_by"]);

    // List: the admin and the new key, newest first.
    let list = s.get("/v1/api_keys", &s.acme).await.expect(StatusCode::OK);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(list["next_cursor"], Value::Null);
    assert!(!list.to_string().contains(&key[12..]));

    // Update: new scopes.
    let updated = s
        .send(
            Method::PATCH,
            &format!("/v1/api_keys/{id}"),
            Some(&s.acme),
            Some(json!({"scopes": ["invoices:write"]})),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(updated["scopes"], json!(["invoices:write"]));

    // Rotate with a grace period: the old key is in grace, the new one active.
    let rotated = s
        .post(
            &format!("/v1/api_keys/{id}/rotate"),
            &s.acme,
            json!({"grace_seconds": 60}),
        )
        .await
        .expect(StatusCode::CREATED);
    let successor = rotated["id"].as_str().unwrap().to_owned();
    assert_ne!(successor, id);
    assert_eq!(rotated["name"], "ci-deploy");
    assert_eq!(rotated["scopes"], json!(["invoices:write"]));
    assert!(rotated["key"].as_str().unwrap().starts_with("inv_live_"));
    let old = s
        .get(&format!("/v1/api_keys/{id}"), &s.acme)
        .await
        .expect(StatusCode::OK);
    assert_eq!(old["status"], "in_grace");
    assert_eq!(old["superseded_by"], successor.as_str());
    assert!(old["grace_ends_at"].is_string());
    s.clock.advance(Duration::from_secs(60));
    let old = s
        .get(&format!("/v1/api_keys/{id}"), &s.acme)
        .await
        .expect(StatusCode::OK);
    assert_eq!(old["status"], "expired", "grace over");

    // Revoke: 204, then the key is gone (404) but listed as revoked.
    let revoked = s
        .send(
            Method::DELETE,
            &format!("/v1/api_keys/{successor}"),
            Some(&s.acme),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let gone = s.get(&format!("/v1/api_keys/{successor}"), &s.acme).await;
    assert_eq!(
        (gone.status, gone.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    assert_eq!(gone.message(), "The key was revoked");
    let list = s
        .get("/v1/api_keys?status=revoked", &s.acme)
        .await
        .expect(StatusCode::OK);
    assert_eq!(list["items"][0]["id"], successor.as_str());
    // Revoking again changes nothing and still answers 204.
    let again = s
        .send(
            Method::DELETE,
            &format!("/v1/api_keys/{successor}"),
            Some(&s.acme),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);

    // The audit log: every change, newest first, with the acting key.
    let log = s.get("/v1/audit_log", &s.acme).await.expect(StatusCode::OK);
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "api_key.revoked",
            "api_key.created",
            "api_key.rotated",
            "api_key.scopes_changed",
            "api_key.created",
            "api_key.created",
        ]
    );
    assert_eq!(log["items"][0]["actor"]["kind"], "key");
    let for_key = s
        .get(&format!("/v1/audit_log?api_key_id={id}&limit=2"), &s.acme)
        .await
        .expect(StatusCode::OK);
    let actions: Vec<&str> = for_key["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["api_key.rotated", "api_key.scopes_changed"]);
    // Another organization's log holds none of it.
    let theirs = s
        .get("/v1/audit_log", &s.globex)
        .await
        .expect(StatusCode::OK);
    assert!(!theirs.to_string().contains(&id));
}

async fn scopes_guard_each_operation(s: Api) {
    let (_, target) = s.key(&[], "live").await;
    let (reader, _) = s.key(&["api_keys:read"], "live").await;
    // A read-only key reads…
    s.get("/v1/api_keys", &reader).await.expect(StatusCode::OK);
    s.get(&format!("/v1/api_keys/{target}"), &reader)
        .await
        .expect(StatusCode::OK);
    // …and writes nothing: the route's guard refuses before the manager is asked.
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/api_keys".to_owned(),
            Some(json!({"name": "x"})),
        ),
        (
            Method::PATCH,
            format!("/v1/api_keys/{target}"),
            Some(json!({"scopes": []})),
        ),
        (Method::DELETE, format!("/v1/api_keys/{target}"), None),
        (Method::POST, format!("/v1/api_keys/{target}/rotate"), None),
    ] {
        let reply = s.send(method.clone(), &path, Some(&reader), body).await;
        assert_eq!(
            (reply.status, reply.code(), reply.message()),
            (
                StatusCode::FORBIDDEN,
                "permission_denied",
                "Required scope: api_keys:write"
            ),
            "{method} {path}"
        );
        assert!(reply.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope"));
    }
    // The audit log needs its own scope.
    let denied = s.get("/v1/audit_log", &reader).await;
    assert_eq!(
        (denied.status, denied.message()),
        (StatusCode::FORBIDDEN, "Required scope: audit_log:read")
    );
    // No key, or a revoked one: 401 on every route.
    let missing = s.send(Method::GET, "/v1/api_keys", None, None).await;
    assert_eq!(
        (missing.status, missing.code()),
        (StatusCode::UNAUTHORIZED, "authentication_required")
    );
    // A writer grants only what it holds.
    let (writer, _) = s.key(&["api_keys:write"], "live").await;
    let escalation = s
        .post(
            "/v1/api_keys",
            &writer,
            json!({"name": "x", "scopes": ["invoices:read"]}),
        )
        .await;
    assert_eq!(
        (escalation.status, escalation.message()),
        (
            StatusCode::FORBIDDEN,
            "Cannot grant scope invoices:read: the acting key does not hold it"
        )
    );
    // …and turns on no key stronger than itself.
    let admin_id = s.get("/v1/api_keys?name_prefix=acme", &s.acme).await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stronger = s
        .post(
            &format!("/v1/api_keys/{admin_id}/rotate"),
            &writer,
            json!({}),
        )
        .await;
    assert_eq!(stronger.status, StatusCode::FORBIDDEN, "{}", stronger.body);
}

async fn other_owners_and_environments_are_missing(s: Api) {
    let (live_key, live) = s.key(&["invoices:read"], "live").await;
    let (tester, _) = s.key(&["api_keys:write", "invoices:read"], "test").await;
    let (_, test) = s.key(&["invoices:read"], "test").await;
    let not_found = |reply: &Reply| {
        (
            reply.status,
            reply.code().to_owned(),
            reply.message().to_owned(),
        )
    };
    let expected = (
        StatusCode::NOT_FOUND,
        "not_found".to_owned(),
        "No such key".to_owned(),
    );
    for (caller, hidden) in [(&tester, &live), (&s.globex, &live), (&s.globex, &test)] {
        for id in [
            hidden.as_str(),
            "AAAAAAAAAAA",
            "not-an-id-because-it-is-far-too-long",
        ] {
            let path = format!("/v1/api_keys/{id}");
            for (method, path, body) in [
                (Method::GET, path.clone(), None),
                (Method::DELETE, path.clone(), None),
                (Method::PATCH, path.clone(), Some(json!({"scopes": []}))),
                (Method::POST, format!("{path}/rotate"), Some(json!({}))),
            ] {
                let reply = s.send(method.clone(), &path, Some(caller), body).await;
                assert_eq!(not_found(&reply), expected, "{method} {path}");
            }
        }
    }
    // Nothing was changed: the live key is active and unrotated.
    let live_now = s
        .get(&format!("/v1/api_keys/{live}"), &s.acme)
        .await
        .expect(StatusCode::OK);
    assert_eq!(live_now["status"], "active");
    assert_eq!(live_now["scopes"], json!(["invoices:read"]));
    let _ = live_key;
    // Lists show neither: globex sees its own admin only, the test key test keys only.
    let theirs = s
        .get("/v1/api_keys", &s.globex)
        .await
        .expect(StatusCode::OK);
    assert_eq!(theirs["items"].as_array().unwrap().len(), 1);
    let tests = s.get("/v1/api_keys", &tester).await.expect(StatusCode::OK);
    assert!(tests["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["environment"] == "test"));
    assert_eq!(tests["items"].as_array().unwrap().len(), 2);
    // Asking for live keys is an empty page, not an error.
    let asked = s
        .get("/v1/api_keys?environment=live", &tester)
        .await
        .expect(StatusCode::OK);
    assert_eq!(asked["items"], json!([]));
    // A test key cannot create a live key: 403, naming the rule.
    let live_made = s
        .post(
            "/v1/api_keys",
            &tester,
            json!({"name": "x", "environment": "live", "scopes": []}),
        )
        .await;
    assert_eq!(
        (live_made.status, live_made.message()),
        (
            StatusCode::FORBIDDEN,
            "A test key can only act on test keys"
        )
    );
    // Positive control: it reads and makes test keys.
    s.get(&format!("/v1/api_keys/{test}"), &tester)
        .await
        .expect(StatusCode::OK);
    let (made, _) = s.create(&tester, json!({"name": "x", "scopes": []})).await;
    assert!(made.starts_with("inv_test_"));
}

async fn revoked_keys_conflict(s: Api) {
    let (_, id) = s.key(&["invoices:read"], "live").await;
    let revoked = s
        .send(
            Method::DELETE,
            &format!("/v1/api_keys/{id}"),
            Some(&s.acme),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    for (method, path, body) in [
        (
            Method::POST,
            format!("/v1/api_keys/{id}/rotate"),
            Some(json!({"grace_seconds": 0})),
        ),
        (
            Method::PATCH,
            format!("/v1/api_keys/{id}"),
            Some(json!({"scopes": []})),
        ),
    ] {
        let reply = s.send(method.clone(), &path, Some(&s.acme), body).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::CONFLICT, "conflict"),
            "{method} {path}"
        );
    }
    // Rotating twice: the second is 409 too.
    let (_, other) = s.key(&[], "live").await;
    let path = format!("/v1/api_keys/{other}/rotate");
    s.post(&path, &s.acme, json!({"grace_seconds": 3600}))
        .await
        .expect(StatusCode::CREATED);
    let twice = s.post(&path, &s.acme, json!({})).await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
}

async fn an_expiring_key_mints_nothing_permanent(s: Api) {
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let limit = rfc3339(s.clock.now() + time::Duration::minutes(2));
    let (short, short_id) = s
        .create(
            &s.acme,
            json!({"name": "two minutes", "scopes": ["api_keys:write", "invoices:read"], "expires_at": limit}),
        )
        .await;
    let (_, permanent) = s.key(&["invoices:read"], "live").await;
    let outlives = format!("The new key would outlive the acting key (which expires {limit})");
    for body in [
        json!({"name": "forever", "scopes": ["invoices:read"]}),
        json!({"name": "later", "scopes": [], "expires_at": rfc3339(s.clock.now() + time::Duration::days(1))}),
    ] {
        let reply = s.post("/v1/api_keys", &short, body.clone()).await;
        assert_eq!(
            (reply.status, reply.message()),
            (StatusCode::FORBIDDEN, outlives.as_str()),
            "{body}"
        );
    }
    let rotate = s
        .post(
            &format!("/v1/api_keys/{permanent}/rotate"),
            &short,
            json!({}),
        )
        .await;
    assert_eq!(
        (rotate.status, rotate.message()),
        (StatusCode::FORBIDDEN, outlives.as_str())
    );
    // Positive controls: a key expiring with it; rotating itself.
    let with_it = s
        .post(
            "/v1/api_keys",
            &short,
            json!({"name": "with it", "scopes": [], "expires_at": limit}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(with_it["expires_at"], limit.as_str());
    s.post(
        &format!("/v1/api_keys/{short_id}/rotate"),
        &short,
        json!({}),
    )
    .await
    .expect(StatusCode::CREATED);
}

async fn a_rotated_away_key_manages_nothing(s: Api) {
    let (old, old_id) = s.key(&ADMIN_SCOPES, "live").await;
    let rotated = s
        .post(
            &format!("/v1/api_keys/{old_id}/rotate"),
            &s.acme,
            json!({"grace_seconds": 3600}),
        )
        .await
        .expect(StatusCode::CREATED);
    let successor = rotated["key"].as_str().unwrap().to_owned();
    let successor_id = rotated["id"].as_str().unwrap().to_owned();
    let target = format!("/v1/api_keys/{successor_id}");
    let replaced = "The acting key was replaced by a rotation: it works until its grace \
                    period ends, but only its successor manages keys";
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/api_keys".to_owned(),
            Some(json!({"name": "x", "scopes": []})),
        ),
        (Method::POST, format!("{target}/rotate"), Some(json!({}))),
        (Method::DELETE, target.clone(), None),
        (Method::PATCH, target.clone(), Some(json!({"scopes": []}))),
        (Method::GET, target.clone(), None),
        (Method::GET, "/v1/api_keys".to_owned(), None),
        (Method::GET, "/v1/audit_log".to_owned(), None),
    ] {
        let reply = s.send(method.clone(), &path, Some(&old), body).await;
        assert_eq!(
            (reply.status, reply.message()),
            (StatusCode::FORBIDDEN, replaced),
            "{method} {path}"
        );
        // It still authenticates: the refusal is the manager's, with the Sunset header.
        assert!(reply.headers.contains_key("sunset"), "{method} {path}");
    }
    // The successor manages keys.
    s.get(&target, &successor).await.expect(StatusCode::OK);
}

async fn pages_hold_under_concurrent_inserts(s: Api) {
    let s = Arc::new(s);
    for i in 0..10 {
        s.create(
            &s.acme,
            json!({"name": format!("before {i}"), "scopes": []}),
        )
        .await;
    }
    // Keys made within one clock tick share created_at: the id orders them.
    s.clock.advance(Duration::from_secs(1));
    for i in 0..10 {
        s.create(
            &s.acme,
            json!({"name": format!("before tick {i}"), "scopes": []}),
        )
        .await;
    }
    let before: HashSet<String> = s.all_ids("").await.into_iter().collect();
    assert_eq!(before.len(), 21, "the admin and 20 keys");

    // Walk the pages while other tasks insert keys, some in the same tick as the keys
    // already listed, some later.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut page_count = 0;
    loop {
        let writer = {
            let s = Arc::clone(&s);
            let tick = page_count;
            tokio::spawn(async move {
                if tick % 2 == 1 {
                    s.clock.advance(Duration::from_millis(1));
                }
                for i in 0..3 {
                    s.create(
                        &s.acme,
                        json!({"name": format!("during {tick} {i}"), "scopes": []}),
                    )
                    .await;
                }
            })
        };
        let mut path = "/v1/api_keys?limit=4".to_owned();
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = s.get(&path, &s.acme).await.expect(StatusCode::OK);
        writer.await.unwrap();
        page_count += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 4);
        seen.extend(items.iter().map(|k| k["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a key listed twice: {seen:?}");
    let missed: Vec<&String> = before.iter().filter(|id| !unique.contains(id)).collect();
    assert!(missed.is_empty(), "keys skipped: {missed:?}");
    assert!(page_count >= 6, "{page_count} pages");
}

async fn filters(s: Api) {
    let (_, active) = s
        .create(&s.acme, json!({"name": "ci-active", "scopes": []}))
        .await;
    let (_, grace) = s
        .create(&s.acme, json!({"name": "ci-grace", "scopes": []}))
        .await;
    let (_, revoked) = s
        .create(&s.acme, json!({"name": "prod-revoked", "scopes": []}))
        .await;
    let soon = (s.clock.now() + time::Duration::seconds(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (_, expired) = s
        .create(
            &s.acme,
            json!({"name": "prod-expired", "scopes": [], "expires_at": soon}),
        )
        .await;
    let (_, test) = s
        .create(
            &s.acme,
            json!({"name": "ci-test", "scopes": [], "environment": "test"}),
        )
        .await;
    let successor = s
        .post(
            &format!("/v1/api_keys/{grace}/rotate"),
            &s.acme,
            json!({"grace_seconds": 3600}),
        )
        .await
        .expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.send(
        Method::DELETE,
        &format!("/v1/api_keys/{revoked}"),
        Some(&s.acme),
        None,
    )
    .await;
    s.clock.advance(Duration::from_secs(30));
    let admin = s.all_ids("&name_prefix=acme").await;
    assert_eq!(admin.len(), 1);
    let set = |ids: Vec<String>| ids.into_iter().collect::<HashSet<_>>();
    let of = |ids: &[&String]| ids.iter().map(|s| (*s).clone()).collect::<HashSet<_>>();
    assert_eq!(
        set(s.all_ids("&status=active").await),
        of(&[&active, &test, &successor, &admin[0]])
    );
    assert_eq!(set(s.all_ids("&status=in_grace").await), of(&[&grace]));
    assert_eq!(set(s.all_ids("&status=expired").await), of(&[&expired]));
    assert_eq!(set(s.all_ids("&status=revoked").await), of(&[&revoked]));
    assert_eq!(set(s.all_ids("&environment=test").await), of(&[&test]));
    assert_eq!(
        set(s.all_ids("&name_prefix=ci-").await),
        of(&[&active, &grace, &successor, &test])
    );
    assert_eq!(
        set(s
            .all_ids("&name_prefix=ci-&environment=live&status=active")
            .await),
        of(&[&active, &successor])
    );
    // A percent-encoded prefix decodes; one that matches nothing is an empty page.
    assert_eq!(
        set(s.all_ids("&name_prefix=prod%2Dexp").await),
        of(&[&expired])
    );
    assert!(s.all_ids("&name_prefix=nothing").await.is_empty());
    // Limits.
    let one = s
        .get("/v1/api_keys?limit=1", &s.acme)
        .await
        .expect(StatusCode::OK);
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    assert!(one["next_cursor"].is_string());
    let hundred = s
        .get("/v1/api_keys?limit=100", &s.acme)
        .await
        .expect(StatusCode::OK);
    assert_eq!(hundred["items"].as_array().unwrap().len(), 7);
    assert_eq!(hundred["next_cursor"], Value::Null);
}

async fn bad_input_is_400_never_500(s: Api) {
    let (_, id) = s.key(&[], "live").await;
    let cases: Vec<(Method, String, Option<&str>, &str, StatusCode)> = vec![
        (
            Method::POST,
            "/v1/api_keys".into(),
            Some("application/json"),
            "{",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/api_keys".into(),
            Some("application/json"),
            "null",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/api_keys".into(),
            Some("application/json"),
            "[]",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/api_keys".into(),
            Some("application/json"),
            r#"{"name": "x", "colour": 1}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/api_keys".into(),
            Some("application/json"),
            r#"{"name": "x", "scopes": null}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/api_keys".into(),
            Some("application/json"),
            r#"{"name": "x", "environment": null}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/api_keys".into(),
            Some("application/json"),
            r#"{"name": ""}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/api_keys".into(),
            Some("application/json"),
            r#"{"name": "x", "scopes": ["nope:read"]}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/api_keys".into(),
            Some("application/json"),
            r#"{"name": "x", "environment": "prod"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/api_keys".into(),
            Some("application/json"),
            r#"{"name": "x", "expires_at": "2000-01-01T00:00:00Z"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/api_keys".into(),
            Some("application/json"),
            r#"{"name": "x", "expires_at": "tomorrow"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/api_keys".into(),
            Some("text/plain"),
            r#"{"name": "x"}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Method::POST,
            "/v1/api_keys".into(),
            None,
            r#"{"name": "x"}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Method::PATCH,
            format!("/v1/api_keys/{id}"),
            Some("application/json"),
            r#"{"scopes": "all"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            format!("/v1/api_keys/{id}/rotate"),
            Some("application/json"),
            r#"{"grace_seconds": -1}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            format!("/v1/api_keys/{id}/rotate"),
            Some("application/json"),
            r#"{"grace_seconds": 31536001}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            format!("/v1/api_keys/{id}/rotate"),
            Some("application/json"),
            r#"{"grace_seconds": 1e300}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/api_keys?limit=0".into(),
            None,
            "",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/api_keys?limit=101".into(),
            None,
            "",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/api_keys?limit=ten".into(),
            None,
            "",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/api_keys?limit=1&limit=2".into(),
            None,
            "",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/api_keys?status=superseded".into(),
            None,
            "",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/api_keys?environment=prod".into(),
            None,
            "",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/api_keys?environment=pr%20od".into(),
            None,
            "",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/api_keys?cursor=garbage".into(),
            None,
            "",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/api_keys?cursor=%ff".into(),
            None,
            "",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/api_keys?name_prefix=%".into(),
            None,
            "",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/v1/api_keys?name_prefix={}", "x".repeat(101)),
            None,
            "",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/audit_log?api_key_id=no%20id".into(),
            None,
            "",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/audit_log?limit=1001".into(),
            None,
            "",
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, path, content_type, body, status) in cases {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(&path)
            .header("authorization", format!("Bearer {}", s.acme));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let reply = s
            .raw(request.body(Body::from(body.to_owned())).unwrap())
            .await;
        assert_eq!(
            reply.status, status,
            "{method} {path} {body}: {}",
            reply.body
        );
        assert!(!reply.message().is_empty(), "{method} {path} {body}");
    }
    // Too large.
    let big = json!({"name": "x".repeat(20_000)}).to_string();
    let reply = s
        .raw(
            Request::post("/v1/api_keys")
                .header("authorization", format!("Bearer {}", s.acme))
                .header("content-type", "application/json")
                .body(Body::from(big))
                .unwrap(),
        )
        .await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    // A cursor this API returned, of a key that no longer exists, still pages on.
    let cursor = s.get("/v1/api_keys?limit=1", &s.acme).await.body["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    s.get(&format!("/v1/api_keys?cursor={cursor}"), &s.acme)
        .await
        .expect(StatusCode::OK);
    // Rotation without a body, or with `null`: a grace of 0.
    let (_, a) = s.key(&[], "live").await;
    let reply = s
        .send(
            Method::POST,
            &format!("/v1/api_keys/{a}/rotate"),
            Some(&s.acme),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let (_, b) = s.key(&[], "live").await;
    s.post(&format!("/v1/api_keys/{b}/rotate"), &s.acme, Value::Null)
        .await
        .expect(StatusCode::CREATED);
    let old = s
        .get(&format!("/v1/api_keys/{b}"), &s.acme)
        .await
        .expect(StatusCode::OK);
    assert_eq!(old["status"], "expired", "grace 0 ends the old key at once");
}

#[tokio::test]
async fn refusals_answer_in_the_surface_style_with_the_request_id() {
    let s = api_with(MemoryStore::new(), |b| {
        b.responder(ErrorStyle::problem_json().with_request_id_in_body(true))
            .rate_limit("3/min".parse().unwrap())
    })
    .await;
    let request = || {
        Request::get("/v1/api_keys/AAAAAAAAAAA")
            .header("authorization", format!("Bearer {}", s.acme))
            .header("x-request-id", "req-42")
            .body(Body::empty())
            .unwrap()
    };
    let missing = s.raw(request()).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.headers["content-type"], "application/problem+json");
    assert_eq!(missing.headers["x-request-id"], "req-42");
    assert_eq!(missing.body["code"], "not_found");
    assert_eq!(missing.body["request_id"], "req-42");
    // The rate limit is the front door's, on these routes too.
    s.raw(request()).await;
    s.raw(request()).await;
    let limited = s.raw(request()).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.body["code"], "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn the_scopes_are_configurable_and_checked_when_built() {
    let model = ScopeModel::builder()
        .resource("invoices", ["read", "write"])
        .build()
        .unwrap();
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(format())
        .scopes(model)
        .build()
        .unwrap();
    let error = auth.management_routes::<()>().unwrap_err();
    assert!(error.to_string().contains("api_keys:read"), "{error}");
    assert!(
        auth.management()
            .with_read_scope("invoices:read")
            .with_write_scope("invoices:write")
            .routes::<()>()
            .is_err(),
        "the audit scope is still the default"
    );
    let routes: Router = auth
        .management()
        .with_read_scope("invoices:read")
        .with_write_scope("invoices:write")
        .with_audit_scope("invoices:write")
        .routes()
        .unwrap();
    let made = auth
        .manager()
        .create(
            NewKey::new("reader", Owner::organization("acme"))
                .with_environment("live")
                .with_scopes(["invoices:read"]),
            Actor::System("test"),
        )
        .await
        .unwrap();
    let app = Router::new().nest("/keys-api", routes);
    let call = |method: Method, path: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header(
                "authorization",
                format!("Bearer {}", made.key.expose_secret()),
            )
            .body(Body::empty())
            .unwrap()
    };
    let list = app
        .clone()
        .oneshot(call(Method::GET, "/keys-api/api_keys"))
        .await
        .unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    let audit = app
        .oneshot(call(Method::GET, "/keys-api/audit_log"))
        .await
        .unwrap();
    assert_eq!(audit.status(), StatusCode::FORBIDDEN);
}
