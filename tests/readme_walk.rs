//! Runs the README's curl walk, as written, against the demo binary.
#![allow(clippy::print_stderr)]

mod support;

use std::process::Command;

use support::DemoProcess;

fn walk() -> String {
    let readme = include_str!("../README.md");
    let start = readme
        .find("<!-- walk:start -->")
        .expect("walk start marker");
    let end = readme.find("<!-- walk:end -->").expect("walk end marker");
    let block = &readme[start..end];
    let code = block
        .split("```sh\n")
        .nth(1)
        .expect("a sh block")
        .split("```")
        .next()
        .expect("closed block");
    code.to_owned()
}

#[test]
fn the_readme_walk_works_as_written() {
    if Command::new("curl").arg("--version").output().is_err()
        || Command::new("jq").arg("--version").output().is_err()
    {
        eprintln!("skipped: the walk needs curl and jq (.ci/run installs them)");
        return;
    }
    let demo = DemoProcess::start(&[]);
    let script = walk()
        .replace("BASE=http://127.0.0.1:8080", &format!("BASE={}", demo.base))
        .replace(
            "KEY=pb_live_paste_the_acme_key_here",
            &format!("KEY={}", demo.key("acme")),
        );
    assert_ne!(
        script,
        walk(),
        "the walk's BASE and KEY lines changed; update this test"
    );
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .expect("bash");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "walk failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{stdout}");
    let session: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(session["organization_id"], "acme");
    assert_eq!(lines[1], "200", "read with the read-only key");
    let denied: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(denied["error"]["code"], "permission_denied");
    assert_eq!(
        denied["error"]["message"],
        "Required scope: observations:write"
    );
    assert_eq!(lines[3], "403");
    assert_eq!(lines[4], "204", "revoke");
    let refused: serde_json::Value = serde_json::from_str(lines[5]).unwrap();
    assert_eq!(refused["error"]["code"], "authentication_required");
    assert_eq!(lines[6], "401");
}
