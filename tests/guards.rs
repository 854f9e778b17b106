//! Guards over real routers: stacked guards ("A and B") authenticate, audit and charge
//! a request once and refuse a key lacking either scope; `Guard::routes` (OpenAPI)
//! guards each handler on its own method only. Where a guard does not fit at all (a
//! `MethodRouter`, a `Router`), the router does not compile: `tests/compile_fail.rs`.

use axum::body::Body;
use axum::handler::Handler;
use axum::routing::{get, post};
use axum::Router;
use http::{Request, StatusCode};
use tower::ServiceExt;
use tower_api_key::audit::{Auditor, MemorySink};
use tower_api_key::auth::ApiKeyAuth;
use tower_api_key::clock::{Clock, ManualClock};
use tower_api_key::key::KeyFormat;
use tower_api_key::manage::{Actor, NewKey};
use tower_api_key::store::{KeyRecord, ManagedKeyStore, MemoryStore};
use tower_api_key::{Owner, Principal, ScopeModel};

fn scopes() -> ScopeModel {
    ScopeModel::builder()
        .resource("invoices", ["read", "write"])
        .resource("ledger", ["write"])
        .build()
        .unwrap()
}

fn format() -> KeyFormat {
    KeyFormat::new("inv")
        .unwrap()
        .with_environments(["live"])
        .unwrap()
}

async fn book(key: Principal) -> String {
    format!("booked by {}", key.key_id())
}

async fn call(app: &Router, method: &str, path: &str, key: Option<&str>) -> StatusCode {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    app.clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
        .status()
}

async fn key<R: Clone>(auth: &ApiKeyAuth<MemoryStore, R>, scopes: &[&str]) -> String {
    let created = auth
        .manager()
        .create(
            NewKey::new(scopes.join(" "), Owner::organization("acme"))
                .with_environment("live")
                .with_scopes(scopes.iter().copied()),
            Actor::System("test"),
        )
        .await
        .unwrap();
    created.key.expose_secret().to_owned()
}

#[tokio::test]
async fn stacked_guards_charge_the_rate_limit_once_per_request() {
    let clock = ManualClock::default();
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(format())
        .scopes(scopes())
        .clock(clock.clone())
        .rate_limit("10/min".parse().unwrap())
        .build()
        .unwrap();
    // "invoices:write AND ledger:write", written as two guards.
    let app = Router::new().route(
        "/book",
        post(
            book.layer(auth.guard("invoices:write").unwrap())
                .layer(auth.guard("ledger:write").unwrap()),
        ),
    );
    let both = key(&auth, &["invoices:write", "ledger:write"]).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(call(&app, "POST", "/book", Some(&both)).await);
    }
    let admitted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((admitted, limited), (10, 2), "{statuses:?}");

    // Either scope alone is refused, by the inner guard or by the outer one.
    for lacking_one in [&["invoices:write"][..], &["ledger:write"][..]] {
        let key = key(&auth, lacking_one).await;
        assert_eq!(
            call(&app, "POST", "/book", Some(&key)).await,
            StatusCode::FORBIDDEN,
            "{lacking_one:?}"
        );
    }
    assert_eq!(
        call(&app, "POST", "/book", None).await,
        StatusCode::UNAUTHORIZED
    );
}

/// The front door's layer over the whole router and a guard on the handler: the
/// layer authenticates, the guard's limit still charges every request (once). Found
/// already authenticated, a guard must not take that for "already charged".
#[tokio::test]
async fn a_guard_behind_the_front_doors_layer_still_charges() {
    let clock = ManualClock::default();
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(format())
        .scopes(scopes())
        .clock(clock.clone())
        .rate_limit("3/min".parse().unwrap())
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/book",
            post(book.layer(auth.guard("invoices:write").unwrap())),
        )
        .layer(auth.layer());
    let writer = key(&auth, &["invoices:write"]).await;
    let mut admitted = 0;
    for _ in 0..10 {
        if call(&app, "POST", "/book", Some(&writer)).await == StatusCode::OK {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3);
}

#[tokio::test]
async fn stacked_guards_authenticate_and_audit_a_request_once() {
    let sink = MemorySink::new();
    let auditor = Auditor::spawn(sink.clone(), 64);
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(format())
        .scopes(scopes())
        .audit_requests(auditor.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/book",
            post(
                book.layer(auth.guard("invoices:write").unwrap())
                    .layer(auth.guard("ledger:write").unwrap()),
            ),
        )
        // The authentication layer of the same `ApiKeyAuth` in front of a guard.
        .route(
            "/behind",
            post(book.layer(auth.guard("invoices:write").unwrap())),
        )
        .route_layer(auth.layer());
    let both = key(&auth, &["invoices:write", "ledger:write"]).await;
    for path in ["/book", "/behind"] {
        assert_eq!(call(&app, "POST", path, Some(&both)).await, StatusCode::OK);
    }
    auditor.flush().await;
    let audited: Vec<(Option<String>, Option<u16>)> = sink
        .entries()
        .into_iter()
        .map(|entry| (entry.path, entry.status))
        .collect();
    assert_eq!(
        audited,
        [
            (Some("/book".to_owned()), Some(200)),
            (Some("/behind".to_owned()), Some(200)),
        ]
    );
}

#[tokio::test]
async fn stacked_guards_admit_a_key_the_first_one_hid() {
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(format())
        .scopes(scopes())
        // The outer guard takes the key out of the request: a second authentication
        // would find none.
        .configure(|layer| Ok(layer.with_hide_credentials(true)))
        .build()
        .unwrap();
    let app = Router::new().route(
        "/book",
        post(
            book.layer(auth.guard("invoices:write").unwrap())
                .layer(auth.guard("ledger:write").unwrap()),
        ),
    );
    let both = key(&auth, &["invoices:write", "ledger:write"]).await;
    assert_eq!(
        call(&app, "POST", "/book", Some(&both)).await,
        StatusCode::OK
    );
    let only_one = key(&auth, &["ledger:write"]).await;
    assert_eq!(
        call(&app, "POST", "/book", Some(&only_one)).await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn guards_of_two_auths_each_authenticate_and_charge() {
    let clock = ManualClock::default();
    let build = |store: &MemoryStore, limit: &str| {
        ApiKeyAuth::builder(store.clone())
            .format(format())
            .scopes(scopes())
            .clock(clock.clone())
            .rate_limit(limit.parse().unwrap())
            .build()
            .unwrap()
    };
    // Two stores that both know one key, and a third that does not.
    let (known_outer, known_inner) = (MemoryStore::new(), MemoryStore::new());
    let minted = format().generate(Some("live")).unwrap();
    let record = KeyRecord::new(
        &minted,
        "in both",
        Owner::organization("acme"),
        vec!["invoices:write".to_owned()],
        clock.now(),
    );
    for store in [&known_outer, &known_inner] {
        store.insert(&record).await.unwrap();
    }
    let key = minted.key.expose_secret().to_owned();
    let outer = build(&known_outer, "10/min");
    let inner = build(&known_inner, "3/min");
    let elsewhere = build(&MemoryStore::new(), "10/min");
    let app = Router::new()
        .route(
            "/book",
            post(
                book.layer(inner.guard("invoices:write").unwrap())
                    .layer(outer.guard("invoices:write").unwrap()),
            ),
        )
        .route(
            "/elsewhere",
            post(
                book.layer(elsewhere.guard("invoices:write").unwrap())
                    .layer(outer.guard("invoices:write").unwrap()),
            ),
        );
    // The inner guard's own limit (3/min) holds: its charge was not skipped.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(call(&app, "POST", "/book", Some(&key)).await);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // A key of the outer guard's store is unknown to the inner guard's: the inner
    // guard authenticated it again.
    assert_eq!(
        call(&app, "POST", "/elsewhere", Some(&key)).await,
        StatusCode::UNAUTHORIZED
    );
}

#[cfg(feature = "utoipa")]
mod openapi {
    use super::*;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;

    /// The invoices.
    #[utoipa::path(get, path = "/invoices", responses((status = 200, body = String)))]
    async fn list() -> &'static str {
        "the invoices"
    }

    /// Creates an invoice.
    #[utoipa::path(post, path = "/invoices", responses((status = 200, body = String)))]
    async fn create() -> &'static str {
        "created"
    }

    #[tokio::test]
    async fn each_handler_is_guarded_on_its_own_method() {
        let auth = ApiKeyAuth::builder(MemoryStore::new())
            .format(format())
            .scopes(scopes())
            .build()
            .unwrap();
        let (app, document) = OpenApiRouter::new()
            .routes(
                auth.guard("invoices:read")
                    .unwrap()
                    .routes(routes!(list), list)
                    .unwrap(),
            )
            .routes(
                auth.guard("invoices:write")
                    .unwrap()
                    .routes(routes!(create), create)
                    .unwrap(),
            )
            .split_for_parts();
        let json = serde_json::to_value(&document).unwrap();
        assert_eq!(
            json["paths"]["/invoices"]["get"]["x-required-scopes"],
            serde_json::json!([["invoices:read"]])
        );
        assert_eq!(
            json["paths"]["/invoices"]["post"]["x-required-scopes"],
            serde_json::json!([["invoices:write"]])
        );

        let reader = key(&auth, &["invoices:read"]).await;
        assert_eq!(
            call(&app, "GET", "/invoices", Some(&reader)).await,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, "POST", "/invoices", Some(&reader)).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call(&app, "GET", "/invoices", None).await,
            StatusCode::UNAUTHORIZED
        );
        // Only the documented methods are routed.
        assert_eq!(
            call(&app, "DELETE", "/invoices", Some(&reader)).await,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    /// The invoices' totals, for `GET` and `HEAD`.
    #[utoipa::path(method(get, head), path = "/totals", responses((status = 200, body = String)))]
    async fn totals() -> &'static str {
        "the totals"
    }

    #[tokio::test]
    async fn a_handler_documented_for_two_methods_is_guarded_on_both() {
        let auth = ApiKeyAuth::builder(MemoryStore::new())
            .format(format())
            .scopes(scopes())
            .build()
            .unwrap();
        let (app, _) = OpenApiRouter::new()
            .routes(
                auth.guard("invoices:read")
                    .unwrap()
                    .routes(routes!(totals), totals)
                    .unwrap(),
            )
            .split_for_parts();
        let reader = key(&auth, &["invoices:read"]).await;
        for method in ["GET", "HEAD"] {
            assert_eq!(
                call(&app, method, "/totals", None).await,
                StatusCode::UNAUTHORIZED
            );
            assert_eq!(
                call(&app, method, "/totals", Some(&reader)).await,
                StatusCode::OK
            );
        }
        assert_eq!(
            call(&app, "POST", "/totals", Some(&reader)).await,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn one_guard_over_two_handlers_is_refused() {
        let auth = ApiKeyAuth::builder(MemoryStore::new())
            .format(format())
            .scopes(scopes())
            .build()
            .unwrap();
        let guard = auth.guard("invoices:read").unwrap();
        let Err(error) = guard.routes::<_, _, ()>(routes!(list, create), list) else {
            panic!("one guard was put over two handlers");
        };
        assert!(error.message().contains("one handler"), "{error}");
    }
}

/// A guard on one handler leaves the route's other methods as they are: here `GET`
/// is public on purpose, and a read-only key cannot `POST`.
#[tokio::test]
async fn a_guard_covers_only_its_handlers_method() {
    let auth = ApiKeyAuth::builder(MemoryStore::new())
        .format(format())
        .scopes(scopes())
        .build()
        .unwrap();
    let app = Router::new().route(
        "/invoices",
        get(|| async { "public" }).post(book.layer(auth.guard("invoices:write").unwrap())),
    );
    let reader = key(&auth, &["invoices:read"]).await;
    assert_eq!(call(&app, "GET", "/invoices", None).await, StatusCode::OK);
    assert_eq!(
        call(&app, "POST", "/invoices", Some(&reader)).await,
        StatusCode::FORBIDDEN
    );
}
