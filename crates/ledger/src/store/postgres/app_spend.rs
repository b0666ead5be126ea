//! What an OAuth app spends of a user's credits a day, against its grant's daily cap: charged in
//! the same transaction as the debit or hold it counts (the row lock of `(grant, day)` makes
//! concurrent charges queue), given back when a hold is released, expires or captures less.

use super::*;
use crate::AppCap;

/// Charges `amount` to the grant's spend today: whether it is tracked (`false` for a grant
/// without a cap), or the cap and what was spent when it does not fit.
pub(super) async fn charge(
    conn: &mut PgConnection,
    grant: &str,
    amount: i64,
) -> Result<Result<bool, AppCap>, StoreError> {
    let cap: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT daily_cap FROM oauth_grants WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(grant)
    .fetch_optional(&mut *conn)
    .await?;
    let cap = match cap {
        // A grant ended a moment ago: its app may spend nothing more.
        None => return Ok(Err(AppCap { cap: 0, spent: 0 })),
        Some(None) => return Ok(Ok(false)),
        Some(Some(cap)) => cap,
    };
    let charged: Option<i64> = sqlx::query_scalar(
        "INSERT INTO oauth_app_spend (grant_id, day, spent)
         SELECT $1, (now() AT TIME ZONE 'UTC')::date, $2 WHERE $2 <= $3
         ON CONFLICT (grant_id, day) DO UPDATE SET spent = oauth_app_spend.spent + EXCLUDED.spent
         WHERE oauth_app_spend.spent + EXCLUDED.spent <= $3
         RETURNING spent",
    )
    .bind(grant)
    .bind(amount)
    .bind(cap)
    .fetch_optional(&mut *conn)
    .await?;
    if charged.is_some() {
        return Ok(Ok(true));
    }
    let spent: Option<i64> = sqlx::query_scalar(
        "SELECT spent FROM oauth_app_spend WHERE grant_id = $1 AND day = (now() AT TIME ZONE 'UTC')::date",
    )
    .bind(grant)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(Err(AppCap {
        cap,
        spent: spent.unwrap_or(0),
    }))
}

/// Gives back `amount` of what the grant spent today (a debit that did not happen).
pub(super) async fn give_back_today(
    conn: &mut PgConnection,
    grant: &str,
    amount: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE oauth_app_spend SET spent = GREATEST(spent - $2, 0)
         WHERE grant_id = $1 AND day = (now() AT TIME ZONE 'UTC')::date",
    )
    .bind(grant)
    .bind(amount)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Gives back `amount` of a hold's charge, on the day it was placed.
pub(super) async fn give_back_hold(
    conn: &mut PgConnection,
    hold_id: &str,
    amount: i64,
) -> Result<(), StoreError> {
    if amount <= 0 {
        return Ok(());
    }
    sqlx::query(
        "UPDATE oauth_app_spend s SET spent = GREATEST(s.spent - $2, 0)
         FROM credit_holds h
         WHERE h.id = $1 AND h.grant_id IS NOT NULL AND s.grant_id = h.grant_id AND s.day = h.spend_day",
    )
    .bind(hold_id)
    .bind(amount)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The part of a statement that expires holds (`expired`, with `amount`, `grant_id` and
/// `spend_day`) that gives their charges back.
pub(super) const GIVE_BACK_EXPIRED: &str = "\
given AS (
    UPDATE oauth_app_spend s SET spent = GREATEST(s.spent - e.total, 0)
    FROM (SELECT grant_id, spend_day, sum(amount)::bigint AS total FROM expired
          WHERE grant_id IS NOT NULL GROUP BY grant_id, spend_day) e
    WHERE s.grant_id = e.grant_id AND s.day = e.spend_day
    RETURNING 1)";
