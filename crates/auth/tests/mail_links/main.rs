//! The links sent by mail, through a real SMTP server (aiosmtpd in a child process) and through
//! the outbox: verifying an address (and its credits, once), resetting a password (and signing
//! out everywhere), and asking for a reset without learning who has an account.

mod limits;
mod reset;
mod verification;

use std::net::IpAddr;

use hub_test_support::fake_google::{FakeAccount, FakeGoogle};
use hub_test_support::smtp::{SmtpServer, token_in};
use hub_test_support::{
    SessionBackend, SpawnedAuth, browser, session_backends, spawn_auth, spawn_auth_configured,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

const VERIFY: &str = "/api/auth/email/verify";
const FORGOT: &str = "/api/auth/password/forgot";
const RESET: &str = "/api/auth/password/reset";
const PASSWORD: &str = "correct horse battery";

async fn post(auth: &SpawnedAuth, path: &str, body: Value) -> (StatusCode, Value) {
    post_from(auth, "203.0.113.1", path, body).await
}

/// A request as the gateway forwards it for a client at `client` (the test is a trusted proxy).
async fn post_from(
    auth: &SpawnedAuth,
    client: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let r = auth
        .http
        .post(format!("{}{path}", auth.base_url))
        .header("x-forwarded-for", client)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn with_smtp(backend: SessionBackend, smtp: &SmtpServer) -> SpawnedAuth {
    let url = smtp.url.clone();
    spawn_auth_configured(backend, None, move |config| {
        config.mail.smtp_url = Some(url.into());
        config.mail.from = "Hub Test <hub@example.org>".into();
        config.public_base_url = "https://hub.example".into();
    })
    .await
}

async fn register(auth: &SpawnedAuth, email: &str) -> (Uuid, Value) {
    let (status, tokens) = post(
        auth,
        "/api/auth/register",
        json!({ "email": email, "password": PASSWORD, "name": "Malee" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{tokens}");
    let id = tokens["user"]["id"].as_str().unwrap().parse().unwrap();
    (id, tokens)
}

async fn login(auth: &SpawnedAuth, email: &str, password: &str) -> (StatusCode, Value) {
    post(
        auth,
        "/api/auth/login",
        json!({ "email": email, "password": password }),
    )
    .await
}
