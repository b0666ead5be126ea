//! Outbound webhooks: the dispatcher that delivers the outbox (signed as Standard Webhooks say),
//! and the operators' view of the deliveries.
//!
//! The ledger's triggers write each event in the transaction of the change that causes it
//! (`hub_ledger::webhooks`). Here, every half second, the dispatcher turns new events into
//! deliveries, claims the due ones (safe beside other core replicas: PostgreSQL's
//! `FOR UPDATE SKIP LOCKED`, SQLite's single writer), POSTs each with a timeout, and records the
//! outcome: a 2xx is delivered; anything else is tried again on the schedule of
//! [`hub_ledger::webhooks::next_attempt`] for up to three days, then failed.

pub mod routes;
pub mod sign;

use std::sync::Arc;
use std::time::Duration;

use hub_config::{ConfigError, Env};
use hub_ledger::webhooks::{Attempt, Channel, ClaimedDelivery};

use crate::Store;

/// How the dispatcher works.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `LOW_BALANCE_PERCENT`: the default low-balance threshold, in percent of the last grant or
    /// top-up (0 to 100, default 20).
    pub low_balance_percent: u8,
    /// `WEBHOOK_RETRY_BASE_MS`: the first retry's delay, which the whole schedule scales with
    /// (default 5000).
    pub retry_base: Duration,
    /// `WEBHOOK_TIMEOUT_SECONDS`: how long one delivery may take (default 10).
    pub timeout: Duration,
    /// How often the dispatcher looks for work.
    pub poll: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            low_balance_percent: 20,
            retry_base: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            poll: Duration::from_millis(500),
        }
    }
}

impl WebhookConfig {
    /// Reads `LOW_BALANCE_PERCENT`, `WEBHOOK_RETRY_BASE_MS` and `WEBHOOK_TIMEOUT_SECONDS`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let percent: u8 = env.parse_or("LOW_BALANCE_PERCENT", 20, "a percent, 0 to 100")?;
        let base: u64 = env.parse_or("WEBHOOK_RETRY_BASE_MS", 5000, "milliseconds, 1 or more")?;
        let timeout: u64 = env.parse_or("WEBHOOK_TIMEOUT_SECONDS", 10, "seconds, 1 to 60")?;
        let problem = |name: &str, expected: &str| ConfigError {
            name: name.into(),
            problem: "out of range".into(),
            expected: expected.into(),
        };
        if percent > 100 {
            return Err(problem("LOW_BALANCE_PERCENT", "a percent, 0 to 100"));
        }
        if base == 0 {
            return Err(problem("WEBHOOK_RETRY_BASE_MS", "milliseconds, 1 or more"));
        }
        if !(1..=60).contains(&timeout) {
            return Err(problem("WEBHOOK_TIMEOUT_SECONDS", "seconds, 1 to 60"));
        }
        Ok(Self {
            low_balance_percent: percent,
            retry_base: Duration::from_millis(base),
            timeout: Duration::from_secs(timeout),
            ..Self::default()
        })
    }

    /// How long a claimed delivery is kept from other claimants: the timeout and a margin.
    fn lease(&self) -> Duration {
        self.timeout + Duration::from_secs(5)
    }
}

/// Delivers the outbox until the task is dropped.
pub async fn dispatch(store: Arc<dyn Store>, config: WebhookConfig) {
    if let Err(e) = store
        .set_default_low_percent(config.low_balance_percent)
        .await
    {
        tracing::warn!(error = %e, "could not record LOW_BALANCE_PERCENT");
    }
    let http = match reqwest::Client::builder()
        .timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client; no deliveries");
            return;
        }
    };
    let mut every = tokio::time::interval(config.poll);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(e) = round(&store, &http, &config).await {
            tracing::warn!(error = %e, "webhook dispatch failed; trying again");
        }
    }
}

/// One pass: fan new events out, then deliver everything due.
async fn round(
    store: &Arc<dyn Store>,
    http: &reqwest::Client,
    config: &WebhookConfig,
) -> Result<(), crate::StoreError> {
    while store.fan_out(100).await? == 100 {}
    loop {
        let due = store
            .claim_deliveries(Channel::Webhook, 16, config.lease())
            .await?;
        if due.is_empty() {
            return Ok(());
        }
        let mut attempts = tokio::task::JoinSet::new();
        for delivery in due {
            let (http, config) = (http.clone(), config.clone());
            attempts.spawn(async move {
                let outcome = deliver(&http, &config, &delivery).await;
                (delivery.id, outcome)
            });
        }
        while let Some(done) = attempts.join_next().await {
            if let Ok((id, outcome)) = done {
                store.record_attempt(id, &outcome).await?;
            }
        }
    }
}

/// One attempt: the signed POST, and what it came to.
async fn deliver(
    http: &reqwest::Client,
    config: &WebhookConfig,
    delivery: &ClaimedDelivery,
) -> Attempt {
    let body = delivery.body();
    let timestamp = chrono::Utc::now().timestamp();
    let signature = match sign::sign(&delivery.secret, &delivery.event_id, timestamp, &body) {
        Ok(signature) => signature,
        Err(e) => return Attempt::failed(delivery, None, e.to_string(), config.retry_base),
    };
    let sent = http
        .post(&delivery.target)
        .header("content-type", "application/json")
        .header("user-agent", "smart-ai-hub-webhooks")
        .header("webhook-id", &delivery.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => {
            Attempt::delivered(Some(response.status().as_u16()))
        }
        Ok(response) => {
            let status = response.status().as_u16();
            Attempt::failed(
                delivery,
                Some(status),
                format!("answered {status}"),
                config.retry_base,
            )
        }
        Err(e) => Attempt::failed(delivery, None, error_text(e), config.retry_base),
    }
}

/// A transport error in a few words (never the URL's credentials: reqwest leaves them out).
fn error_text(e: reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    format!("{what}: {}", e.without_url())
}
