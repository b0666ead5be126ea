//! Paid top-ups on PostgreSQL: the grant and the payment's row in one transaction; the row's key
//! (the checkout session) makes a second delivery wait for the first, then roll back.

use super::*;
use crate::payments::{Payment, PaymentOutcome, PaymentStore};

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
}
