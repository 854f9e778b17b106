//! The demo's command line (clap's builder API; `demo --help` lists every flag). Any
//! mistake is one line on stderr and exit status 2.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Arg, ArgAction, Command};
use tower_api_key::budget::UnknownKeyBudget;

#[derive(Debug, Clone)]
pub struct Args {
    pub listen: SocketAddr,
    pub database: Option<String>,
    pub rate_limit: String,
    pub cache_ttl: Option<Duration>,
    /// `None`: `--unknown-key-budget off`.
    pub unknown_key_budget: Option<UnknownKeyBudget>,
    pub max_lookups: usize,
    pub lookup_timeout: Duration,
    pub stale_if_error: Duration,
    pub body_timeout: Duration,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// At most `max_connections`.
    pub max_connections_per_peer: usize,
    pub shutdown_timeout: Duration,
    pub trusted_proxies: usize,
    /// `--redis`: share rate limits and quotas through this Redis.
    pub redis: Option<String>,
    /// `--redis-on-failure refuse`: 503 while Redis is down (default: local limits).
    pub redis_refuse: bool,
    pub redis_local_first: bool,
    pub daily_quota: Option<u64>,
    /// Usage per key on or off.
    pub usage: bool,
}

/// What parsing decided: run, or print this (help) and exit 0.
pub enum Parsed {
    Run(Box<Args>),
    Print(String),
}

fn command() -> Command {
    let seconds = |name: &'static str, default: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .value_name("SECONDS")
            .default_value(default)
            .help(help)
    };
    Command::new("demo")
        .about("The tower-api-key demo server: Performance Blocks and ProductBridge surfaces on one key store")
        .disable_version_flag(true)
        .arg(
            Arg::new("listen")
                .long("listen")
                .value_name("ADDR")
                .default_value("127.0.0.1:8080")
                .help("Address to listen on (port 0 picks a free one)"),
        )
        .arg(
            Arg::new("database")
                .long("database")
                .value_name("URL")
                .help("sqlite://PATH or postgres://… (features sqlite / postgres); in memory without it"),
        )
        .arg(
            Arg::new("rate-limit")
                .long("rate-limit")
                .value_name("N/UNIT|off")
                .default_value("100/s")
                .help("Default rate limit of every key"),
        )
        .arg(
            Arg::new("cache-ttl")
                .long("cache-ttl")
                .value_name("SECONDS")
                .help("How long a found key is cached [default: 30]"),
        )
        .arg(
            Arg::new("unknown-key-budget")
                .long("unknown-key-budget")
                .value_name("N/UNIT|off")
                .default_value("100/min")
                .help("Store lookups ending in 'unknown key' allowed per client; past it 429 without a lookup"),
        )
        .arg(
            Arg::new("max-lookups")
                .long("max-lookups")
                .value_name("N")
                .default_value("8")
                .help("Key-store lookups in flight at once; past it a cache miss is 503 at once (keep it under the pool size)"),
        )
        .arg(seconds("lookup-timeout", "3", "How long a key-store lookup may take before 503"))
        .arg(seconds(
            "stale-if-error",
            "300",
            "How long past its TTL a cached key still answers while the store fails (0 disables)",
        ))
        .arg(seconds(
            "body-timeout",
            "10",
            "How long a ProductBridge JSON body may take to arrive before 408",
        ))
        .arg(seconds(
            "header-timeout",
            "10",
            "How long a request head may take to arrive (also the wait for the next request on a kept-alive connection)",
        ))
        .arg(seconds(
            "idle-timeout",
            "15",
            "Close a connection on which no byte moved either way for this long (a stalled body, a client that stops reading)",
        ))
        .arg(
            Arg::new("max-connections")
                .long("max-connections")
                .value_name("N")
                .default_value("1024")
                .help("Connections served at once; further ones wait in the listen backlog. From nine tenths of it on, the connections idle the longest are closed to make room for new ones"),
        )
        .arg(
            Arg::new("max-connections-per-peer")
                .long("max-connections-per-peer")
                .value_name("N")
                .default_value("64")
                .help("Connections one peer address (an IPv6 /64) may hold at once, at most --max-connections; one more is closed at once, without a response and without taking a slot. It counts TCP peers: behind --trusted-proxies, the proxy"),
        )
        .arg(seconds(
            "shutdown-timeout",
            "10",
            "On SIGTERM or Ctrl-C, how long in-flight requests may finish before the connections are closed",
        ))
        .arg(
            Arg::new("trusted-proxies")
                .long("trusted-proxies")
                .value_name("N")
                .default_value("0")
                .help("Reverse proxies in front whose X-Forwarded-For is trusted to name the client (0: the peer address)"),
        )
        .arg(
            Arg::new("redis")
                .long("redis")
                .value_name("URL")
                .help("Share rate limits and quotas with every instance through this Redis, e.g. redis://127.0.0.1:6379 (needs --features redis) [default: in process]"),
        )
        .arg(
            Arg::new("redis-on-failure")
                .long("redis-on-failure")
                .value_name("local|refuse")
                .default_value("local")
                .help("While Redis is down: decide with in-process limits, or answer 503"),
        )
        .arg(
            Arg::new("redis-local-first")
                .long("redis-local-first")
                .action(ArgAction::SetTrue)
                .help("Decide in process while a key is far from its limit, one Redis round trip per 10 requests"),
        )
        .arg(
            Arg::new("daily-quota")
                .long("daily-quota")
                .value_name("N|off")
                .default_value("off")
                .help("Requests per organization per UTC day (403 quota_exceeded past it)"),
        )
        .arg(
            Arg::new("usage")
                .long("usage")
                .value_name("on|off")
                .default_value("on")
                .value_parser(["on", "off"])
                .help("Count every key's requests by hour and outcome (GET /v1/api_keys/{id}/usage)"),
        )
        .arg(
            Arg::new("help")
                .long("help")
                .short('h')
                .action(ArgAction::Help)
                .help("Print this help"),
        )
        .disable_help_flag(true)
}

impl Args {
    pub fn parse(args: impl Iterator<Item = String>) -> Result<Parsed, String> {
        let matches =
            match command().try_get_matches_from(std::iter::once("demo".to_owned()).chain(args)) {
                Ok(matches) => matches,
                Err(error) if error.kind() == clap::error::ErrorKind::DisplayHelp => {
                    return Ok(Parsed::Print(error.render().to_string()));
                }
                Err(error) => {
                    let rendered = error.render().to_string();
                    let line = rendered.lines().next().unwrap_or("invalid arguments");
                    return Err(line.trim_start_matches("error: ").to_owned());
                }
            };
        let text = |name: &str| matches.get_one::<String>(name).cloned();
        let value = |name: &str| text(name).unwrap_or_default();
        let secs = |name: &str, range: std::ops::RangeInclusive<u64>| -> Result<Duration, String> {
            let v = value(name);
            v.parse::<u64>()
                .ok()
                .filter(|s| range.contains(s))
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    format!(
                        "--{name}: {v:?} is not a number of seconds from {} to {}",
                        range.start(),
                        range.end()
                    )
                })
        };
        let count = |name: &str, range: std::ops::RangeInclusive<usize>| -> Result<usize, String> {
            let v = value(name);
            v.parse::<usize>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    format!(
                        "--{name}: {v:?} is not a whole number from {} to {}",
                        range.start(),
                        range.end()
                    )
                })
        };
        let listen = value("listen");
        let listen = listen
            .parse()
            .map_err(|_| format!("--listen: {listen:?} is not an address like 127.0.0.1:8080"))?;
        let cache_ttl = match text("cache-ttl") {
            Some(_) => Some(secs("cache-ttl", 1..=86_400)?),
            None => None,
        };
        let unknown_key_budget = match value("unknown-key-budget").as_str() {
            "off" => None,
            budget => Some(
                budget
                    .parse()
                    .map_err(|e| format!("--unknown-key-budget: {e}"))?,
            ),
        };
        let redis_refuse = match value("redis-on-failure").as_str() {
            "local" => false,
            "refuse" => true,
            other => {
                return Err(format!(
                    "--redis-on-failure: {other:?} is neither \"local\" nor \"refuse\""
                ))
            }
        };
        let daily_quota = match value("daily-quota").as_str() {
            "off" => None,
            n => Some(n.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("--daily-quota: {n:?} is neither \"off\" nor a positive number")
            })?),
        };
        let max_connections = count("max-connections", 1..=1_000_000)?;
        Ok(Parsed::Run(Box::new(Self {
            redis: text("redis"),
            redis_refuse,
            redis_local_first: matches.get_flag("redis-local-first"),
            daily_quota,
            usage: value("usage") == "on",
            listen,
            database: text("database"),
            rate_limit: value("rate-limit"),
            cache_ttl,
            unknown_key_budget,
            max_lookups: count("max-lookups", 1..=10_000)?,
            lookup_timeout: secs("lookup-timeout", 1..=60)?,
            stale_if_error: secs("stale-if-error", 0..=86_400)?,
            body_timeout: secs("body-timeout", 1..=600)?,
            header_timeout: secs("header-timeout", 1..=600)?,
            idle_timeout: secs("idle-timeout", 1..=3_600)?,
            max_connections,
            max_connections_per_peer: count("max-connections-per-peer", 1..=1_000_000)?
                .min(max_connections),
            shutdown_timeout: secs("shutdown-timeout", 1..=600)?,
            trusted_proxies: count("trusted-proxies", 0..=16)?,
        })))
    }
}
