//! The demo server: a Performance Blocks-style API and a ProductBridge-style body-key
//! API on one key store.
//!
//! Run with:
//!
//! ```sh
//! cargo run --example demo --features utoipa -- [--listen ADDR] [--database URL] [--rate-limit N/UNIT|off] …
//! cargo run --example demo --features utoipa -- --help   # every flag, with its default
//! ```
//!
//! SQLite and PostgreSQL databases need the `sqlite` / `postgres` features
//! (`cargo run --features utoipa,sqlite --example demo -- --database sqlite://demo.db`), and
//! rate limits shared through Redis the `redis` feature
//! (`--features postgres,redis … --database postgres://… --redis redis://127.0.0.1:6379`:
//! run several instances on one database and one Redis, and they share keys, limits and
//! quotas).
//!
//! The defaults are the secure ones: 100 unknown-key lookups a minute per client, 8
//! store lookups at once (3 s each), 5 minutes of stale-if-error, 10 s for a request
//! head or a ProductBridge body, 15 s of idleness per connection, 1,024 connections
//! (64 per peer address, an IPv6 /64; from 921 open on, the longest idle are closed to
//! make room), 10 s to finish in-flight requests on SIGTERM.
#![allow(clippy::print_stdout, clippy::print_stderr, unreachable_pub)]

mod app;
mod cli;
mod serve;

use std::io::Write;
use std::process::ExitCode;

use tower_api_key::rate_limit::{MemoryLimiter, RatePolicy};
use tower_api_key::store::MemoryStore;

use crate::app::{DemoLimiter, DemoStore, Settings};

#[tokio::main]
async fn main() -> ExitCode {
    let args = match cli::Args::parse(std::env::args().skip(1)) {
        Ok(cli::Parsed::Run(args)) => args,
        Ok(cli::Parsed::Print(help)) => {
            print!("{help}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("demo: {message}");
            return ExitCode::from(2);
        }
    };
    let rate_limit: Option<RatePolicy> = match args.rate_limit.as_str() {
        "off" => None,
        policy => match policy.parse() {
            Ok(policy) => Some(policy),
            Err(error) => {
                eprintln!("demo: --rate-limit {:?}: {error}", args.rate_limit);
                return ExitCode::from(2);
            }
        },
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    if args.trusted_proxies > 0 {
        tracing::warn!(
            trusted_proxies = args.trusted_proxies,
            max_connections_per_peer = args.max_connections_per_peer,
            "--trusted-proxies is set, but the per-peer connection cap counts TCP peers: \
             every client behind the proxy shares the proxy's address (the peer address \
             of the connection, not X-Forwarded-For) and its --max-connections-per-peer; \
             raise that (up to --max-connections) if the proxy holds many connections"
        );
    }
    let store = match open(args.database.as_deref()).await {
        Ok(opened) => opened,
        Err((code, message)) => {
            eprintln!("demo: {message}");
            return ExitCode::from(code);
        }
    };
    let limiter = match limiter(&args) {
        Ok(limiter) => limiter,
        Err(message) => {
            eprintln!("demo: {message}");
            return ExitCode::from(2);
        }
    };
    let settings = Settings {
        rate_limit,
        limiter,
        daily_quota: args.daily_quota,
        usage: args.usage,
        cache_ttl: args.cache_ttl,
        unknown_key_budget: args.unknown_key_budget,
        max_lookups: args.max_lookups,
        lookup_timeout: args.lookup_timeout,
        stale_if_error: args.stale_if_error,
        body_timeout: args.body_timeout,
        trusted_proxies: args.trusted_proxies,
        ..Settings::default()
    };
    let opened_store = store.clone();
    let demo = match app::build(store, settings) {
        Ok(demo) => demo,
        Err(message) => {
            eprintln!("demo: {message}");
            return ExitCode::from(1);
        }
    };
    listen_for_invalidations(&opened_store, &demo);
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("demo: cannot listen on {}: {error}", args.listen);
            return ExitCode::from(1);
        }
    };
    let admin_keys = match demo.bootstrap().await {
        Ok(keys) => keys,
        Err(message) => {
            eprintln!("demo: cannot create the admin keys: {message}");
            return ExitCode::from(1);
        }
    };
    // Install the signal handlers before announcing the server: a SIGTERM sent as soon
    // as the startup lines appear must already mean "shut down gracefully".
    let shutdown = match shutdown_signal() {
        Ok(shutdown) => shutdown,
        Err(error) => {
            eprintln!("demo: cannot install signal handlers: {error}");
            return ExitCode::from(1);
        }
    };
    let address = serve::local_addr(&listener, args.listen);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on http://{address}");
    for (org, key) in admin_keys {
        let _ = writeln!(out, "admin key for {org} (shown once): {key}");
    }
    let _ = out.flush();
    drop(out);

    let limits = serve::Limits {
        header_timeout: args.header_timeout,
        idle_timeout: args.idle_timeout,
        max_connections: args.max_connections,
        max_connections_per_peer: args.max_connections_per_peer,
        shutdown_timeout: args.shutdown_timeout,
    };
    serve::serve(listener, demo.router.clone(), limits, shutdown).await;
    demo.flush().await;
    ExitCode::SUCCESS
}

/// The rate-limit backend for `--redis`.
fn limiter(args: &cli::Args) -> Result<DemoLimiter, String> {
    let Some(url) = &args.redis else {
        return Ok(DemoLimiter::Memory(MemoryLimiter::new()));
    };
    #[cfg(feature = "redis")]
    {
        use tower_api_key::rate_limit::{LocalFirst, OnRedisFailure, RedisLimiter};
        let mut redis = RedisLimiter::new(url).map_err(|e| format!("--redis: {e}"))?;
        if args.redis_refuse {
            redis = redis.with_failure_policy(OnRedisFailure::Refuse);
        }
        if args.redis_local_first {
            redis = redis.with_local_first(LocalFirst::new());
        }
        Ok(DemoLimiter::Redis(redis))
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = (args.redis_refuse, args.redis_local_first);
        Err(format!(
            "--redis {url:?}: this demo was built without Redis (build with --features redis)"
        ))
    }
}

/// The store for `--database`, or an exit status and a one-line message.
async fn open(database: Option<&str>) -> Result<DemoStore, (u8, String)> {
    match database {
        None => Ok(DemoStore::Memory(MemoryStore::new())),
        #[cfg(feature = "sqlite")]
        Some(url) if url.starts_with("sqlite:") => {
            let store = tower_api_key::store::sql::SqliteStore::connect(url)
                .await
                .map_err(|e| (1, format!("--database: {e}")))?;
            store.migrate().await.map_err(|e| (1, format!("--database: {e}")))?;
            Ok(DemoStore::Sqlite(store))
        }
        #[cfg(feature = "postgres")]
        Some(url) if url.starts_with("postgres:") || url.starts_with("postgresql:") => {
            let store = tower_api_key::store::sql::PostgresStore::connect(url)
                .await
                .map_err(|e| (1, format!("--database: {e}")))?;
            store.migrate().await.map_err(|e| (1, format!("--database: {e}")))?;
            Ok(DemoStore::Postgres(store))
        }
        Some(url) => Err((
            2,
            format!(
                "--database {url:?}: unsupported database URL (expected sqlite://PATH or postgres://…; {})",
                if cfg!(all(feature = "sqlite", feature = "postgres")) {
                    "both are built in"
                } else {
                    "build with --features sqlite,postgres for those"
                }
            ),
        )),
    }
}

/// With PostgreSQL, other instances' revocations reach this one's cache through
/// LISTEN/NOTIFY.
#[allow(unused_variables)]
fn listen_for_invalidations(store: &DemoStore, demo: &app::Demo) {
    #[cfg(feature = "postgres")]
    if let DemoStore::Postgres(pg) = store {
        drop(pg.spawn_invalidation_listener(demo.cache.clone()));
    }
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are registered when this is called.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let ctrl_c = tokio::signal::ctrl_c();
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
    })
}
