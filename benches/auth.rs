//! In-process cost of authentication, side by side with no authentication.
//!
//! Run with `cargo bench --bench auth`. Every group measures its variants in the same
//! run, so read ratios, not absolute times (see BENCHMARKS.md).

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::FromRequest;
use axum::Json;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::FutureExt;
use http::{Request, Response};
use serde_json::Value;
use tower::{Layer, Service, ServiceBuilder};
use tower_api_key::credentials::KeySources;
use tower_api_key::key::KeyFormat;
use tower_api_key::parts::{AuthenticateLayer, KeyVerifier};
use tower_api_key::rate_limit::{Limits, RateLimitLayer};
use tower_api_key::require_scopes::RequireScopesLayer;
use tower_api_key::store::{CachedStore, KeyRecord, ManagedKeyStore, MemoryStore, Owner};

fn format() -> KeyFormat {
    KeyFormat::new("pb")
        .unwrap()
        .with_environments(["live", "test"])
        .unwrap()
}

async fn ok(_req: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::empty()))
}

struct Setup {
    store: CachedStore<MemoryStore>,
    key: String,
}

/// A store with `population` keys, all cached, and one of them to present.
fn setup(rt: &tokio::runtime::Runtime, population: usize) -> Setup {
    rt.block_on(async {
        let memory = MemoryStore::new();
        let store = CachedStore::builder(memory.clone())
            .with_ttl(Duration::from_secs(3600))
            .with_max_entries(2_000_000)
            .with_max_bytes(4 * 1024 * 1024 * 1024)
            .build()
            .unwrap();
        let f = format();
        let now = time::OffsetDateTime::now_utc();
        let mut key = String::new();
        for i in 0..population {
            let minted = f.generate(Some("live")).unwrap();
            let record = KeyRecord::new(
                &minted,
                "bench",
                Owner::organization("acme"),
                vec!["session:read".into()],
                now,
            );
            memory.insert(&record).await.unwrap();
            store.lookup_id(&minted.id).await.unwrap();
            if i == population / 2 {
                key = minted.key.expose_secret().to_owned();
            }
        }
        Setup { store, key }
    })
}

fn bearer_request(key: &str) -> Request<Body> {
    Request::get("/v1/ping")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap()
}

/// Calls a service whose future completes without waiting (every path here but the
/// cache miss), polling it once.
fn call_now<S>(svc: &mut S, req: Request<Body>) -> S::Response
where
    S: Service<Request<Body>>,
    S::Error: std::fmt::Debug,
{
    svc.call(req)
        .now_or_never()
        .expect("completes without waiting")
        .unwrap()
}

fn cache_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = setup(&rt, 1_000);
    let mut bare = tower::service_fn(ok);
    #[allow(deprecated)]
    let mut static_token = tower_http::validate_request::ValidateRequestHeaderLayer::bearer(&s.key)
        .layer(tower::service_fn(ok));
    let model = tower_api_key::presets::performance_blocks::scope_model();
    // The full path: Bearer extraction, checksum, SHA-256, cache hit, clock checks and
    // a one-scope guard.
    let mut layered = ServiceBuilder::new()
        .layer(
            AuthenticateLayer::new(KeyVerifier::new(s.store.clone(), format()))
                .with_scope_model(model.clone()),
        )
        .layer(RequireScopesLayer::new(&model, "session:read").unwrap())
        .service(tower::service_fn(ok));

    let mut group = c.benchmark_group("cache_hit");
    group.bench_function("no_auth", |b| {
        b.iter(|| black_box(call_now(&mut bare, bearer_request(&s.key))))
    });
    group.bench_function("tower_http_static_bearer", |b| {
        b.iter(|| black_box(call_now(&mut static_token, bearer_request(&s.key))))
    });
    group.bench_function("api_key_layer", |b| {
        b.iter(|| {
            let response = call_now(&mut layered, bearer_request(&s.key));
            assert_eq!(response.status(), 200);
            black_box(response)
        })
    });
    group.finish();
}

fn refusals(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = setup(&rt, 1_000);
    let mut layered = AuthenticateLayer::new(KeyVerifier::new(s.store.clone(), format()))
        .layer(tower::service_fn(ok));
    let mut typo = s.key.clone();
    let last = if typo.ends_with('0') { "1" } else { "0" };
    typo.replace_range(typo.len() - 1.., last);
    let unknown = format().generate(Some("live")).unwrap();
    let unknown = unknown.key.expose_secret().to_owned();
    // Warm the negative entry.
    let _ = call_now_or_block(&rt, &mut layered, bearer_request(&unknown));

    let mut group = c.benchmark_group("refusals");
    group.bench_function("checksum_failure", |b| {
        b.iter(|| black_box(call_now(&mut layered, bearer_request(&typo))))
    });
    group.bench_function("unknown_negative_hit", |b| {
        b.iter(|| black_box(call_now(&mut layered, bearer_request(&unknown))))
    });
    group.finish();
}

fn call_now_or_block<S>(
    rt: &tokio::runtime::Runtime,
    svc: &mut S,
    req: Request<Body>,
) -> S::Response
where
    S: Service<Request<Body>>,
    S::Error: std::fmt::Debug,
{
    rt.block_on(svc.call(req)).unwrap()
}

fn cache_miss(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = setup(&rt, 1_000);
    let mut layered = AuthenticateLayer::new(KeyVerifier::new(s.store.clone(), format()))
        .layer(tower::service_fn(ok));
    let id = match format().parse(&s.key) {
        Some(tower_api_key::key::Presented::Native(p)) => *p.id(),
        _ => unreachable!(),
    };
    let mut bare = tower::service_fn(ok);

    let mut group = c.benchmark_group("cache_miss");
    group.bench_function("no_auth", |b| {
        b.iter(|| black_box(call_now_or_block(&rt, &mut bare, bearer_request(&s.key))))
    });
    group.bench_function("api_key_layer_memory_store", |b| {
        b.iter(|| {
            s.store.invalidate(&id);
            let response = call_now_or_block(&rt, &mut layered, bearer_request(&s.key));
            assert_eq!(response.status(), 200);
            black_box(response)
        })
    });
    group.finish();
}

fn population(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("population");
    group.sample_size(50);
    for size in [1_000usize, 100_000, 1_000_000] {
        let s = setup(&rt, size);
        let mut layered = AuthenticateLayer::new(KeyVerifier::new(s.store.clone(), format()))
            .layer(tower::service_fn(ok));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| black_box(call_now(&mut layered, bearer_request(&s.key))))
        });
    }
    group.finish();
}

fn json_body(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = setup(&rt, 1_000);
    let mut layered = AuthenticateLayer::new(KeyVerifier::new(s.store.clone(), format()))
        .with_sources(KeySources::json_body())
        .layer(tower::service_fn(ok));

    let mut group = c.benchmark_group("json_body");
    for size in [1024usize, 64 * 1024] {
        let pad = "x".repeat(size.saturating_sub(100));
        let body = Bytes::from(format!(
            r#"{{"limit":25,"title":"{pad}","api_key":"{}"}}"#,
            s.key
        ));
        group.throughput(Throughput::Bytes(body.len() as u64));
        let request = |body: &Bytes| {
            Request::post("/list")
                .header("content-type", "application/json")
                .body(Body::from(body.clone()))
                .unwrap()
        };
        group.bench_with_input(BenchmarkId::new("api_key_layer", size), &body, |b, body| {
            b.iter(|| {
                let response = call_now_or_block(&rt, &mut layered, request(body));
                assert_eq!(response.status(), 200);
                black_box(response)
            })
        });
        group.bench_with_input(
            BenchmarkId::new("axum_json_value", size),
            &body,
            |b, body| {
                b.iter(|| {
                    let req = request(body);
                    let Json(value) = rt.block_on(Json::<Value>::from_request(req, &())).unwrap();
                    black_box(value)
                })
            },
        );
    }
    group.finish();
}

fn rate_limiter(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = setup(&rt, 1_000);
    let auth = || AuthenticateLayer::new(KeyVerifier::new(s.store.clone(), format()));
    let mut without = auth().layer(tower::service_fn(ok));
    let limits = Limits::new("1000000000/s".parse().unwrap());
    let mut with = ServiceBuilder::new()
        .layer(auth())
        .layer(RateLimitLayer::new(limits.clone()))
        .service(tower::service_fn(ok));
    let record = rt.block_on(async {
        let id = match format().parse(&s.key) {
            Some(tower_api_key::key::Presented::Native(p)) => *p.id(),
            _ => unreachable!(),
        };
        s.store.lookup_id(&id).await.unwrap().unwrap().to_record()
    });

    let mut group = c.benchmark_group("rate_limit");
    group.bench_function("api_key_layer", |b| {
        b.iter(|| black_box(call_now(&mut without, bearer_request(&s.key))))
    });
    group.bench_function("api_key_layer_and_rate_limit", |b| {
        b.iter(|| {
            let response = call_now(&mut with, bearer_request(&s.key));
            assert_eq!(response.status(), 200);
            black_box(response)
        })
    });
    group.bench_function("limits_check_only", |b| {
        b.iter(|| black_box(limits.check(&record, 1)))
    });
    group.finish();
}

criterion_group!(
    benches,
    cache_hit,
    refusals,
    cache_miss,
    population,
    json_body,
    rate_limiter
);
criterion_main!(benches);
