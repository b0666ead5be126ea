//! What an OAuth app spends of a user's credits a day, against its grant's daily cap. The one
//! writer runs a debit or hold and its charge in one savepoint, so checking first and adding after
//! cannot race.

use super::*;
use crate::AppCap;

/// Today, as the `day` of `oauth_app_spend` (UTC).
pub(super) fn today() -> String {
    now().date_naive().to_string()
}

/// Whether `amount` fits in the grant's cap today: `Ok(None)` for an uncapped grant, `Ok(Some(cap))`
/// when it fits, the cap and what was spent when it does not.
pub(super) fn check(
    conn: &Connection,
    grant: &str,
    amount: i64,
) -> Result<Result<Option<i64>, AppCap>, StoreError> {
    let cap: Option<Option<i64>> = conn
        .prepare_cached("SELECT daily_cap FROM oauth_grants WHERE id = ?1 AND revoked_at IS NULL")?
        .query_row(params![grant], |row| row.get(0))
        .optional()?;
    let cap = match cap {
        // A grant ended a moment ago: its app may spend nothing more.
        None => return Ok(Err(AppCap { cap: 0, spent: 0 })),
        Some(None) => return Ok(Ok(None)),
        Some(Some(cap)) => cap,
    };
    let spent: i64 = conn
        .prepare_cached("SELECT spent FROM oauth_app_spend WHERE grant_id = ?1 AND day = ?2")?
        .query_row(params![grant, today()], |row| row.get(0))
        .optional()?
        .unwrap_or(0);
    if spent + amount > cap {
        return Ok(Err(AppCap { cap, spent }));
    }
    Ok(Ok(Some(cap)))
}

/// Adds `amount` to the grant's spend today.
pub(super) fn add(conn: &Connection, grant: &str, amount: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO oauth_app_spend (grant_id, day, spent) VALUES (?1, ?2, ?3)
         ON CONFLICT (grant_id, day) DO UPDATE SET spent = spent + excluded.spent",
    )?
    .execute(params![grant, today(), amount])?;
    Ok(())
}

/// Gives back `amount` of a hold's charge, on the day it was placed.
pub(super) fn give_back_hold(
    conn: &Connection,
    hold_id: &str,
    amount: i64,
) -> Result<(), StoreError> {
    if amount <= 0 {
        return Ok(());
    }
    conn.prepare_cached(
        "UPDATE oauth_app_spend SET spent = max(spent - ?2, 0)
         WHERE (grant_id, day) = (SELECT grant_id, spend_day FROM credit_holds
                                  WHERE id = ?1 AND grant_id IS NOT NULL)",
    )?
    .execute(params![hold_id, amount])?;
    Ok(())
}
