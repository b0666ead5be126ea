//! Reads of balances, holds and history on the read-only pool, and the ledger operations.

use super::*;

pub(super) fn transaction(row: &SqliteRow) -> Result<Transaction, StoreError> {
    let metadata: Option<String> = row.try_get("metadata")?;
    Ok(Transaction {
        id: row.try_get("id")?,
        user_id: uuid(row, "user_id")?,
        kind: parse_kind(row.try_get("kind")?)?,
        service: row.try_get("service")?,
        amount: row.try_get("amount")?,
        balance_before: row.try_get("balance_before")?,
        balance_after: row.try_get("balance_after")?,
        refund_of: row.try_get("refund_of")?,
        reason: row.try_get("reason")?,
        metadata: metadata.as_deref().map(serde_json::from_str).transpose()?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) async fn account_balance(
    conn: &mut SqliteConnection,
    user_id: Uuid,
) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT balance FROM credit_accounts WHERE user_id = ?1")
            .bind(user_id.to_string())
            .fetch_optional(&mut *conn)
            .await?,
    )
}

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn balance(&self, user_id: Uuid) -> Result<Option<i64>, StoreError> {
        // Credits past their end date are not shown, swept or not (computed on read).
        Ok(sqlx::query_scalar(&format!(
            "SELECT a.balance - max({DUE_SQL} - a.held, 0)
             FROM credit_accounts a WHERE a.user_id = ?1"
        ))
        .bind(user_id.to_string())
        .bind(timestamp(self.clock.now()))
        .fetch_optional(&self.reader)
        .await?)
    }

    async fn debit(
        &self,
        operation: &Debit,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<DebitOutcome>, StoreError> {
        let (operation, claim) = (operation.clone(), claim.cloned());
        let clock = self.clock.clone();
        self.writer
            .write(move |conn| {
                run_idempotent(conn, claim.as_ref(), |conn, key| {
                    debit(conn, &operation, key, clock.now())
                })
            })
            .await
    }

    async fn refund(
        &self,
        operation: &Refund,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<RefundOutcome>, StoreError> {
        let (operation, claim) = (operation.clone(), claim.cloned());
        let clock = self.clock.clone();
        self.writer
            .write(move |conn| {
                run_idempotent(conn, claim.as_ref(), |conn, key| {
                    refund(conn, &operation, key, clock.now())
                })
            })
            .await
    }

    async fn grant(
        &self,
        operation: &Grant,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<GrantOutcome>, StoreError> {
        let (operation, claim) = (operation.clone(), claim.cloned());
        self.writer
            .write(move |conn| {
                run_idempotent(conn, claim.as_ref(), |conn, key| {
                    grant(conn, &operation, key)
                })
            })
            .await
    }

    async fn transactions(
        &self,
        user_id: Uuid,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Option<TransactionPage>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        if account_balance(&mut conn, user_id).await?.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM credit_transactions
             WHERE user_id = ?1
               AND (?2 IS NULL
                    OR seq < (SELECT seq FROM credit_transactions WHERE id = ?2 AND user_id = ?1))
             ORDER BY seq DESC LIMIT ?3"
        ))
        .bind(user_id.to_string())
        .bind(cursor)
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut *conn)
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
            "SELECT h.balance - max(h.due - h.held, 0) AS balance, h.held, h.frozen
             FROM (SELECT a.balance, a.frozen, {DUE_SQL} AS due,
                          COALESCE((SELECT sum(h.amount) FROM credit_holds h
                            WHERE h.user_id = a.user_id AND h.status = 'held'
                              AND h.expires_at > ?3), 0) AS held
                   FROM credit_accounts a WHERE a.user_id = ?1) h"
        ))
        .bind(user_id.to_string())
        .bind(timestamp(self.clock.now()))
        .bind(timestamp(Utc::now()))
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(Holdings {
                balance: row.try_get("balance")?,
                held: row.try_get("held")?,
                frozen: row.try_get::<i64, _>("frozen")? != 0,
            })
        })
        .transpose()
    }

    async fn reserve(
        &self,
        operation: &Reserve,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<ReserveOutcome>, StoreError> {
        let (operation, claim) = (operation.clone(), claim.cloned());
        let clock = self.clock.clone();
        self.writer
            .write(move |conn| {
                run_idempotent(conn, claim.as_ref(), |conn, _key| {
                    reserve(conn, &operation, clock.now())
                })
            })
            .await
    }

    async fn settle(&self, operation: &Settle) -> Result<SettleOutcome, StoreError> {
        let operation = operation.clone();
        let clock = self.clock.clone();
        self.writer
            .write(move |conn| settle(conn, &operation, clock.now()))
            .await
    }

    async fn expire_holds(&self) -> Result<u64, StoreError> {
        self.writer.write(expire_all_holds).await
    }

    async fn audit(&self) -> Result<AuditReport, StoreError> {
        // One read transaction, so the balances and sums are of the same moment.
        let mut tx = self.reader.begin().await?;
        let hold_rows = sqlx::query(
            "SELECT a.user_id, a.held, COALESCE(SUM(h.amount), 0) AS total
             FROM credit_accounts a LEFT JOIN credit_holds h
               ON h.user_id = a.user_id AND h.status = 'held'
             GROUP BY a.user_id, a.held
             HAVING a.held <> COALESCE(SUM(h.amount), 0)",
        )
        .fetch_all(&mut *tx)
        .await?;
        let hold_discrepancies = hold_rows
            .iter()
            .map(|row| {
                Ok(HoldDiscrepancy {
                    user_id: uuid(row, "user_id")?,
                    held: row.try_get("held")?,
                    sum_of_live_holds: row.try_get("total")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM credit_accounts")
            .fetch_one(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT a.user_id, a.balance, COALESCE(SUM(t.amount), 0) AS total
             FROM credit_accounts a LEFT JOIN credit_transactions t ON t.user_id = a.user_id
             GROUP BY a.user_id, a.balance
             HAVING a.balance <> COALESCE(SUM(t.amount), 0)",
        )
        .fetch_all(&mut *tx)
        .await?;
        let discrepancies = rows
            .iter()
            .map(|row| {
                Ok(Discrepancy {
                    user_id: uuid(row, "user_id")?,
                    balance: row.try_get("balance")?,
                    sum_of_transactions: row.try_get("total")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let grant_discrepancies = grant_discrepancies(&mut tx).await?;
        Ok(AuditReport {
            accounts,
            discrepancies,
            hold_discrepancies,
            grant_discrepancies,
        })
    }

    async fn purge_idempotency_keys(&self, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
        let cutoff = timestamp(older_than);
        self.writer
            .write(move |conn| {
                Ok(conn
                    .prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?1")?
                    .execute(params![cutoff])? as u64)
            })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }
}
