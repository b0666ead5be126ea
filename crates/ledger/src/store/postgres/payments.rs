//! Paid top-ups on PostgreSQL: the grant and the payment's row in one transaction; the row's key
//! (the checkout session) makes a second delivery wait for the first, then roll back.

use super::*;
use crate::payments::{Payment, PaymentOutcome, PaymentRecord, PaymentStore, RECORD_COLUMNS};

#[async_trait]
impl PaymentStore for PgStore {
    async fn grant_for_payment(&self, payment: &Payment) -> Result<PaymentOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let transaction = match payment.grant().apply(&mut tx, None).await? {
            GrantOutcome::Granted { transaction } => transaction,
            GrantOutcome::UnknownUser => return Ok(PaymentOutcome::UnknownUser),
            GrantOutcome::BalanceLimit => return Ok(PaymentOutcome::BalanceLimit),
        };
        let recorded = sqlx::query(
            "INSERT INTO payments (checkout_session_id, event_id, user_id, credits, amount_total,
                                   currency, transaction_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&payment.checkout_session_id)
        .bind(&payment.event_id)
        .bind(payment.user_id)
        .bind(payment.credits)
        .bind(payment.amount_total)
        .bind(&payment.currency)
        .bind(&transaction.id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !recorded {
            // Dropping the transaction rolls the grant back.
            return Ok(PaymentOutcome::AlreadyGranted);
        }
        tx.commit().await?;
        Ok(PaymentOutcome::Granted { transaction })
    }

    async fn payments_of(
        &self,
        user_id: Uuid,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM payments WHERE user_id = $1
             ORDER BY created_at DESC, checkout_session_id LIMIT $2"
        ))
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PaymentRecord {
                    checkout_session_id: row.try_get("checkout_session_id")?,
                    credits: row.try_get("credits")?,
                    amount_total: row.try_get("amount_total")?,
                    currency: row.try_get("currency")?,
                    transaction_id: row.try_get("transaction_id")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }
}
