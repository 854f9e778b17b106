//! The load generator of `benches/e2e.sh flood`: tasks sending distinct forged keys
//! (well-formed, checksum included, never issued) to one route, and one client using a
//! valid key on the same route, measuring its latency.
//!
//! Run with:
//!
//! ```sh
//! cargo run --release --example flood -- BASE_URL VALID_KEY SECONDS FLOOD_THREADS \
//!     [--forged untagged|tagged] [--addresses N] [--valid-after SECONDS]
//! ```
//!
//! - `FLOOD_THREADS` 0 runs the valid client alone (the baseline).
//! - `--forged untagged` (the default): keys without a tag, which a server can only
//!   refuse after a lookup (or past the client's unknown-key budget, with 429).
//!   `--forged tagged`: keys with a tag made under the attacker's own secret, claiming
//!   the secret id of `VALID_KEY` (which must be tagged), so that only the server's
//!   secret tells them apart.
//! - `--addresses N`: every request carries `X-Forwarded-For` (for a server trusting
//!   one proxy): the flood rotates over N addresses, 10.0.0.1 onwards, one per request;
//!   the valid client sends the first of them, so it shares an address with the flood
//!   (with N = 1, the flood's only one). 0 (the default): no header, every request
//!   comes from the peer address.
//! - `--valid-after SECONDS`: the valid client starts that long after the flood (so
//!   that the flood has spent whatever budget its address has), and its figures cover
//!   the rest of the phase.
//!
//! The valid client keeps going through transport errors (a server restarting), 5 ms
//! apart; when there were any, the line also gives the span they covered and the
//! valid client's figures for the requests sent after the last of them.
//!
//! Prints one line of `name=value` pairs.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use tower_api_key::key::{KeyFormat, Presented, TagKey, ID_LEN, SECRET_LEN, TAGGED_BODY_LEN};

/// How long a task waits after a transport error before trying again.
const RETRY_PAUSE: Duration = Duration::from_millis(5);

/// The first address of `--addresses`: 10.0.0.1.
const FIRST_ADDRESS: u32 = 0x0A00_0001;

struct Options {
    base: String,
    valid: String,
    seconds: u64,
    threads: usize,
    /// The attacker's tag secret, under the valid key's secret id (`--forged tagged`).
    tagged: Option<TagKey>,
    addresses: u32,
    valid_after: Duration,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let usage = "usage: flood BASE_URL VALID_KEY SECONDS FLOOD_THREADS [--forged untagged|tagged] [--addresses N] [--valid-after SECONDS]";
    let [base, valid, seconds, threads, rest @ ..] = args else {
        return Err(usage.to_owned());
    };
    let (Ok(seconds), Ok(threads)) = (seconds.parse::<u64>(), threads.parse::<usize>()) else {
        return Err("SECONDS and FLOOD_THREADS must be whole numbers".to_owned());
    };
    let mut options = Options {
        base: base.clone(),
        valid: valid.clone(),
        seconds,
        threads,
        tagged: None,
        addresses: 0,
        valid_after: Duration::ZERO,
    };
    let mut rest = rest.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--forged" => match value.as_str() {
                "untagged" => options.tagged = None,
                "tagged" => options.tagged = Some(attacker_tag_key(valid)?),
                other => return Err(format!("--forged {other:?}: untagged or tagged")),
            },
            "--addresses" => {
                options.addresses = value
                    .parse()
                    .ok()
                    .filter(|n| *n <= 1 << 24)
                    .ok_or_else(|| format!("--addresses {value:?}: a number up to 2^24"))?;
            }
            "--valid-after" => {
                options.valid_after = value
                    .parse()
                    .ok()
                    .filter(|s| *s < seconds)
                    .map(Duration::from_secs)
                    .ok_or_else(|| format!("--valid-after {value:?}: seconds, under SECONDS"))?;
            }
            _ => return Err(usage.to_owned()),
        }
    }
    Ok(options)
}

/// A tag secret of the attacker's own with the secret id that `valid` was tagged
/// under (read from the key: it is public).
fn attacker_tag_key(valid: &str) -> Result<TagKey, String> {
    let tagged = matches!(
        tower_api_key::presets::performance_blocks::key_format().parse(valid),
        Some(Presented::Native(key)) if key.is_tagged()
    );
    if !tagged {
        return Err("--forged tagged: VALID_KEY is not a tagged native key".to_owned());
    }
    let body = &valid.as_bytes()[valid.len() - TAGGED_BODY_LEN..];
    let secret_id = char::from(body[ID_LEN + SECRET_LEN]);
    TagKey::new(secret_id, &[0x66; 32]).map_err(|e| e.to_string())
}

/// One forged key: well-formed and checksum-valid, never issued.
fn forge(format: &KeyFormat, tagged: Option<&TagKey>) -> String {
    let minted = match tagged {
        Some(attacker) => format.generate_tagged(Some("live"), attacker),
        None => format.generate(Some("live")),
    };
    minted.expect("random").key.expose_secret().to_owned()
}

/// What the valid client saw of one request.
#[derive(Clone, Copy)]
struct Sample {
    /// Since the phase started.
    sent: Duration,
    latency: Duration,
    /// 0: a transport error.
    status: u16,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn show(m: &BTreeMap<u16, u64>) -> String {
    m.iter()
        .map(|(s, n)| format!("{s}:{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("flood: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads.max(1) + 1)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(options));
    ExitCode::SUCCESS
}

async fn run(options: Options) {
    let url = format!("{}/v1/ping", options.base);
    let stop = Arc::new(AtomicBool::new(false));
    let addresses: Arc<[HeaderValue]> = (0..options.addresses)
        .map(|i| {
            HeaderValue::from_str(&Ipv4Addr::from(FIRST_ADDRESS + i).to_string())
                .expect("an address is a header value")
        })
        .collect();
    let next_address = Arc::new(AtomicUsize::new(0));
    let format = tower_api_key::presets::performance_blocks::key_format();
    let started = Instant::now();
    let mut flooders = Vec::new();
    for _ in 0..options.threads {
        let (url, stop, format) = (url.clone(), Arc::clone(&stop), format.clone());
        let (addresses, next_address) = (Arc::clone(&addresses), Arc::clone(&next_address));
        let tagged = options.tagged.clone();
        flooders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                let mut request = client
                    .get(&url)
                    .bearer_auth(forge(&format, tagged.as_ref()));
                if !addresses.is_empty() {
                    let at = next_address.fetch_add(1, Ordering::Relaxed) % addresses.len();
                    request = request.header("x-forwarded-for", addresses[at].clone());
                }
                let status = match request.send().await {
                    Ok(response) => response.status().as_u16(),
                    Err(_) => 0,
                };
                *statuses.entry(status).or_default() += 1;
                if status == 0 {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
            statuses
        }));
    }
    let valid_client = {
        let (url, stop, valid) = (url.clone(), Arc::clone(&stop), options.valid.clone());
        let from = addresses.first().cloned();
        let valid_after = options.valid_after;
        tokio::spawn(async move {
            tokio::time::sleep(valid_after).await;
            let client = reqwest::Client::new();
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let mut request = client.get(&url).bearer_auth(&valid);
                if let Some(from) = &from {
                    request = request.header("x-forwarded-for", from.clone());
                }
                let status = match request.send().await {
                    Ok(response) => response.status().as_u16(),
                    Err(_) => 0,
                };
                samples.push(Sample {
                    sent: sent - started,
                    latency: sent.elapsed(),
                    status,
                });
                if status == 0 {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
            samples
        })
    };
    tokio::time::sleep(Duration::from_secs(options.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut forged: BTreeMap<u16, u64> = BTreeMap::new();
    for flooder in flooders {
        for (status, n) in flooder.await.expect("a flooder") {
            *forged.entry(status).or_default() += n;
        }
    }
    let samples = valid_client.await.expect("the valid client");
    let summary = |samples: &[Sample]| {
        let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
        latencies.sort();
        let ok = samples.iter().filter(|s| s.status == 200).count();
        let success = if samples.is_empty() {
            0.0
        } else {
            ok as f64 / samples.len() as f64
        };
        (ok, success, latencies)
    };
    let mut valid: BTreeMap<u16, u64> = BTreeMap::new();
    for sample in &samples {
        *valid.entry(sample.status).or_default() += 1;
    }
    let (ok, success, latencies) = summary(&samples);
    let forged_total: u64 = forged.values().sum();
    let mut line = format!(
        "valid_requests={} valid_ok={ok} valid_success={success:.4} p50_ms={:.3} p99_ms={:.3} max_ms={:.3} valid_statuses={} forged_requests={forged_total} forged_per_s={:.0} forged_statuses={} forged_kind={} addresses={}",
        samples.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        show(&valid),
        forged_total as f64 / options.seconds as f64,
        show(&forged),
        if options.tagged.is_some() { "tagged" } else { "untagged" },
        options.addresses,
    );
    let errors: Vec<&Sample> = samples.iter().filter(|s| s.status == 0).collect();
    if let (Some(first), Some(last)) = (errors.first(), errors.last()) {
        let back = last.sent + last.latency;
        let after: Vec<Sample> = samples.iter().filter(|s| s.sent >= back).copied().collect();
        let (after_ok, after_success, after_latencies) = summary(&after);
        line.push_str(&format!(
            " valid_errors_from_s={:.3} valid_errors_until_s={:.3} after_requests={} after_ok={after_ok} after_success={after_success:.4} after_p50_ms={:.3} after_p99_ms={:.3} after_max_ms={:.3}",
            first.sent.as_secs_f64(),
            back.as_secs_f64(),
            after.len(),
            percentile(&after_latencies, 0.50),
            percentile(&after_latencies, 0.99),
            after_latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        ));
    }
    println!("{line}");
}
