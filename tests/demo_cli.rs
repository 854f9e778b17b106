//! The demo binary's command-line contract: flags, exit statuses, startup lines,
//! graceful shutdown.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    let pid = demo.child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
