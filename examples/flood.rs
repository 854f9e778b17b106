//! The load generator of `benches/e2e.sh flood`: threads sending distinct forged keys
//! (well-formed, checksum included, never issued) to one route, and one client using a
//! valid key on the same route, from the same address, measuring its latency.
//!
//! Run with:
//!
//! ```sh
//! cargo run --release --example flood -- BASE_URL VALID_KEY SECONDS FLOOD_THREADS
//! ```
//!
//! `FLOOD_THREADS` 0 runs the valid client alone (the baseline). Prints one line of
//! `name=value` pairs.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tower_api_key::key::KeyFormat;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, valid, seconds, threads] = args.as_slice() else {
        eprintln!("usage: flood BASE_URL VALID_KEY SECONDS FLOOD_THREADS");
        return ExitCode::from(2);
    };
    let (Ok(seconds), Ok(threads)) = (seconds.parse::<u64>(), threads.parse::<usize>()) else {
        eprintln!("flood: SECONDS and FLOOD_THREADS must be whole numbers");
        return ExitCode::from(2);
    };
    let url = format!("{base}/v1/ping");
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1) + 1)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let format = KeyFormat::new("pb")
            .and_then(|f| f.with_environments(["live", "test"]))
            .expect("the demo's format");
        let mut flooders = Vec::new();
        for _ in 0..threads {
            let (url, stop, format) = (url.clone(), Arc::clone(&stop), format.clone());
            flooders.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
                while !stop.load(Ordering::Relaxed) {
                    let forged = format.generate(Some("live")).expect("random");
                    let status = match client
                        .get(&url)
                        .bearer_auth(forged.key.expose_secret())
                        .send()
                        .await
                    {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 0,
                    };
                    *statuses.entry(status).or_default() += 1;
                }
                statuses
            }));
        }
        let valid_client = {
            let (url, stop, valid) = (url.clone(), Arc::clone(&stop), valid.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut latencies = Vec::new();
                let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let status = match client.get(&url).bearer_auth(&valid).send().await {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 0,
                    };
                    latencies.push(started.elapsed());
                    *statuses.entry(status).or_default() += 1;
                }
                (latencies, statuses)
            })
        };
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut forged: BTreeMap<u16, u64> = BTreeMap::new();
        for flooder in flooders {
            for (status, n) in flooder.await.expect("a flooder") {
                *forged.entry(status).or_default() += n;
            }
        }
        let (mut latencies, valid) = valid_client.await.expect("the valid client");
        latencies.sort();
        let pct = |p: f64| {
            let at = ((latencies.len() as f64 - 1.0) * p).round() as usize;
            latencies.get(at).map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        let total: u64 = valid.values().sum();
        let ok = valid.get(&200).copied().unwrap_or(0);
        let forged_total: u64 = forged.values().sum();
        let show = |m: &BTreeMap<u16, u64>| {
            m.iter()
                .map(|(s, n)| format!("{s}:{n}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        println!(
            "valid_requests={total} valid_ok={ok} valid_success={:.4} p50_ms={:.3} p99_ms={:.3} max_ms={:.3} valid_statuses={} forged_requests={forged_total} forged_per_s={:.0} forged_statuses={}",
            if total == 0 { 0.0 } else { ok as f64 / total as f64 },
            pct(0.50),
            pct(0.99),
            latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            show(&valid),
            forged_total as f64 / seconds as f64,
            show(&forged),
        );
    });
    ExitCode::SUCCESS
}
