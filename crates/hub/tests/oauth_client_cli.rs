//! `hub oauth-client create|list|revoke` on the embedded database: a confidential client's
//! secret is printed once and never listed; a public client has none; bad redirect URIs and
//! unknown scopes are refused; a revoked client cannot be revoked twice.

use std::process::{Command, Output};

use serde_json::Value;

fn hub(dir: &tempfile::TempDir, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hub"))
        .env_clear()
        .env("HUB_DATA_DIR", dir.path())
        .env("PUBLIC_BASE_URL", "https://hub.example.com")
        .env("RUST_LOG", "warn")
        .args(args)
        .output()
        .expect("run hub")
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
fn operators_register_list_and_revoke_oauth_clients() {
    let dir = tempfile::tempdir().unwrap();
    assert!(hub(&dir, &["migrate"]).status.success());
    let gpt = json(&hub(
        &dir,
        &[
            "oauth-client",
            "create",
            "--name",
            "Sora2 GPT",
            "--redirect-uri",
            "https://chat.openai.com/aip/g-1/oauth/callback",
            "--redirect-uri",
            "https://chatgpt.com/aip/g-1/oauth/callback",
            "--confidential",
            "--scopes",
            "credits:read,credits:spend",
        ],
    ));
    let id = gpt["client_id"].as_str().unwrap();
    assert!(id.starts_with("oc_"));
    assert!(
        gpt["client_secret"]
            .as_str()
            .unwrap()
            .starts_with("hub_cs_")
    );
    assert_eq!(gpt["scopes"], "credits:read credits:spend");
    assert_eq!(
        gpt["authorization_url"],
        "https://hub.example.com/oauth/authorize"
    );
    assert_eq!(gpt["token_url"], "https://hub.example.com/oauth/token");

    let public = json(&hub(
        &dir,
        &[
            "oauth-client",
            "create",
            "--name",
            "CLI",
            "--redirect-uri",
            "http://127.0.0.1:8765/cb",
        ],
    ));
    assert!(public["client_secret"].is_null());
    assert_eq!(public["scopes"], "credits:read credits:spend mcp:tools");

    let listed = json(&hub(&dir, &["oauth-client", "list"]));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        !listed.iter().any(|c| c.to_string().contains("hub_cs_")),
        "secrets never listed"
    );
    let gpt_listed = listed.iter().find(|c| c["id"] == id).unwrap();
    assert_eq!(gpt_listed["confidential"], true);
    assert_eq!(gpt_listed["redirect_uris"].as_array().unwrap().len(), 2);

    for bad in [
        [
            "--redirect-uri",
            "http://example.com/cb",
            "--scopes",
            "credits:read",
        ],
        [
            "--redirect-uri",
            "https://example.com/cb",
            "--scopes",
            "admin",
        ],
    ] {
        let mut args = vec!["oauth-client", "create", "--name", "Bad"];
        args.extend(bad);
        assert!(!hub(&dir, &args).status.success(), "{bad:?}");
    }

    let revoked = json(&hub(&dir, &["oauth-client", "revoke", id]));
    assert_eq!(revoked["revoked"], true);
    assert!(!hub(&dir, &["oauth-client", "revoke", id]).status.success());
}
