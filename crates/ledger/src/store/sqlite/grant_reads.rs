//! Reads of grants (the list, what a read leaves out, the audit's check) and the sweep that
//! expires them, on SQLite.

use super::*;
use crate::grants::{CreditGrant, GrantDiscrepancy, GrantStore};

/// Accounts whose `granted` is not the sum of their grant rows.
pub(super) async fn grant_discrepancies(
    conn: &mut SqliteConnection,
) -> Result<Vec<GrantDiscrepancy>, StoreError> {
    let rows = sqlx::query(
        "SELECT a.user_id, a.granted, COALESCE(SUM(g.remaining), 0) AS total
         FROM credit_accounts a LEFT JOIN credit_grants g ON g.user_id = a.user_id
         GROUP BY a.user_id, a.granted HAVING a.granted <> COALESCE(SUM(g.remaining), 0)",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(GrantDiscrepancy {
                user_id: uuid(row, "user_id")?,
                granted: row.try_get("granted")?,
                sum_of_remaining: row.try_get("total")?,
            })
        })
        .collect()
}

/// What of an account's grants is past its end date (computed on read: the sweep may not have
/// come yet); a read leaves out what of it live holds do not set aside, `max(due - held, 0)`, as
/// the sweep expires it. `?2` is the clock's reading.
pub(super) const DUE_SQL: &str = "CASE WHEN a.granted > 0 THEN COALESCE((SELECT sum(g.remaining)
     FROM credit_grants g WHERE g.user_id = a.user_id AND g.remaining > 0 AND g.expires_at <= ?2),
     0) ELSE 0 END";

/// Expires every due grant; how many accounts lost credits.
fn expire_all_grants(conn: &Connection, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let users: Vec<String> = conn
        .prepare_cached(
            "SELECT DISTINCT user_id FROM credit_grants
             WHERE remaining > 0 AND expires_at <= ?1 LIMIT 1000",
        )?
        .query_map(params![timestamp(now)], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut accounts = 0;
    for user in users {
        let user_id = Uuid::parse_str(&user)
            .map_err(|e| StoreError::Corrupt(format!("user_id {user:?}: {e}")))?;
        if expire_user_grants(conn, user_id, now)? {
            accounts += 1;
        }
    }
    Ok(accounts)
}

#[async_trait]
impl GrantStore for SqliteStore {
    async fn grants(&self, user_id: Uuid) -> Result<Option<Vec<CreditGrant>>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        if super::ledger::account_balance(&mut conn, user_id)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT id, transaction_id, amount, remaining, priority, expires_at, created_at
             FROM credit_grants
             WHERE user_id = ?1 AND remaining > 0 AND (expires_at IS NULL OR expires_at > ?2)
             ORDER BY priority, expires_at IS NULL, expires_at, seq",
        )
        .bind(user_id.to_string())
        .bind(timestamp(self.clock.now()))
        .fetch_all(&mut *conn)
        .await?;
        let grants = rows
            .iter()
            .map(|row| {
                let expires_at: Option<String> = row.try_get("expires_at")?;
                let created_at: String = row.try_get("created_at")?;
                Ok(CreditGrant {
                    id: row.try_get("id")?,
                    transaction_id: row.try_get("transaction_id")?,
                    amount: row.try_get("amount")?,
                    remaining: row.try_get("remaining")?,
                    priority: row.try_get("priority")?,
                    expires_at: expires_at.as_deref().map(parse_time).transpose()?,
                    created_at: parse_time(&created_at)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(grants))
    }

    async fn expire_grants(&self) -> Result<u64, StoreError> {
        let now = self.clock.now();
        self.writer
            .write(move |conn| expire_all_grants(conn, now))
            .await
    }
}
