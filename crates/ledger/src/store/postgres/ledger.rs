//! The ledger operations and its reads.

use super::*;

#[async_trait]
impl LedgerStore for PgStore {
    async fn balance(&self, user_id: Uuid) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(&format!(
            "SELECT a.balance - GREATEST({DUE_SQL} - a.held, 0)
                 FROM credit_accounts a WHERE a.user_id = $1"
        ))
        .bind(user_id)
        .bind(self.clock.now())
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn debit(
        &self,
        debit: &Debit,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<DebitOutcome>, StoreError> {
        if claim.is_none() && debit.app_grant.is_none() {
            // One statement is its own transaction: no BEGIN/COMMIT round trips.
            let mut conn = self.pool.acquire().await?;
            return Ok(Idempotent::Fresh(
                debit.apply_at(&mut conn, None, self.clock.now()).await?,
            ));
        }
        run_idempotent_at(&self.pool, debit, claim, self.clock.now()).await
    }

    async fn refund(
        &self,
        refund: &Refund,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<RefundOutcome>, StoreError> {
        run_idempotent_at(&self.pool, refund, claim, self.clock.now()).await
    }

    async fn grant(
        &self,
        grant: &Grant,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<GrantOutcome>, StoreError> {
        run_idempotent(&self.pool, grant, claim).await
    }

    async fn transactions(
        &self,
        user_id: Uuid,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Option<TransactionPage>, StoreError> {
        if self.balance(user_id).await?.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM credit_transactions
             WHERE user_id = $1
               AND ($2::text IS NULL
                    OR seq < (SELECT seq FROM credit_transactions WHERE id = $2 AND user_id = $1))
             ORDER BY seq DESC LIMIT $3"
        ))
        .bind(user_id)
        .bind(cursor)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let transactions = rows
            .iter()
            .map(transaction)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(crate::page(transactions, limit)))
    }

    async fn holdings(&self, user_id: Uuid) -> Result<Option<Holdings>, StoreError> {
        // Credits past their end date are not shown, swept or not (computed on read).
        let row = sqlx::query(&format!(
            "SELECT h.balance - GREATEST(h.due - h.held, 0) AS balance, h.held, h.frozen
             FROM (SELECT a.balance, a.frozen, {DUE_SQL} AS due,
                          COALESCE((SELECT sum(h.amount) FROM credit_holds h
                            WHERE h.user_id = a.user_id AND h.status = 'held'
                              AND h.expires_at > now()), 0)::bigint AS held
                   FROM credit_accounts a WHERE a.user_id = $1) h"
        ))
        .bind(user_id)
        .bind(self.clock.now())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Holdings {
                balance: row.try_get("balance")?,
                held: row.try_get("held")?,
                frozen: row.try_get("frozen")?,
            })
        })
        .transpose()
    }

    async fn reserve(
        &self,
        reserve: &Reserve,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<ReserveOutcome>, StoreError> {
        run_idempotent_at(&self.pool, reserve, claim, self.clock.now()).await
    }

    async fn settle(&self, operation: &Settle) -> Result<SettleOutcome, StoreError> {
        settle(&self.pool, operation, self.clock.now()).await
    }

    async fn expire_holds(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query(&format!(
            "WITH expired AS (
                UPDATE credit_holds SET status = 'expired', settled_at = now()
                WHERE status = 'held' AND expires_at <= now()
                RETURNING user_id, amount, grant_id, spend_day),
             {},
             freed AS (SELECT user_id, sum(amount)::bigint AS amount FROM expired GROUP BY user_id)
             UPDATE credit_accounts a SET held = a.held - freed.amount
             FROM freed WHERE a.user_id = freed.user_id",
            app_spend::GIVE_BACK_EXPIRED
        ))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn audit(&self) -> Result<AuditReport, StoreError> {
        let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM credit_accounts")
            .fetch_one(&self.pool)
            .await?;
        let hold_rows = sqlx::query(
            "SELECT a.user_id, a.held, COALESCE(SUM(h.amount), 0)::bigint AS total
             FROM credit_accounts a LEFT JOIN credit_holds h
               ON h.user_id = a.user_id AND h.status = 'held'
             GROUP BY a.user_id, a.held
             HAVING a.held <> COALESCE(SUM(h.amount), 0)",
        )
        .fetch_all(&self.pool)
        .await?;
        let hold_discrepancies = hold_rows
            .iter()
            .map(|row| {
                Ok(HoldDiscrepancy {
                    user_id: row.try_get("user_id")?,
                    held: row.try_get("held")?,
                    sum_of_live_holds: row.try_get("total")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let rows = sqlx::query(
            "SELECT a.user_id, a.balance, COALESCE(SUM(t.amount), 0)::bigint AS total
             FROM credit_accounts a LEFT JOIN credit_transactions t ON t.user_id = a.user_id
             GROUP BY a.user_id, a.balance
             HAVING a.balance <> COALESCE(SUM(t.amount), 0)",
        )
        .fetch_all(&self.pool)
        .await?;
        let discrepancies = rows
            .iter()
            .map(|row| {
                Ok(Discrepancy {
                    user_id: row.try_get("user_id")?,
                    balance: row.try_get("balance")?,
                    sum_of_transactions: row.try_get("total")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(AuditReport {
            accounts,
            discrepancies,
            hold_discrepancies,
            grant_discrepancies: grant_discrepancies(&self.pool).await?,
        })
    }

    async fn purge_idempotency_keys(&self, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                .bind(older_than)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
