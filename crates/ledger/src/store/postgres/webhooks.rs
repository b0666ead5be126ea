//! Webhook endpoints, the outbox's fan-out and deliveries, and alert settings on PostgreSQL. The
//! events themselves are written by the triggers of migration 0014, inside the ledger's own
//! transactions; claims take rows with `FOR UPDATE SKIP LOCKED`, so core replicas share the work.

use super::*;
use crate::admin::AuditEntry;
use crate::webhooks::{
    AlertSetting, AlertState, Attempt, Channel, ClaimedDelivery, Delivery, DeliveryFilter,
    Endpoint, NewEndpoint, Threshold, WebhookStore, events_column, parse_events_column,
};

/// A debit or reservation refused for want of credits: credits.depleted, once until re-armed.
pub(super) async fn refused(conn: &mut PgConnection, user_id: Uuid) -> Result<(), StoreError> {
    sqlx::query("SELECT credit_refused($1)")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn endpoint(row: &PgRow) -> Result<Endpoint, StoreError> {
    Ok(Endpoint {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        events: parse_events_column(row.try_get("events")?),
        enabled: row.try_get("enabled")?,
        created_at: row.try_get("created_at")?,
    })
}

fn delivery(row: &PgRow) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("type")?,
        user_id: row.try_get("user_id")?,
        channel: row.try_get("channel")?,
        endpoint_id: row.try_get("endpoint_id")?,
        url: row.try_get("url")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        last_attempt_at: row.try_get("last_attempt_at")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        created_at: row.try_get("created_at")?,
    })
}

const CLAIM_WEBHOOKS: &str = "\
UPDATE webhook_deliveries d
SET attempts = d.attempts + 1, last_attempt_at = now(),
    next_attempt_at = now() + make_interval(secs => $2)
FROM webhook_events e, webhook_endpoints p
WHERE d.id IN (SELECT d2.id FROM webhook_deliveries d2
               JOIN webhook_endpoints p2 ON p2.id = d2.endpoint_id AND p2.enabled
               WHERE d2.status = 'pending' AND d2.channel = 'webhook' AND d2.next_attempt_at <= now()
               ORDER BY d2.next_attempt_at LIMIT $1 FOR UPDATE OF d2 SKIP LOCKED)
  AND e.id = d.event_id AND p.id = d.endpoint_id
RETURNING d.id, d.event_id, d.attempts, e.type, e.data, e.created_at, p.url AS target, p.secret";

const CLAIM_EMAILS: &str = "\
UPDATE webhook_deliveries d
SET attempts = d.attempts + 1, last_attempt_at = now(),
    next_attempt_at = now() + make_interval(secs => $2)
FROM webhook_events e, users u
WHERE d.id IN (SELECT id FROM webhook_deliveries
               WHERE status = 'pending' AND channel = 'email' AND next_attempt_at <= now()
               ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
  AND e.id = d.event_id AND u.id = e.user_id
RETURNING d.id, d.event_id, d.attempts, e.type, e.data, e.created_at, u.email AS target, '' AS secret";

const FAN_OUT: &str = "\
WITH due AS (
    SELECT id, type, email FROM webhook_events WHERE NOT fanned_out
    ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED
), marked AS (
    UPDATE webhook_events e SET fanned_out = true FROM due WHERE e.id = due.id
), hooks AS (
    INSERT INTO webhook_deliveries (event_id, endpoint_id, channel)
    SELECT due.id, p.id, 'webhook' FROM due
    JOIN webhook_endpoints p ON p.enabled AND p.events LIKE '%,' || due.type || ',%'
), mails AS (
    INSERT INTO webhook_deliveries (event_id, channel)
    SELECT id, 'email' FROM due WHERE email AND type IN ('credits.low', 'credits.depleted')
)
SELECT count(*) FROM due";

#[async_trait]
impl WebhookStore for PgStore {
    async fn insert_endpoint(
        &self,
        new: &NewEndpoint,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, url, events, secret, enabled, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&new.endpoint.id)
        .bind(&new.endpoint.url)
        .bind(events_column(&new.endpoint.events))
        .bind(&new.secret)
        .bind(new.endpoint.enabled)
        .bind(new.endpoint.created_at)
        .execute(&mut *tx)
        .await?;
        super::admin::record_entry(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        sqlx::query(
            "SELECT id, url, events, enabled, created_at FROM webhook_endpoints
             ORDER BY created_at DESC, id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(endpoint)
        .collect()
    }

    async fn set_endpoint_enabled(&self, id: &str, enabled: bool) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("UPDATE webhook_endpoints SET enabled = $2 WHERE id = $1")
                .bind(id)
                .bind(enabled)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1,
        )
    }

    async fn delete_endpoint(&self, id: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if deleted {
            super::admin::record_entry(&mut tx, audit).await?;
            tx.commit().await?;
        }
        Ok(deleted)
    }

    async fn fan_out(&self, limit: u32) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(FAN_OUT)
            .bind(i64::from(limit))
            .fetch_one(&self.pool)
            .await?;
        Ok(count as u64)
    }

    async fn claim_deliveries(
        &self,
        channel: Channel,
        limit: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let sql = match channel {
            Channel::Webhook => CLAIM_WEBHOOKS,
            Channel::Email => CLAIM_EMAILS,
        };
        let rows = sqlx::query(sql)
            .bind(i64::from(limit))
            .bind(lease.as_secs_f64())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ClaimedDelivery {
                    id: row.try_get("id")?,
                    event_id: row.try_get("event_id")?,
                    event_type: row.try_get("type")?,
                    data: row.try_get::<Json<Value>, _>("data")?.0,
                    created_at: row.try_get("created_at")?,
                    attempt: row.try_get::<i32, _>("attempts")?.max(0) as u32,
                    target: row.try_get("target")?,
                    secret: row.try_get("secret")?,
                })
            })
            .collect()
    }

    async fn record_attempt(&self, id: i64, attempt: &Attempt) -> Result<(), StoreError> {
        let (status, next) = attempt.state();
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $2,
                 next_attempt_at = coalesce($3, next_attempt_at), last_status = $4, last_error = $5
             WHERE id = $1",
        )
        .bind(id)
        .bind(status)
        .bind(next)
        .bind(attempt.status.map(i32::from))
        .bind(attempt.error.as_deref())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        sqlx::query(
            "SELECT d.id, d.event_id, e.type, e.user_id, d.channel, d.endpoint_id, p.url, d.status,
                    d.attempts, d.last_status, d.last_error, d.last_attempt_at, d.next_attempt_at,
                    e.created_at
             FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
             LEFT JOIN webhook_endpoints p ON p.id = d.endpoint_id
             WHERE ($1::text IS NULL OR d.status = $1) AND ($2::text IS NULL OR d.endpoint_id = $2)
               AND ($3::bigint IS NULL OR d.id < $3)
             ORDER BY d.id DESC LIMIT $4",
        )
        .bind(filter.status.as_deref())
        .bind(filter.endpoint_id.as_deref())
        .bind(filter.before)
        .bind(i64::from(filter.limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(delivery)
        .collect()
    }

    async fn alert_setting(&self, user_id: Uuid) -> Result<Option<AlertState>, StoreError> {
        let row = sqlx::query(
            "SELECT alert_email, alert_credits, alert_percent::bigint AS alert_percent, low_at
             FROM credit_accounts WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
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
        // The level is set to where the balance stands: a new threshold is not a crossing. A
        // fired credits.depleted stays fired (only credits coming back re-arm it), so saving the
        // form cannot make a refused debit fire it again.
        let low_at = "coalesce($3, last_grant * coalesce($4::bigint,
            (SELECT low_balance_percent FROM alert_defaults WHERE id = 1), 20) / 100)";
        Ok(sqlx::query(&format!(
            "UPDATE credit_accounts SET alert_email = $2, alert_credits = $3,
                 alert_percent = $4::smallint, low_at = {low_at},
                 alert_state = CASE WHEN balance - held <= 0 OR alert_state = 2 THEN 2
                                    WHEN balance - held <= {low_at} THEN 1 ELSE 0 END
             WHERE user_id = $1"
        ))
        .bind(user_id)
        .bind(setting.email)
        .bind(credits)
        .bind(percent)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    async fn set_default_low_percent(&self, percent: u8) -> Result<(), StoreError> {
        sqlx::query("UPDATE alert_defaults SET low_balance_percent = $1 WHERE id = 1")
            .bind(i16::from(percent))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
