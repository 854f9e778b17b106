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
    ];
    for args in cases {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
        assert!(stderr.starts_with("demo: "), "{stderr}");
        assert!(stdout.is_empty(), "{args:?} printed {stdout:?}");
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
