//! Credit holds: reserve, capture and release, and freeing the expired.

use super::*;
use crate::grants::Taker;

pub(super) const HOLD_COLUMNS: &str = "id, user_id, service, amount, status, captured, transaction_id, \
                            created_at, expires_at, settled_at";

pub(super) fn hold(row: &PgRow) -> Result<Hold, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(Hold {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        service: row.try_get("service")?,
        amount: row.try_get("amount")?,
        status: HoldStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("hold status {status:?}")))?,
        captured: row.try_get("captured")?,
        transaction_id: row.try_get("transaction_id")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        settled_at: row.try_get("settled_at")?,
    })
}

/// Frees one account's expired holds; whether there were any.
pub(super) async fn expire_user_holds(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<bool, StoreError> {
    let freed = sqlx::query(&format!(
        "WITH expired AS (
            UPDATE credit_holds SET status = 'expired', settled_at = now()
            WHERE user_id = $1 AND status = 'held' AND expires_at <= now()
            RETURNING amount, grant_id, spend_day),
         {}
         UPDATE credit_accounts SET held = held - (SELECT COALESCE(sum(amount), 0)::bigint FROM expired)
         WHERE user_id = $1 AND EXISTS (SELECT 1 FROM expired)",
        app_spend::GIVE_BACK_EXPIRED
    ))
    .bind(user_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(freed > 0)
}

/// The reservation, as one statement: the account's `held` grows only if the available balance
/// covers the cost, and the hold row is written with it.
pub(super) const RESERVE_SQL: &str = "\
WITH reserved AS (
    UPDATE credit_accounts SET held = held + $2, updated_at = now()
    WHERE user_id = $1 AND balance - held >= $2 AND NOT frozen AND (granted = 0 OR $10)
    RETURNING user_id, balance, held
), placed AS (
    INSERT INTO credit_holds (id, user_id, service, amount, metadata, request_id, expires_at,
                              placed_by, grant_id, spend_day)
    SELECT $3, user_id, $4, $2, $5, $6, now() + make_interval(secs => $7), $8, $9,
           CASE WHEN $9::text IS NULL THEN NULL ELSE (now() AT TIME ZONE 'UTC')::date END
    FROM reserved
    RETURNING id, user_id, service, amount, status, captured, transaction_id, created_at,
              expires_at, settled_at
)
SELECT placed.*, reserved.balance - reserved.held AS available FROM placed, reserved";

impl Operation for Reserve {
    type Outcome = ReserveOutcome;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        key: Option<&str>,
    ) -> Result<ReserveOutcome, StoreError> {
        self.apply_at(conn, key, Utc::now()).await
    }

    async fn apply_at(
        &self,
        conn: &mut PgConnection,
        _key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ReserveOutcome, StoreError> {
        let tracked = match &self.app_grant {
            Some(grant) => match app_spend::charge(&mut *conn, grant, self.cost).await? {
                Err(cap) => return Ok(ReserveOutcome::AppCapReached(cap)),
                Ok(tracked) => tracked.then_some(grant.as_str()),
            },
            None => None,
        };
        let outcome = self.reserve(&mut *conn, tracked, now).await?;
        if let (Some(grant), false) = (tracked, matches!(outcome, ReserveOutcome::Held { .. })) {
            app_spend::give_back_today(&mut *conn, grant, self.cost).await?;
        }
        Ok(outcome)
    }
}

impl Reserve {
    /// The reservation itself (the hold marked with `grant` when it counts against an app's
    /// cap), once more after freeing expired holds and, for an account with grant rows, after
    /// expiring what of them is due (until then such an account's reservation is refused).
    async fn reserve(
        &self,
        conn: &mut PgConnection,
        grant: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ReserveOutcome, StoreError> {
        let mut grants_expired = false;
        for attempt in 0..2 {
            let row = sqlx::query(RESERVE_SQL)
                .bind(self.user_id)
                .bind(self.cost)
                .bind(new_reservation_id())
                .bind(self.service.as_str())
                .bind(self.metadata.as_ref().map(Json))
                .bind(self.request_id.as_deref())
                .bind(self.ttl_seconds as f64)
                .bind(&self.placed_by)
                .bind(grant)
                .bind(grants_expired)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(row) = row {
                return Ok(ReserveOutcome::Held {
                    hold: hold(&row)?,
                    available: row.try_get("available")?,
                });
            }
            if attempt > 0 {
                break;
            }
            let freed = expire_user_holds(&mut *conn, self.user_id).await?;
            grants_expired = match lock_account(&mut *conn, self.user_id).await? {
                Some(account) if account.granted > 0 => {
                    expire_user_grants(&mut *conn, self.user_id, account.held, now).await?;
                    true
                }
                _ => false,
            };
            if !freed && !grants_expired {
                break;
            }
        }
        super::webhooks::refused(&mut *conn, self.user_id).await?;
        Ok(match available(&mut *conn, self.user_id).await? {
            Some((_, true)) => ReserveOutcome::AccountDisabled,
            Some((available, false)) => ReserveOutcome::Insufficient { available },
            None => ReserveOutcome::UnknownUser,
        })
    }
}

/// Settles a hold in one database transaction; the hold's row lock makes it once only. `now` is
/// the store clock's reading (what decides which grants are past their end date).
pub(super) async fn settle(
    pool: &PgPool,
    settle: &Settle,
    now: DateTime<Utc>,
) -> Result<SettleOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(&format!(
        "SELECT {HOLD_COLUMNS}, metadata, placed_by, expires_at <= now() AS lapsed
         FROM credit_holds WHERE id = $1 FOR UPDATE"
    ))
    .bind(&settle.reservation_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(SettleOutcome::UnknownReservation);
    };
    let current = hold(&row)?;
    if settle
        .owner_must_be
        .is_some_and(|owner| owner != current.user_id)
    {
        return Ok(SettleOutcome::UnknownReservation);
    }
    let placed_by: Option<String> = row.try_get("placed_by")?;
    if let (Some(principal), Some(placed_by)) = (&settle.principal_must_be, placed_by)
        && placed_by != *principal
    {
        return Ok(SettleOutcome::UnknownReservation);
    }
    match current.status {
        HoldStatus::Held => {}
        HoldStatus::Expired => return Ok(SettleOutcome::Expired { hold: current }),
        HoldStatus::Captured | HoldStatus::Released => {
            return Ok(SettleOutcome::AlreadySettled { hold: current });
        }
    }
    let lapsed: bool = row.try_get("lapsed")?;
    if lapsed {
        expire_user_holds(&mut tx, current.user_id).await?;
        let expired = sqlx::query(&format!(
            "SELECT {HOLD_COLUMNS} FROM credit_holds WHERE id = $1"
        ))
        .bind(&settle.reservation_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(SettleOutcome::Expired {
            hold: hold(&expired)?,
        });
    }
    let captured = match settle.capture {
        None => 0,
        Some(amount) => amount.unwrap_or(current.amount),
    };
    if captured > current.amount {
        return Ok(SettleOutcome::ExceedsHold {
            held: current.amount,
        });
    }
    let mut debit_id = None;
    if captured > 0 {
        // The account's row lock orders this capture, an operator's disabling of it, and every
        // other change of its grants.
        let account = lock_account(&mut tx, current.user_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a hold's account vanished".into()))?;
        if account.frozen {
            return Ok(SettleOutcome::AccountDisabled);
        }
        let id = new_transaction_id();
        if account.granted > 0 {
            // What live holds kept from expiry first, then the spending order.
            let spend = Spend {
                user_id: current.user_id,
                amount: captured,
                transaction_id: &id,
                taker: Taker::Capture,
                now,
            };
            take_from_grants(&mut tx, &account, spend).await?;
        }
        debit_id = Some(id);
    }
    let (settled, transaction, balance, held) =
        write_settlement(&mut tx, settle, &current, debit_id, &row).await?;
    tx.commit().await?;
    Ok(SettleOutcome::Settled {
        hold: settled,
        transaction,
        balance,
        available: balance - held,
    })
}

/// A settlement's writes, in the hold's transaction: the account (balance less what is captured,
/// `held` less the whole hold), the capture's debit row, the hold itself, and what of it the
/// app's cap gets back. The settled hold, the debit, the balance and `held` after.
async fn write_settlement(
    tx: &mut PgConnection,
    settle: &Settle,
    current: &Hold,
    debit: Option<String>,
    row: &PgRow,
) -> Result<(Hold, Option<Transaction>, i64, i64), StoreError> {
    let captured = match settle.capture {
        Some(amount) => amount.unwrap_or(current.amount),
        None => 0,
    };
    // What of the hold was not captured is not spent: the app's cap gets it back.
    app_spend::give_back_hold(&mut *tx, &current.id, current.amount - captured).await?;
    let account = sqlx::query(
        "UPDATE credit_accounts SET balance = balance - $2, held = held - $3, updated_at = now()
         WHERE user_id = $1 RETURNING balance, held",
    )
    .bind(current.user_id)
    .bind(captured)
    .bind(current.amount)
    .fetch_one(&mut *tx)
    .await?;
    let balance: i64 = account.try_get("balance")?;
    let held: i64 = account.try_get("held")?;
    let transaction = if let (true, Some(id)) = (captured > 0, debit) {
        let metadata: Option<Json<Value>> = row.try_get("metadata")?;
        let written = sqlx::query(&format!(
            "INSERT INTO credit_transactions
                (id, user_id, kind, service, amount, balance_before, balance_after, refundable,
                 metadata, request_id)
             VALUES ($1, $2, 'debit', $3, -$4, $5 + $4, $5, $4, $6, $7)
             RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(current.user_id)
        .bind(&current.service)
        .bind(captured)
        .bind(balance)
        .bind(metadata)
        .bind(settle.request_id.as_deref())
        .fetch_one(&mut *tx)
        .await?;
        Some(transaction(&written)?)
    } else {
        None
    };
    let status = if settle.capture.is_some() {
        HoldStatus::Captured
    } else {
        HoldStatus::Released
    };
    let settled = sqlx::query(&format!(
        "UPDATE credit_holds SET status = $2, captured = $3, transaction_id = $4, settled_at = now()
         WHERE id = $1 RETURNING {HOLD_COLUMNS}"
    ))
    .bind(&settle.reservation_id)
    .bind(status.as_str())
    .bind(settle.capture.is_some().then_some(captured))
    .bind(transaction.as_ref().map(|t| t.id.clone()))
    .fetch_one(&mut *tx)
    .await?;
    Ok((hold(&settled)?, transaction, balance, held))
}
