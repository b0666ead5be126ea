//! Calls to core, as the caller the gateway vouched for: balances and credit holds.

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

/// The ledger over HTTP.
pub struct Core {
    http: reqwest::Client,
    base: String,
}

impl Core {
    pub fn new(http: reqwest::Client, base: &str) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    async fn call(
        &self,
        identity: &Identity,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in identity.headers() {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("the ledger is not answering: {e}"))?;
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok(Answer { status, body })
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
        self.http
            .get(format!("{}/ready", self.base))
            .timeout(std::time::Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}
