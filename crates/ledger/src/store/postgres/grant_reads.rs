//! Reads of grants (the list, what a read leaves out, the audit's check) and the sweep that
//! expires them, on PostgreSQL.

use super::*;
use crate::grants::{CreditGrant, GrantDiscrepancy, GrantStore};

/// Accounts whose `granted` is not the sum of their grant rows.
pub(super) async fn grant_discrepancies(
    pool: &PgPool,
) -> Result<Vec<GrantDiscrepancy>, StoreError> {
    let rows: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT a.user_id, a.granted, COALESCE(SUM(g.remaining), 0)::bigint
         FROM credit_accounts a LEFT JOIN credit_grants g ON g.user_id = a.user_id
         GROUP BY a.user_id, a.granted HAVING a.granted <> COALESCE(SUM(g.remaining), 0)",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, granted, sum_of_remaining)| GrantDiscrepancy {
            user_id,
            granted,
            sum_of_remaining,
        })
        .collect())
}

/// What of an account's grants is past its end date (computed on read: the sweep may not have
/// come yet); a read leaves out what of it live holds do not set aside, `GREATEST(due - held,
/// 0)`, as the sweep expires it. `a` is the account row, `$2` the clock's reading.
pub(super) const DUE_SQL: &str = "CASE WHEN a.granted > 0 THEN COALESCE((SELECT sum(g.remaining)
     FROM credit_grants g WHERE g.user_id = a.user_id AND g.remaining > 0 AND g.expires_at <= $2),
     0)::bigint ELSE 0 END";

#[async_trait]
impl GrantStore for PgStore {
    async fn grants(&self, user_id: Uuid) -> Result<Option<Vec<CreditGrant>>, StoreError> {
        // Whether the account exists: a plain read, not the balance with its due credits.
        let account: Option<bool> =
            sqlx::query_scalar("SELECT true FROM credit_accounts WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        if account.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT id, transaction_id, amount, remaining, priority, expires_at, created_at
             FROM credit_grants
             WHERE user_id = $1 AND remaining > 0 AND (expires_at IS NULL OR expires_at > $2)
             ORDER BY priority, expires_at NULLS LAST, seq",
        )
        .bind(user_id)
        .bind(self.clock.now())
        .fetch_all(&self.pool)
        .await?;
        let grants = rows
            .iter()
            .map(|row| {
                Ok(CreditGrant {
                    id: row.try_get("id")?,
                    transaction_id: row.try_get("transaction_id")?,
                    amount: row.try_get("amount")?,
                    remaining: row.try_get("remaining")?,
                    priority: row.try_get("priority")?,
                    expires_at: row.try_get("expires_at")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some(grants))
    }

    async fn expire_grants(&self) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let users: Vec<Uuid> = sqlx::query_scalar(
            "SELECT DISTINCT user_id FROM credit_grants
             WHERE remaining > 0 AND expires_at <= $1 LIMIT 1000",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut accounts = 0;
        for user_id in users {
            let mut tx = self.pool.begin().await?;
            // Hold rows before the account row, as everywhere: expired holds keep nothing.
            expire_user_holds(&mut tx, user_id).await?;
            if let Some(account) = lock_account(&mut tx, user_id).await?
                && expire_user_grants(&mut tx, user_id, account.held, now).await?
            {
                accounts += 1;
            }
            tx.commit().await?;
        }
        Ok(accounts)
    }
}
