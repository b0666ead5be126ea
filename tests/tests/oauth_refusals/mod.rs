//! What the authorization server and the resource servers refuse, each with the answer a client
//! sees: bad redirects (an error page, never a redirect), PKCE, codes used twice, by another
//! client or too late, tokens at the wrong resource or beyond their scopes, a consent form
//! without its CSRF token, and metadata-document client ids on private addresses. Also the
//! discovery documents and the MCP challenge that start it all.

mod codes;
mod discovery;
mod impersonation;
mod pages;
mod pkce;
mod tokens;

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SessionBackend, SpawnedHub, spawn_auth};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::oauth_flow::{
    GPT_CALLBACK, OAuthBrowser, location, operator_client, redirected, token, urlencode,
    with_bearer,
};

const APP_CALLBACK: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

async fn hub() -> (FakeGoogle, SpawnedHub) {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(hub_test_support::Engine::Sqlite, &google)
        .start()
        .await;
    (google, hub)
}

async fn register(hub: &SpawnedHub, body: Value) -> (StatusCode, Value) {
    let response = hub
        .http
        .post(format!("{}/oauth/register", hub.gateway_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        response.status(),
        response.json().await.unwrap_or(Value::Null),
    )
}

fn public_query(client_id: &str, extra: &str) -> String {
    format!(
        "response_type=code&client_id={}&redirect_uri={}&state=s1{extra}",
        urlencode(client_id),
        urlencode(APP_CALLBACK)
    )
}

/// A public client's code for `scope` and `resource`, and the tokens it redeems for.
async fn public_tokens(
    hub: &SpawnedHub,
    person: &OAuthBrowser<'_>,
    client_id: &str,
    extra: &str,
) -> (String, Value) {
    let pkce = format!("&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}");
    let back = person
        .authorize(&public_query(client_id, &pkce), None)
        .await;
    let code = back
        .query
        .get("code")
        .unwrap_or_else(|| panic!("{back:?}"))
        .clone();
    let (status, tokens) = token(
        hub,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", client_id),
            ("code_verifier", VERIFIER),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    (code, tokens)
}
