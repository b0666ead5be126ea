//! `hub user role` and `hub user set-password` on the embedded database: a role brings its
//! permissions and --revoke takes them away; a password is read from standard input, checked for
//! length, and never echoed.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn hub(dir: &tempfile::TempDir, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hub"))
        .env_clear()
        .env("HUB_DATA_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hub");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("hub prints JSON")
}

#[test]
fn operators_get_roles_and_passwords_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let user = json(&hub(
        &dir,
        &[
            "user",
            "create",
            "--email",
            "ops@example.com",
            "--name",
            "Ops",
        ],
        None,
    ));
    let id = user["id"].as_str().unwrap();
    let finance = json(&hub(
        &dir,
        &["user", "role", "--user", id, "--role", "finance"],
        None,
    ));
    assert_eq!(finance["roles"], serde_json::json!(["finance", "user"]));
    let permissions = finance["permissions"].as_array().unwrap();
    assert!(permissions.contains(&"credits:grant".into()));
    let revoked = json(&hub(
        &dir,
        &[
            "user", "role", "--user", id, "--role", "finance", "--revoke",
        ],
        None,
    ));
    assert_eq!(revoked["roles"], serde_json::json!(["user"]));
    assert!(
        !revoked["permissions"]
            .as_array()
            .unwrap()
            .contains(&"credits:grant".into())
    );
    assert!(
        !hub(
            &dir,
            &["user", "role", "--user", id, "--role", "root"],
            None
        )
        .status
        .success()
    );

    let short = hub(
        &dir,
        &["user", "set-password", "--user", id],
        Some("short\n"),
    );
    assert!(!short.status.success());
    let set = hub(
        &dir,
        &["user", "set-password", "--user", id],
        Some("correct horse battery\n"),
    );
    assert_eq!(json(&set)["password_set"], true);
    assert!(!String::from_utf8_lossy(&set.stdout).contains("correct horse"));
    let nobody = uuid::Uuid::new_v4().to_string();
    assert!(
        !hub(
            &dir,
            &["user", "set-password", "--user", &nobody],
            Some("correct horse battery\n")
        )
        .status
        .success()
    );
}
