//! Calls to core, as the caller the gateway vouched for: balances and credit holds.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::identity::Identity;

/// Core's answer: its status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// The error message core gave, for a tool error.
    pub fn message(&self) -> String {
        self.body["error"]["message"]
            .as_str()
            .unwrap_or("the ledger refused")
            .to_owned()
    }
}

/// The ledger: core's HTTP API, over the network or, when core runs in the same process
/// (`hub up`), by calling its routes directly. Either way core sees the same request (the
/// internal credential and the identity headers) and applies the same rules.
pub struct Core {
    transport: Transport,
}

enum Transport {
    /// Core at `base`, over a pooled HTTP client.
    Http { http: reqwest::Client, base: String },
    /// Core's own router in this process: no socket, no HTTP encoding, the same layers.
    Local(axum::Router),
}

/// How long a call to core may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer read from core in process (its answers are small JSON objects).
const MAX_ANSWER_BYTES: usize = 1 << 20;

impl Core {
    /// Core over HTTP at `base`.
    pub fn new(http: reqwest::Client, base: &str) -> Self {
        Self {
            transport: Transport::Http {
                http,
                base: base.trim_end_matches('/').to_owned(),
            },
        }
    }

    /// Core's routes, served in this process.
    pub fn local(router: axum::Router) -> Self {
        Self {
            transport: Transport::Local(router),
        }
    }

    async fn call(
        &self,
        identity: &Identity,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, String> {
        match &self.transport {
            Transport::Http { http, base } => {
                call_over_http(http, base, identity, method, path, body).await
            }
            Transport::Local(router) => call_in_process(router, identity, method, path, body).await,
        }
    }

    /// The caller's balance.
    pub async fn balance(&self, identity: &Identity) -> Result<Answer, String> {
        self.call(
            identity,
            reqwest::Method::GET,
            "/api/mcp/v1/credits/balance",
            None,
        )
        .await
    }

    /// Holds `cost` credits for `ttl_seconds`.
    pub async fn reserve(
        &self,
        identity: &Identity,
        service: &str,
        cost: i64,
        ttl_seconds: i64,
        metadata: Value,
    ) -> Result<Answer, String> {
        let body = json!({ "service": service, "cost": cost, "ttl_seconds": ttl_seconds, "metadata": metadata });
        self.call(
            identity,
            reqwest::Method::POST,
            "/api/mcp/v1/credits/reserve",
            Some(body),
        )
        .await
    }

    /// Captures `amount` (all when `None`) of a hold.
    pub async fn capture(
        &self,
        identity: &Identity,
        reservation: &str,
        amount: Option<i64>,
    ) -> Result<Answer, String> {
        let path = format!("/api/mcp/v1/credits/reservations/{reservation}/capture");
        let body = amount.map(|a| json!({ "amount": a }));
        self.call(identity, reqwest::Method::POST, &path, body)
            .await
    }

    /// Releases a hold.
    pub async fn release(&self, identity: &Identity, reservation: &str) -> Result<Answer, String> {
        let path = format!("/api/mcp/v1/credits/reservations/{reservation}/release");
        self.call(identity, reqwest::Method::POST, &path, None)
            .await
    }

    /// Whether core is ready.
    pub async fn ready(&self) -> bool {
        match &self.transport {
            Transport::Http { http, base } => http
                .get(format!("{base}/ready"))
                .timeout(std::time::Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()),
            Transport::Local(router) => {
                let Ok(request) = http::Request::get("/ready").body(axum::body::Body::empty())
                else {
                    return false;
                };
                ask(router, request, Duration::from_secs(2))
                    .await
                    .is_some_and(|(status, _)| status.is_success())
            }
        }
    }
}

/// `request` through core's router in this process: its status and body, if it answered
/// within `limit`.
async fn ask(
    router: &axum::Router,
    request: http::Request<axum::body::Body>,
    limit: Duration,
) -> Option<(StatusCode, Option<axum::body::Bytes>)> {
    let answered = async {
        let response = match tower::ServiceExt::oneshot(router.clone(), request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES).await;
        (status, bytes.ok())
    };
    tokio::time::timeout(limit, answered).await.ok()
}

fn not_answering(e: &dyn std::fmt::Display) -> String {
    format!("the ledger is not answering: {e}")
}

async fn call_over_http(
    http: &reqwest::Client,
    base: &str,
    identity: &Identity,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Answer, String> {
    let mut request = http.request(method, format!("{base}{path}"));
    for (name, value) in identity.headers() {
        request = request.header(name, value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .timeout(CALL_TIMEOUT)
        .send()
        .await
        .map_err(|e| not_answering(&e))?;
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok(Answer { status, body })
}

async fn call_in_process(
    router: &axum::Router,
    identity: &Identity,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Answer, String> {
    let mut request = http::Request::builder().method(method).uri(path);
    for (name, value) in identity.headers() {
        request = request.header(name, value);
    }
    let body = match body {
        Some(body) => {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
            axum::body::Body::from(body.to_string())
        }
        None => axum::body::Body::empty(),
    };
    let request = request.body(body).map_err(|e| not_answering(&e))?;
    let (status, bytes) = ask(router, request, CALL_TIMEOUT)
        .await
        .ok_or_else(|| not_answering(&"deadline has elapsed"))?;
    let body = bytes
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .unwrap_or(Value::Null);
    Ok(Answer { status, body })
}
