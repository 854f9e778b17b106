//! The demo binary's command-line contract: flags, exit statuses, startup lines,
//! graceful shutdown.

mod support;

use std::process::{Command, Stdio};

use support::{demo_binary, DemoProcess};

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(demo_binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the demo");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let cases: &[&[&str]] = &[
        &["--bogus"],
        &["extra"],
        &["--listen"],
        &["--listen", "not-an-address"],
        &["--rate-limit", "fast"],
        &["--rate-limit", "0/s"],
        &["--rate-limit", "10/fortnight"],
        &["--cache-ttl", "soon"],
        &["--cache-ttl", "0"],
        &["--database", "mysql://localhost/db"],
        &["--unknown-key-budget", "lots"],
        &["--unknown-key-budget", "0/min"],
        &["--max-lookups", "0"],
        &["--lookup-timeout", "0"],
        &["--stale-if-error", "-1"],
        &["--body-timeout", "0"],
        &["--header-timeout", "never"],
        &["--idle-timeout", "0"],
        &["--max-connections", "0"],
        &["--max-connections-per-peer", "0"],
        &["--max-connections-per-peer", "-1"],
        &["--max-connections-per-peer", "lots"],
        &["--shutdown-timeout", "0"],
        &["--trusted-proxies", "many"],
        &["--redis-on-failure", "panic"],
        &["--daily-quota", "0"],
        &["--daily-quota", "lots"],
        &["--redis", "http://not-redis"],
    ];
    for args in cases {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.starts_with("demo: "), "{stderr}");
        assert!(stdout.is_empty(), "{args:?} printed {stdout:?}");
    }
    // The per-peer cap's own message, not clap's for an unknown flag.
    for value in ["0", "lots"] {
        let (_, _, stderr) = run(&["--max-connections-per-peer", value]);
        assert!(
            stderr.starts_with("demo: --max-connections-per-peer: ")
                && stderr.contains("is not a whole number from 1 to"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn startup_lines_then_serving_with_the_configured_rate_limit() {
    let demo = DemoProcess::start(&["--rate-limit", "2/min", "--cache-ttl", "10"]);
    assert!(demo.base.starts_with("http://127.0.0.1:"));
    assert_ne!(demo.base, "http://127.0.0.1:0", "port 0 binds a real port");
    assert_eq!(
        demo.admin_keys
            .iter()
            .map(|(org, _)| org.as_str())
            .collect::<Vec<_>>(),
        ["acme", "globex"]
    );
    assert!(demo.key("acme").starts_with("pb_live_"));
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = client
            .get(format!("{}/v1/session", demo.base))
            .bearer_auth(demo.key("acme"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let mut demo = DemoProcess::start(&[]);
    let status = demo.stop();
    assert!(status.success(), "{status:?}");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_sqlite_database_keeps_keys_and_audit_across_restarts() {
    let dir = std::env::temp_dir().join(format!("tower-api-key-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("demo.db");
    let url = format!("sqlite://{}", path.display());
    let client = reqwest::Client::new();

    let first = DemoProcess::start(&["--database", &url]);
    let key = first.key("acme").to_owned();
    let created = client
        .post(format!("{}/v1/api_keys", first.base))
        .bearer_auth(&key)
        .json(&serde_json::json!({"name": "survivor", "scopes": ["observations:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let survivor: serde_json::Value = created.json().await.unwrap();
    let used = client
        .get(format!("{}/v1/observations", first.base))
        .bearer_auth(survivor["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(used.status(), 200);
    // A graceful stop flushes last-used times and audit entries.
    let mut first = first;
    assert!(first.stop().success());

    // Same database: no new admin keys, and the old keys and audit entries are there.
    let second = DemoProcess::start_with_keys(&["--database", &url], 0);
    let session = client
        .get(format!("{}/v1/session", second.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 200);
    let read = client
        .get(format!("{}/v1/observations", second.base))
        .bearer_auth(survivor["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let log: serde_json::Value = client
        .get(format!("{}/v1/audit_log", second.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"api_key.created"), "{actions:?}");
    assert!(actions.contains(&"request"), "{actions:?}");
    let keys: serde_json::Value = client
        .get(format!("{}/v1/api_keys", second.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == survivor["id"])
        .unwrap()
        .clone();
    assert!(
        listed["last_used_at"].is_string(),
        "last_used_at was not flushed at shutdown: {listed}"
    );
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_lists_every_flag() {
    let (code, stdout, stderr) = run(&["--help"]);
    assert_eq!(code, Some(0), "{stderr}");
    for flag in [
        "--listen",
        "--database",
        "--rate-limit",
        "--cache-ttl",
        "--unknown-key-budget",
        "--max-lookups",
        "--lookup-timeout",
        "--stale-if-error",
        "--body-timeout",
        "--header-timeout",
        "--idle-timeout",
        "--max-connections",
        "--max-connections-per-peer",
        "--shutdown-timeout",
        "--trusted-proxies",
        "--redis",
        "--redis-on-failure",
        "--redis-local-first",
        "--daily-quota",
        "--help",
    ] {
        assert!(
            stdout.contains(flag),
            "{flag} missing from --help:\n{stdout}"
        );
    }
    // The secure defaults are shown.
    for default in [
        "[default: 100/min]",
        "[default: 8]",
        "[default: 300]",
        "[default: 64]",
    ] {
        assert!(stdout.contains(default), "{default} missing:\n{stdout}");
    }
}

/// Connects to the demo at `base` (`http://host:port`).
fn connect(base: &str) -> std::net::TcpStream {
    let addr = base.strip_prefix("http://").unwrap();
    let stream = std::net::TcpStream::connect(addr).unwrap();
    // A guard against a hang, far above the timeouts under test.
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Reads until the server closes the connection; what it sent.
fn read_to_close(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

#[test]
fn a_request_head_that_stops_arriving_is_cut_off() {
    use std::io::Write;
    let demo = DemoProcess::start(&["--header-timeout", "1"]);
    let mut stream = connect(&demo.base);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: demo\r\nX-Slow: ")
        .unwrap();
    let started = std::time::Instant::now();
    let answer = read_to_close(&mut stream);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );
    // Closed by the 1 s timeout, not by the 20 s guard.
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

#[test]
fn a_json_body_that_stops_arriving_is_answered_408() {
    use std::io::Write;
    let demo = DemoProcess::start(&["--body-timeout", "1"]);
    let mut stream = connect(&demo.base);
    stream
        .write_all(
            b"POST /api/external/v1/feedback-posts/list HTTP/1.1\r\nHost: demo\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"api_key\": \"pb_",
        )
        .unwrap();
    let answer = read_to_close(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("\"request_timeout\""), "{answer:?}");
}

#[test]
fn an_idle_connection_is_closed() {
    use std::io::Write;
    let demo = DemoProcess::start(&["--idle-timeout", "1", "--header-timeout", "60"]);
    let mut stream = connect(&demo.base);
    // A body route that reads its body with an extractor, stalled half-way.
    stream
        .write_all(
            format!(
                "POST /v1/observations HTTP/1.1\r\nHost: demo\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"a\"",
                demo.key("acme")
            )
            .as_bytes(),
        )
        .unwrap();
    let started = std::time::Instant::now();
    read_to_close(&mut stream);
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

#[test]
fn sigterm_completes_while_a_client_holds_a_connection_open() {
    use std::io::Write;
    let mut demo = DemoProcess::start(&["--shutdown-timeout", "1", "--header-timeout", "60"]);
    let mut stream = connect(&demo.base);
    // A request in progress: its head never completes.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: demo\r\n")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let status = demo.stop();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn forged_keys_from_one_client_are_throttled_while_a_valid_key_works() {
    // A day per 20 lookups: no refill can land while the test runs, however slow.
    let demo = DemoProcess::start(&["--unknown-key-budget", "20/day", "--rate-limit", "off"]);
    let client = reqwest::Client::new();
    let get = |key: String| {
        let request = client
            .get(format!("{}/v1/ping", demo.base))
            .bearer_auth(key)
            .header("x-request-id", "r".repeat(300));
        async move { request.send().await.unwrap() }
    };
    let valid = demo.key("acme").to_owned();
    assert_eq!(get(valid.clone()).await.status(), 200);
    let format = tower_api_key::key::KeyFormat::new("pb")
        .unwrap()
        .with_environments(["live"])
        .unwrap();
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..60 {
        let forged = format.generate(Some("live")).unwrap();
        let response = get(forged.key.expose_secret().to_owned()).await;
        // The oversized request id was replaced by a generated one.
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert!(id.len() <= 128 && !id.starts_with("rrr"), "{id}");
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
        }
        *statuses.entry(response.status().as_u16()).or_insert(0) += 1;
        assert_eq!(get(valid.clone()).await.status(), 200);
    }
    assert_eq!(statuses, [(401, 20), (429, 40)].into_iter().collect());
}

#[test]
fn past_the_connection_cap_a_connection_waits_for_one_to_end() {
    use std::io::{Read, Write};
    let demo = DemoProcess::start(&[
        "--max-connections",
        "1",
        "--header-timeout",
        "60",
        "--idle-timeout",
        "60",
    ]);
    // The one permitted connection, open and silent.
    let mut first = connect(&demo.base);
    first.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    let mut second = connect(&demo.base);
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
        .unwrap();
    // Not served while the first holds the only slot. (A server that ignored the cap
    // would answer within this wait; one that honours it never does.)
    second
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    let waited = second.read(&mut buf);
    assert!(
        matches!(&waited, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "served past the cap: {waited:?}"
    );
    // The first ends: the second is served.
    drop(first);
    second
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let answer = read_to_close(&mut second);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_budgeted() {
    let demo = DemoProcess::start(&["--trusted-proxies", "1", "--unknown-key-budget", "2/day"]);
    let client = reqwest::Client::new();
    let format = tower_api_key::key::KeyFormat::new("pb")
        .unwrap()
        .with_environments(["live"])
        .unwrap();
    let forged_from = |client_ip: &'static str| {
        let key = format.generate(Some("live")).unwrap();
        let request = client
            .get(format!("{}/v1/ping", demo.base))
            .bearer_auth(key.key.expose_secret())
            .header("x-forwarded-for", client_ip);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(forged_from("192.0.2.1").await);
    }
    // Another client behind the same proxy (the same peer address) has its own budget.
    statuses.push(forged_from("192.0.2.2").await);
    assert_eq!(statuses, [401, 401, 429, 401]);
}

/// What the demo logs before it announces its address, with `args`.
fn startup_log(args: &[&str]) -> String {
    use std::io::{BufRead, Read};
    let mut child = Command::new(demo_binary())
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let stdout = child.stdout.take().expect("stdout");
    let first = std::io::BufReader::new(stdout)
        .lines()
        .next()
        .expect("a first line")
        .expect("utf-8");
    assert!(first.starts_with("listening on "), "{first}");
    let _ = child.kill();
    let _ = child.wait();
    let mut log = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut log)
        .unwrap();
    log
}

#[test]
fn trusted_proxies_warn_that_the_per_peer_cap_counts_the_proxy() {
    // A per-peer cap above the cap is the cap.
    let log = startup_log(&[
        "--trusted-proxies",
        "1",
        "--max-connections",
        "40",
        "--max-connections-per-peer",
        "100",
    ]);
    let warning = log
        .lines()
        .find(|line| line.contains("--trusted-proxies is set"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(warning.contains(" WARN "), "{warning}");
    assert!(warning.contains("the proxy's address"), "{warning}");
    assert!(warning.contains("max_connections_per_peer=40"), "{warning}");
    // Without proxies, nothing to warn about.
    let log = startup_log(&[]);
    assert!(!log.contains("--trusted-proxies"), "{log}");
}
