//! Paid top-ups on SQLite: under the one writer, a payment seen before grants nothing; else the
//! grant and the payment's row in one savepoint.

use super::*;
use crate::payments::{Payment, PaymentOutcome, PaymentRecord, PaymentStore, RECORD_COLUMNS};

fn grant_for_payment(conn: &Connection, payment: &Payment) -> Result<PaymentOutcome, StoreError> {
    let seen = conn
        .prepare_cached("SELECT 1 FROM payments WHERE checkout_session_id = ?1 OR event_id = ?2")?
        .query_row(
            params![payment.checkout_session_id, payment.event_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if seen {
        return Ok(PaymentOutcome::AlreadyGranted);
    }
    let transaction = match super::debits::grant(conn, &payment.grant(), None)? {
        GrantOutcome::Granted { transaction } => transaction,
        GrantOutcome::UnknownUser => return Ok(PaymentOutcome::UnknownUser),
        GrantOutcome::BalanceLimit => return Ok(PaymentOutcome::BalanceLimit),
    };
    conn.prepare_cached(
        "INSERT INTO payments (checkout_session_id, event_id, user_id, credits, amount_total,
                               currency, transaction_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        payment.checkout_session_id,
        payment.event_id,
        payment.user_id.to_string(),
        payment.credits,
        payment.amount_total,
        payment.currency,
        transaction.id,
        timestamp(now()),
    ])?;
    Ok(PaymentOutcome::Granted { transaction })
}

#[async_trait]
impl PaymentStore for SqliteStore {
    async fn grant_for_payment(&self, payment: &Payment) -> Result<PaymentOutcome, StoreError> {
        let payment = payment.clone();
        self.writer
            .write(move |conn| grant_for_payment(conn, &payment))
            .await
    }

    async fn payments_of(
        &self,
        user_id: Uuid,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM payments WHERE user_id = ?1
             ORDER BY created_at DESC, checkout_session_id LIMIT ?2"
        ))
        .bind(user_id.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PaymentRecord {
                    checkout_session_id: row.try_get("checkout_session_id")?,
                    credits: row.try_get("credits")?,
                    amount_total: row.try_get("amount_total")?,
                    currency: row.try_get("currency")?,
                    transaction_id: row.try_get("transaction_id")?,
                    created_at: parse_time(row.try_get("created_at")?)?,
                })
            })
            .collect()
    }
}
