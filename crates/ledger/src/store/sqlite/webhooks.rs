//! Webhook endpoints, the outbox's fan-out and deliveries, and alert settings on SQLite. The
//! events themselves are written by the triggers of migration 0014, inside the writer's own
//! savepoints; the single writer makes each claim exclusive.

use super::*;
use crate::admin::AuditEntry;
use crate::webhooks::{
    AlertSetting, AlertState, Attempt, Channel, ClaimedDelivery, Delivery, DeliveryFilter,
    Endpoint, NewEndpoint, Threshold, WebhookStore, events_column, parse_events_column,
};

/// A debit or reservation refused for want of credits: credits.depleted, once until re-armed.
pub(super) fn refused(conn: &Connection, user_id: Uuid) -> Result<(), StoreError> {
    let marked = conn
        .prepare_cached(
            "UPDATE credit_accounts SET alert_state = 2
             WHERE user_id = ?1 AND alert_state < 2 AND frozen = 0
             RETURNING balance, held, low_at, alert_email",
        )?
        .query_row(params![user_id.to_string()], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, bool>(3)?,
            ))
        })
        .optional()?;
    let Some((balance, held, low_at, email)) = marked else {
        return Ok(());
    };
    let data = serde_json::json!({
        "user_id": user_id, "balance": balance, "held": held, "available": balance - held,
        "threshold": low_at, "refused": true,
    });
    conn.prepare_cached(
        "INSERT INTO webhook_events (id, type, user_id, data, email, created_at)
         SELECT ?1, 'credits.depleted', ?2, ?3, ?4, ?5
         WHERE ?4 OR EXISTS (SELECT 1 FROM webhook_endpoints
                             WHERE enabled AND events LIKE '%,credits.depleted,%')",
    )?
    .execute(params![
        format!("msg_{}", Uuid::new_v4().simple()),
        user_id.to_string(),
        data.to_string(),
        email,
        timestamp(now()),
    ])?;
    Ok(())
}

fn endpoint(row: &SqliteRow) -> Result<Endpoint, StoreError> {
    Ok(Endpoint {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        events: parse_events_column(row.try_get("events")?),
        enabled: row.try_get("enabled")?,
        created_at: parse_time(row.try_get("created_at")?)?,
    })
}

fn delivery(row: &SqliteRow) -> Result<Delivery, StoreError> {
    let user_id: Option<String> = row.try_get("user_id")?;
    let last_attempt_at: Option<String> = row.try_get("last_attempt_at")?;
    Ok(Delivery {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("type")?,
        user_id: user_id.as_deref().and_then(|u| Uuid::parse_str(u).ok()),
        channel: row.try_get("channel")?,
        endpoint_id: row.try_get("endpoint_id")?,
        url: row.try_get("url")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        last_attempt_at: last_attempt_at.as_deref().map(parse_time).transpose()?,
        next_attempt_at: parse_time(row.try_get("next_attempt_at")?)?,
        created_at: parse_time(row.try_get("created_at")?)?,
    })
}

fn fan_out(conn: &Connection, limit: u32) -> Result<u64, StoreError> {
    let due: Vec<(String, String, bool)> = conn
        .prepare_cached(
            "SELECT id, type, email FROM webhook_events WHERE fanned_out = 0 ORDER BY seq LIMIT ?1",
        )?
        .query_map(params![limit], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let at = timestamp(now());
    for (id, kind, email) in &due {
        conn.prepare_cached(
            "INSERT INTO webhook_deliveries (event_id, endpoint_id, channel, next_attempt_at, created_at)
             SELECT ?1, id, 'webhook', ?3, ?3 FROM webhook_endpoints
             WHERE enabled AND events LIKE '%,' || ?2 || ',%'",
        )?
        .execute(params![id, kind, at])?;
        if *email && (kind == "credits.low" || kind == "credits.depleted") {
            conn.prepare_cached(
                "INSERT INTO webhook_deliveries (event_id, channel, next_attempt_at, created_at)
                 VALUES (?1, 'email', ?2, ?2)",
            )?
            .execute(params![id, at])?;
        }
        conn.prepare_cached("UPDATE webhook_events SET fanned_out = 1 WHERE id = ?1")?
            .execute(params![id])?;
    }
    Ok(due.len() as u64)
}

fn claim(
    conn: &Connection,
    channel: Channel,
    limit: u32,
    lease: std::time::Duration,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let now = now();
    let target = match channel {
        Channel::Webhook => "JOIN webhook_endpoints p ON p.id = d.endpoint_id AND p.enabled",
        Channel::Email => "JOIN users u ON u.id = e.user_id",
    };
    let columns = match channel {
        Channel::Webhook => "p.url, p.secret",
        Channel::Email => "u.email, ''",
    };
    let due = conn
        .prepare_cached(&format!(
            "SELECT d.id, d.event_id, d.attempts + 1, e.type, e.data, e.created_at, {columns}
             FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id {target}
             WHERE d.status = 'pending' AND d.channel = ?1 AND d.next_attempt_at <= ?2
             ORDER BY d.next_attempt_at LIMIT ?3"
        ))?
        .query_map(params![channel.as_str(), timestamp(now), limit], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, u32>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, String>(6)?,
                row.get::<_, String>(7)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let leased = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60));
    let mut claimed = Vec::with_capacity(due.len());
    for (id, event_id, attempt, event_type, data, created_at, target, secret) in due {
        conn.prepare_cached(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, last_attempt_at = ?2,
                 next_attempt_at = ?3 WHERE id = ?1",
        )?
        .execute(params![id, timestamp(now), timestamp(leased)])?;
        claimed.push(ClaimedDelivery {
            id,
            event_id,
            event_type,
            data: serde_json::from_str(&data)?,
            created_at: parse_time(&created_at)?,
            attempt,
            target,
            secret,
        });
    }
    Ok(claimed)
}

const LOW_AT: &str = "coalesce(?3, last_grant * coalesce(?4,
    (SELECT low_balance_percent FROM alert_defaults WHERE id = 1), 20) / 100)";

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn insert_endpoint(
        &self,
        new: &NewEndpoint,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let e = new.endpoint.clone();
        let secret = new.secret.clone();
        let audit = audit.clone();
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO webhook_endpoints (id, url, events, secret, enabled, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    e.id,
                    e.url,
                    events_column(&e.events),
                    secret,
                    e.enabled,
                    timestamp(e.created_at)
                ])?;
                super::admin::record_entry(conn, &audit)
            })
            .await
    }

    async fn list_endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        sqlx::query(
            "SELECT id, url, events, enabled, created_at FROM webhook_endpoints
             ORDER BY created_at DESC, id",
        )
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(endpoint)
        .collect()
    }

    async fn set_endpoint_enabled(&self, id: &str, enabled: bool) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.writer
            .write(move |conn| {
                Ok(conn
                    .prepare_cached("UPDATE webhook_endpoints SET enabled = ?2 WHERE id = ?1")?
                    .execute(params![id, enabled])?
                    == 1)
            })
            .await
    }

    async fn delete_endpoint(&self, id: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        let (id, audit) = (id.to_owned(), audit.clone());
        self.writer
            .write(move |conn| {
                conn.prepare_cached("DELETE FROM webhook_deliveries WHERE endpoint_id = ?1")?
                    .execute(params![id])?;
                let deleted = conn
                    .prepare_cached("DELETE FROM webhook_endpoints WHERE id = ?1")?
                    .execute(params![id])?
                    == 1;
                if deleted {
                    super::admin::record_entry(conn, &audit)?;
                }
                Ok(deleted)
            })
            .await
    }

    async fn fan_out(&self, limit: u32) -> Result<u64, StoreError> {
        self.writer.write(move |conn| fan_out(conn, limit)).await
    }

    async fn claim_deliveries(
        &self,
        channel: Channel,
        limit: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.writer
            .write(move |conn| claim(conn, channel, limit, lease))
            .await
    }

    async fn record_attempt(&self, id: i64, attempt: &Attempt) -> Result<(), StoreError> {
        let (status, next) = attempt.state();
        let next = next.map(timestamp);
        let (code, error) = (attempt.status, attempt.error.clone());
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE webhook_deliveries SET status = ?2,
                         next_attempt_at = coalesce(?3, next_attempt_at), last_status = ?4,
                         last_error = ?5
                     WHERE id = ?1",
                )?
                .execute(params![id, status, next, code, error])?;
                Ok(())
            })
            .await
    }

    async fn list_deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        sqlx::query(
            "SELECT d.id, d.event_id, e.type, e.user_id, d.channel, d.endpoint_id, p.url, d.status,
                    d.attempts, d.last_status, d.last_error, d.last_attempt_at, d.next_attempt_at,
                    e.created_at
             FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
             LEFT JOIN webhook_endpoints p ON p.id = d.endpoint_id
             WHERE (?1 IS NULL OR d.status = ?1) AND (?2 IS NULL OR d.endpoint_id = ?2)
               AND (?3 IS NULL OR d.id < ?3)
             ORDER BY d.id DESC LIMIT ?4",
        )
        .bind(filter.status.as_deref())
        .bind(filter.endpoint_id.as_deref())
        .bind(filter.before)
        .bind(i64::from(filter.limit))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(delivery)
        .collect()
    }

    async fn alert_setting(&self, user_id: Uuid) -> Result<Option<AlertState>, StoreError> {
        let row = sqlx::query(
            "SELECT alert_email, alert_credits, alert_percent, low_at
             FROM credit_accounts WHERE user_id = ?1",
        )
        .bind(user_id.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(AlertState {
                setting: AlertSetting {
                    email: row.try_get("alert_email")?,
                    threshold: Threshold::from_columns(
                        row.try_get("alert_credits")?,
                        row.try_get("alert_percent")?,
                    ),
                },
                low_at: row.try_get("low_at")?,
            })
        })
        .transpose()
    }

    async fn set_alert_setting(
        &self,
        user_id: Uuid,
        setting: &AlertSetting,
    ) -> Result<bool, StoreError> {
        let (credits, percent) = setting.threshold.columns();
        let email = setting.email;
        self.writer
            .write(move |conn| {
                // The level is set to where the balance stands: a new threshold is no crossing. A
                // fired credits.depleted stays fired (only credits coming back re-arm it).
                Ok(conn
                    .prepare_cached(&format!(
                        "UPDATE credit_accounts SET alert_email = ?2, alert_credits = ?3,
                             alert_percent = ?4, low_at = {LOW_AT},
                             alert_state = CASE WHEN balance - held <= 0 OR alert_state = 2 THEN 2
                                                WHEN balance - held <= {LOW_AT} THEN 1 ELSE 0 END
                         WHERE user_id = ?1"
                    ))?
                    .execute(params![user_id.to_string(), email, credits, percent])?
                    == 1)
            })
            .await
    }

    async fn set_default_low_percent(&self, percent: u8) -> Result<(), StoreError> {
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE alert_defaults SET low_balance_percent = ?1 WHERE id = 1",
                )?
                .execute(params![percent])?;
                Ok(())
            })
            .await
    }
}
