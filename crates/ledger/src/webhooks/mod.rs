//! Outbound webhooks and low-balance alerts: operators' endpoints, the outbox of events that the
//! ledger's own triggers write in the same database transaction as the change that causes them
//! (migration 0014), their deliveries with retries, and each user's alert setting.
//!
//! The signature (Standard Webhooks) and the HTTP calls are the dispatcher's, in the core service;
//! the email alerts are sent by the auth service, which has the mail sender.

use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::{InvalidInput, StoreError};

mod alerts;
mod schedule;

pub use alerts::{AlertSetting, AlertState, Threshold, validate_threshold};
pub use schedule::{RETRY_STEPS, RETRY_WINDOW_STEPS, next_attempt, random_jitter};

/// Every event type an endpoint may subscribe to.
pub const EVENT_TYPES: [&str; 5] = [
    "credits.low",
    "credits.depleted",
    "credits.granted",
    "credits.refunded",
    "payment.succeeded",
];

/// The prefix of an endpoint's signing secret (Standard Webhooks).
pub const SECRET_PREFIX: &str = "whsec_";

/// The most deliveries one page lists.
pub const MAX_DELIVERY_PAGE: u32 = 500;

/// An operator's endpoint (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Endpoint {
    /// Public id (`ep_…`).
    pub id: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The event types it receives.
    pub events: Vec<String>,
    /// Whether deliveries go out.
    pub enabled: bool,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// An endpoint just made: the only time its secret is shown.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// The stored part.
    pub endpoint: Endpoint,
    /// `whsec_` and the base64 of 32 random bytes.
    pub secret: String,
}

impl NewEndpoint {
    /// The audit entry of its creation by `actor`: its URL and events (never its secret).
    pub fn created_by(&self, actor: &str) -> crate::admin::AuditEntry {
        let mut entry =
            crate::admin::AuditEntry::on_webhook(actor, "webhook.create", &self.endpoint.id);
        entry.after = Some(serde_json::json!({
            "url": self.endpoint.url,
            "events": self.endpoint.events,
        }));
        entry
    }
}

/// Whether `id` has the shape of an endpoint's id: `ep_` and lower-case hex, as
/// [`new_endpoint`] makes them, at most 64 characters.
pub fn is_endpoint_id(id: &str) -> bool {
    id.len() <= 64
        && id.strip_prefix("ep_").is_some_and(|hex| {
            !hex.is_empty()
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// Checks an endpoint's URL (http or https, at most 2000 characters) and event types, and makes
/// its id and secret.
pub fn new_endpoint(url: &str, events: &[String]) -> Result<NewEndpoint, InvalidInput> {
    let url = url.trim();
    let parsed_ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2000
        && url.len() > "https://".len()
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if !parsed_ok {
        return Err(InvalidInput::new(
            "invalid_url",
            "url must be an http:// or https:// address of at most 2000 characters",
        ));
    }
    // No `user:password@` in the address: it would be kept in the endpoint list and the audit
    // log, which other operators read. Receivers authenticate deliveries by their signature.
    let authority = url.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?', '#']).next().unwrap_or("")
    });
    if authority.is_empty() || authority.contains('@') {
        return Err(InvalidInput::new(
            "invalid_url",
            "url must name a host, without a user name or password (deliveries are signed)",
        ));
    }
    let mut chosen: Vec<String> = Vec::new();
    for event in events.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        if !EVENT_TYPES.contains(&event) {
            return Err(InvalidInput::new(
                "invalid_events",
                format!(
                    "unknown event type {event:?}; known: {}",
                    EVENT_TYPES.join(", ")
                ),
            ));
        }
        if !chosen.iter().any(|c| c == event) {
            chosen.push(event.to_owned());
        }
    }
    if chosen.is_empty() {
        return Err(InvalidInput::new(
            "invalid_events",
            format!("name at least one event type: {}", EVENT_TYPES.join(", ")),
        ));
    }
    let mut secret = [0u8; 32];
    let mut id = [0u8; 12];
    getrandom::fill(&mut secret)
        .and_then(|()| getrandom::fill(&mut id))
        .map_err(|_| InvalidInput::new("no_randomness", "the system's random source failed"))?;
    Ok(NewEndpoint {
        endpoint: Endpoint {
            id: format!("ep_{}", hex::encode(id)),
            url: url.to_owned(),
            events: chosen,
            enabled: true,
            created_at: now_micros(),
        },
        secret: format!(
            "{SECRET_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(secret)
        ),
    })
}

/// Now, to the microsecond (what both engines keep).
fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// The stored form of an endpoint's event types: `,a,b,` (so `LIKE '%,a,%'` finds one).
pub fn events_column(events: &[String]) -> String {
    format!(",{},", events.join(","))
}

/// The event types of the stored form.
pub fn parse_events_column(column: &str) -> Vec<String> {
    column
        .split(',')
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Who a delivery goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// An operator's endpoint.
    Webhook,
    /// The user's mailbox (their low-balance email alert).
    Email,
}

impl Channel {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Email => "email",
        }
    }
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The delivery's id.
    pub id: i64,
    /// The event's id (`msg_…`): the `webhook-id` header, the same on every attempt.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The event's data.
    pub data: Value,
    /// When the event happened.
    pub created_at: DateTime<Utc>,
    /// Which attempt this is (1 for the first).
    pub attempt: u32,
    /// The endpoint's URL (webhooks) or the user's address (email).
    pub target: String,
    /// The endpoint's secret (webhooks; empty for email).
    pub secret: String,
}

impl ClaimedDelivery {
    /// The body sent: `{"type", "timestamp", "data"}` (the Standard Webhooks payload shape).
    pub fn body(&self) -> Vec<u8> {
        serde_json::json!({
            "type": self.event_type,
            "timestamp": self.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": self.data,
        })
        .to_string()
        .into_bytes()
    }
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The HTTP status the endpoint answered, if it answered.
    pub status: Option<u16>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// `None`: delivered. `Some(Some(t))`: try again at `t`. `Some(None)`: given up (failed).
    pub retry: Option<Option<DateTime<Utc>>>,
}

impl Attempt {
    /// Delivered (`status`: what the endpoint answered, `None` for a mail).
    pub fn delivered(status: Option<u16>) -> Self {
        Self {
            status,
            error: None,
            retry: None,
        }
    }

    /// Failed now: tried again by the schedule ([`next_attempt`] from `base`, with jitter), or
    /// given up once the schedule's window has passed.
    pub fn failed(
        delivery: &ClaimedDelivery,
        status: Option<u16>,
        error: String,
        base: std::time::Duration,
    ) -> Self {
        let retry = next_attempt(
            delivery.attempt,
            delivery.created_at,
            Utc::now(),
            base,
            random_jitter(),
        );
        Self {
            status,
            error: Some(error),
            retry: Some(retry),
        }
    }

    /// The delivery's status after this attempt (`succeeded`, `pending` or `failed`), and when
    /// it is due again.
    pub fn state(&self) -> (&'static str, Option<DateTime<Utc>>) {
        match self.retry {
            None => ("succeeded", None),
            Some(Some(at)) => ("pending", Some(at)),
            Some(None) => ("failed", None),
        }
    }
}

/// A delivery and its outcome, as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// The delivery's id.
    pub id: i64,
    /// The event's id (`msg_…`, the `webhook-id` header).
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The user it is about.
    pub user_id: Option<Uuid>,
    /// `webhook` or `email`.
    pub channel: String,
    /// The endpoint (webhooks).
    pub endpoint_id: Option<String>,
    /// The endpoint's URL (webhooks).
    pub url: Option<String>,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i32,
    /// The HTTP status of the last attempt, if the endpoint answered.
    pub last_status: Option<i32>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the last attempt was made.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: DateTime<Utc>,
    /// When the event happened.
    pub created_at: DateTime<Utc>,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this status.
    pub status: Option<String>,
    /// Only this endpoint.
    pub endpoint_id: Option<String>,
    /// Only ids below this (the next page).
    pub before: Option<i64>,
    /// At most this many, newest first.
    pub limit: u32,
}

/// Storage of endpoints, the outbox and its deliveries, and alert settings.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Stores a new endpoint with its secret, and `audit` in the same transaction.
    async fn insert_endpoint(
        &self,
        endpoint: &NewEndpoint,
        audit: &crate::admin::AuditEntry,
    ) -> Result<(), StoreError>;
    /// Every endpoint, newest first.
    async fn list_endpoints(&self) -> Result<Vec<Endpoint>, StoreError>;
    /// Turns deliveries to an endpoint on or off; whether it exists.
    async fn set_endpoint_enabled(&self, id: &str, enabled: bool) -> Result<bool, StoreError>;
    /// Deletes an endpoint and its deliveries, with `audit` in the same transaction; whether it
    /// existed (no entry when it did not).
    async fn delete_endpoint(
        &self,
        id: &str,
        audit: &crate::admin::AuditEntry,
    ) -> Result<bool, StoreError>;
    /// Turns up to `limit` new events into deliveries (one per subscribed, enabled endpoint, and
    /// one email when the user asked for it); how many events.
    async fn fan_out(&self, limit: u32) -> Result<u64, StoreError>;
    /// Claims up to `limit` due deliveries of a channel for one attempt each: their next attempt
    /// moves `lease` ahead, so a claimant that dies leaves them due again, and no other claimant
    /// takes them meanwhile.
    async fn claim_deliveries(
        &self,
        channel: Channel,
        limit: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;
    /// Records what an attempt came to.
    async fn record_attempt(&self, id: i64, attempt: &Attempt) -> Result<(), StoreError>;
    /// Deliveries, newest first.
    async fn list_deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError>;
    /// A user's alert setting; `None` for an unknown user.
    async fn alert_setting(&self, user_id: Uuid) -> Result<Option<AlertState>, StoreError>;
    /// Sets a user's alert setting (the threshold is recomputed; nothing fires); whether the
    /// user exists.
    async fn set_alert_setting(
        &self,
        user_id: Uuid,
        setting: &AlertSetting,
    ) -> Result<bool, StoreError>;
    /// Records `LOW_BALANCE_PERCENT`, which grants from now on use.
    async fn set_default_low_percent(&self, percent: u8) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_and_get_a_secret_of_32_bytes() {
        let made = new_endpoint(
            "https://example.com/hook",
            &[
                "credits.low".into(),
                "credits.low".into(),
                " payment.succeeded".into(),
            ],
        )
        .unwrap();
        assert!(made.endpoint.id.starts_with("ep_"));
        assert_eq!(made.endpoint.events, ["credits.low", "payment.succeeded"]);
        let raw = made.secret.strip_prefix(SECRET_PREFIX).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .unwrap();
        assert_eq!(bytes.len(), 32);
        assert!(new_endpoint("ftp://example.com", &["credits.low".into()]).is_err());
        let low = || vec!["credits.low".to_owned()];
        for with_credentials in [
            "https://user:secret@example.com/hook",
            "https://token@example.com",
            "http://a@b@example.com/x",
            "https:///no-host",
        ] {
            assert!(
                new_endpoint(with_credentials, &low()).is_err(),
                "{with_credentials}"
            );
        }
        for fine in [
            "https://example.com/hook?to=a@b.example",
            "http://127.0.0.1:8099/hook#x",
            "https://example.com:8443",
        ] {
            assert!(new_endpoint(fine, &low()).is_ok(), "{fine}");
        }
        assert!(new_endpoint("https://example.com", &["credits.lost".into()]).is_err());
        assert!(new_endpoint("https://example.com", &[]).is_err());
        assert_eq!(
            parse_events_column(&events_column(&made.endpoint.events)),
            made.endpoint.events
        );
    }
}
