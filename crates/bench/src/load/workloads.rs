//! The loads: what each benchmark sends (debits, plain `GET`s, session checks), and the fixed
//! upstream the proxying benchmark sends to.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hub_config::Env;
use serde_json::json;

use super::accounts::sessions;
use super::bench_user;
use super::drive::{Workload, drive, split_url};

/// How the deduct benchmark presents itself.
pub(super) enum Credential {
    /// The internal credential, straight to core.
    Internal(String),
    /// A service key, through the gateway.
    ServiceKey(String),
}

/// `POST …/credits/deduct` for a benchmark account picked at random.
struct DeductLoad {
    authority: String,
    path: String,
    credential: Credential,
    body: Bytes,
    users: u64,
}

impl Workload for DeductLoad {
    fn request(&self, pick: u64) -> anyhow::Result<http::Request<Full<Bytes>>> {
        let request = http::Request::post(self.path.as_str())
            .header(http::header::HOST, self.authority.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-user-id", bench_user(pick % self.users + 1).to_string());
        let request = match &self.credential {
            Credential::Internal(token) => request
                .header("x-hub-internal", token.as_str())
                .header("x-hub-caller", "system"),
            Credential::ServiceKey(key) => request.header("x-api-key", key.as_str()),
        };
        Ok(request.body(Full::new(self.body.clone()))?)
    }
}

/// `GET` of one path with fixed headers.
struct GetLoad {
    authority: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Workload for GetLoad {
    fn request(&self, _: u64) -> anyhow::Result<http::Request<Full<Bytes>>> {
        let mut request = http::Request::get(self.path.as_str())
            .header(http::header::HOST, self.authority.as_str());
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        Ok(request.body(Full::new(Bytes::new()))?)
    }
}

/// Drives `GET` of `url` with `headers`.
pub(super) async fn get(
    url: &str,
    headers: Vec<(String, String)>,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let (authority, path) = split_url(url)?;
    let workload = std::sync::Arc::new(GetLoad {
        authority: authority.clone(),
        path: if path.is_empty() { "/".into() } else { path },
        headers,
    });
    drive(
        &authority,
        workload,
        concurrency,
        duration,
        json!({ "url": url }),
    )
    .await
}

/// `Name: value` pairs.
pub fn parse_headers(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    raw.iter()
        .map(|h| {
            let (name, value) = h
                .split_once(':')
                .with_context(|| format!("--header {h:?} is not `Name: value`"))?;
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// A fixed small JSON body on every path, kept alive: what nginx and the gateway both proxy to.
pub(super) async fn upstream(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let app = axum::Router::new().fallback(|| async {
        (
            [(http::header::CONTENT_TYPE, "application/json")],
            r#"{"ok":true,"from":"upstream"}"#,
        )
    });
    axum::serve(listener, app).await?;
    Ok(())
}

/// Drives debits of `cost` spread over `users` benchmark accounts.
pub(super) async fn deduct(
    url: &str,
    credential: Credential,
    users: u64,
    concurrency: usize,
    duration: Duration,
    cost: i64,
) -> anyhow::Result<()> {
    let (authority, prefix) = split_url(url)?;
    let workload = std::sync::Arc::new(DeductLoad {
        path: format!("{prefix}/api/mcp/v1/credits/deduct"),
        authority: authority.clone(),
        credential,
        body: Bytes::from(serde_json::to_vec(
            &json!({ "service": "bench", "cost": cost }),
        )?),
        users,
    });
    drive(
        &authority,
        workload,
        concurrency,
        duration,
        json!({ "users": users }),
    )
    .await
}

/// `GET …/verify-session` with a session code picked at random.
struct VerifyLoad {
    authority: String,
    path: String,
    tokens: Vec<String>,
}

impl Workload for VerifyLoad {
    fn request(&self, pick: u64) -> anyhow::Result<http::Request<Full<Bytes>>> {
        let token = &self.tokens[usize::try_from(pick % self.tokens.len() as u64)?];
        Ok(http::Request::get(self.path.as_str())
            .header(http::header::HOST, self.authority.as_str())
            .header("x-session-token", token.as_str())
            .body(Full::new(Bytes::new()))?)
    }
}

/// Makes a session for each of the first `users` benchmark accounts (`hub-bench setup` made
/// them) in the configured session store, then drives `verify-session` with their tokens.
pub(super) async fn verify(
    env: &Env,
    url: &str,
    users: u64,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let tokens = sessions(env, users).await?;
    let (authority, prefix) = split_url(url)?;
    let workload = std::sync::Arc::new(VerifyLoad {
        path: format!("{prefix}/api/auth/verify-session"),
        authority: authority.clone(),
        tokens,
    });
    drive(
        &authority,
        workload,
        concurrency,
        duration,
        json!({ "sessions": users }),
    )
    .await
}
