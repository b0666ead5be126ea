//! Tokens never reach the logs: every log line of a whole sign-in, verification, login and
//! refresh, at the most verbose level, is searched for them.

use std::io::Write;
use std::sync::{Arc, Mutex};

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SessionBackend, browser, spawn_auth};
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_token_is_ever_logged() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(move || writer.clone())
        .json()
        .init();

    let google = FakeGoogle::start().await;
    let auth = spawn_auth(SessionBackend::Sqlite, Some(&google)).await;
    let code = auth
        .sign_in(&browser(), "session=logs-test")
        .await
        .code()
        .unwrap();
    assert_eq!(auth.verify(&code).await.status, reqwest::StatusCode::OK);
    let register =
        json!({ "email": "logs@example.com", "password": "a password to hide", "name": "L" });
    let tokens: serde_json::Value = auth
        .http
        .post(format!("{}/api/auth/register", auth.base_url))
        .json(&register)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    auth.http
        .post(format!("{}/api/auth/refresh", auth.base_url))
        .json(&json!({ "refresh_token": refresh }))
        .send()
        .await
        .unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("signed in with Google"),
        "the capture works: {} bytes",
        logs.len()
    );
    let secret = code.trim_start_matches("VERIFIED-");
    for (what, value) in [
        ("session code", secret),
        ("refresh token", refresh.as_str()),
        ("access token", access.as_str()),
        ("password", "a password to hide"),
    ] {
        assert!(!logs.contains(value), "the {what} is in the logs");
    }
}
