//! The writes of credit holds: reserve, capture and release, and freeing the expired.

use super::*;
use crate::grants::Taker;

pub(super) const HOLD_COLUMNS: &str = "id, user_id, service, amount, status, captured, transaction_id, \
                            created_at, expires_at, settled_at, metadata";

pub(super) fn hold_row(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(Hold, Option<String>, [String; 4])> {
    let status: String = row.get(4)?;
    let user: String = row.get(1)?;
    Ok((
        Hold {
            id: row.get(0)?,
            user_id: Uuid::parse_str(&user).unwrap_or_default(),
            service: row.get(2)?,
            amount: row.get(3)?,
            status: HoldStatus::parse(&status).unwrap_or(HoldStatus::Held),
            captured: row.get(5)?,
            transaction_id: row.get(6)?,
            created_at: Utc::now(),
            expires_at: Utc::now(),
            settled_at: None,
        },
        row.get(10)?,
        [
            status,
            row.get(7)?,
            row.get(8)?,
            row.get::<_, Option<String>>(9)?.unwrap_or_default(),
        ],
    ))
}

/// Reads a hold inside the writer; times parsed, status checked.
pub(super) fn find_hold(
    conn: &Connection,
    id: &str,
) -> Result<Option<(Hold, Option<String>)>, StoreError> {
    let found = conn
        .prepare_cached(&format!(
            "SELECT {HOLD_COLUMNS} FROM credit_holds WHERE id = ?1"
        ))?
        .query_row(params![id], hold_row)
        .optional()?;
    let Some((mut hold, metadata, [status, created, expires, settled])) = found else {
        return Ok(None);
    };
    hold.status = HoldStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("hold status {status:?}")))?;
    hold.created_at = parse_time(&created)?;
    hold.expires_at = parse_time(&expires)?;
    hold.settled_at = if settled.is_empty() {
        None
    } else {
        Some(parse_time(&settled)?)
    };
    Ok(Some((hold, metadata)))
}

/// Frees one account's expired holds; whether there were any.
pub(super) fn expire_user_holds(conn: &Connection, user_id: Uuid) -> Result<bool, StoreError> {
    let at = timestamp(now());
    let expired: Vec<(String, i64)> = conn
        .prepare_cached(
            "UPDATE credit_holds SET status = 'expired', settled_at = ?2
             WHERE user_id = ?1 AND status = 'held' AND expires_at <= ?2 RETURNING id, amount",
        )?
        .query_map(params![user_id.to_string(), at], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    if expired.is_empty() {
        return Ok(false);
    }
    for (id, amount) in &expired {
        app_spend::give_back_hold(conn, id, *amount)?;
    }
    let total: i64 = expired.iter().map(|(_, amount)| amount).sum();
    conn.prepare_cached("UPDATE credit_accounts SET held = held - ?2 WHERE user_id = ?1")?
        .execute(params![user_id.to_string(), total])?;
    Ok(true)
}

/// Frees every expired hold; how many accounts got credits back.
pub(super) fn expire_all_holds(conn: &Connection) -> Result<u64, StoreError> {
    let at = timestamp(now());
    let freed: Vec<(String, String, i64)> = conn
        .prepare_cached(
            "UPDATE credit_holds SET status = 'expired', settled_at = ?1
             WHERE status = 'held' AND expires_at <= ?1 RETURNING id, user_id, amount",
        )?
        .query_map(params![at], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut by_user = std::collections::BTreeMap::<String, i64>::new();
    for (id, user, amount) in freed {
        app_spend::give_back_hold(conn, &id, amount)?;
        *by_user.entry(user).or_default() += amount;
    }
    for (user, amount) in &by_user {
        conn.prepare_cached("UPDATE credit_accounts SET held = held - ?2 WHERE user_id = ?1")?
            .execute(params![user, amount])?;
    }
    Ok(by_user.len() as u64)
}

pub(super) fn reserve(
    conn: &Connection,
    reserve: &Reserve,
    now_by_clock: DateTime<Utc>,
) -> Result<ReserveOutcome, StoreError> {
    let capped = match &reserve.app_grant {
        Some(grant) => match app_spend::check(conn, grant, reserve.cost)? {
            Err(cap) => return Ok(ReserveOutcome::AppCapReached(cap)),
            Ok(cap) => cap.map(|_| grant.as_str()),
        },
        None => None,
    };
    let created_at = now();
    let attempt = || -> Result<Option<(i64, i64)>, StoreError> {
        Ok(conn
            .prepare_cached(
                "UPDATE credit_accounts SET held = held + ?2, updated_at = ?3
                 WHERE user_id = ?1 AND balance - held >= ?2 AND frozen = 0 RETURNING balance, held",
            )?
            .query_row(
                params![
                    reserve.user_id.to_string(),
                    reserve.cost,
                    timestamp(created_at)
                ],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    };
    // An account with grant rows first expires what of them is due.
    if has_grants(conn, reserve.user_id)? {
        expire_user_grants(conn, reserve.user_id, now_by_clock)?;
    }
    let mut reserved = attempt()?;
    if reserved.is_none() && expire_user_holds(conn, reserve.user_id)? {
        reserved = attempt()?;
    }
    let Some((balance, held)) = reserved else {
        super::webhooks::refused(conn, reserve.user_id)?;
        return Ok(match available_balance(conn, reserve.user_id)? {
            Some((_, true)) => ReserveOutcome::AccountDisabled,
            Some((available, false)) => ReserveOutcome::Insufficient { available },
            None => ReserveOutcome::UnknownUser,
        });
    };
    let hold = Hold {
        id: new_reservation_id(),
        user_id: reserve.user_id,
        service: reserve.service.as_str().to_owned(),
        amount: reserve.cost,
        status: HoldStatus::Held,
        captured: None,
        transaction_id: None,
        created_at,
        expires_at: created_at + chrono::Duration::seconds(reserve.ttl_seconds),
        settled_at: None,
    };
    conn.prepare_cached(
        "INSERT INTO credit_holds
            (id, user_id, service, amount, status, metadata, request_id, created_at, expires_at,
             placed_by, grant_id, spend_day)
         VALUES (?1, ?2, ?3, ?4, 'held', ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        hold.id,
        hold.user_id.to_string(),
        hold.service,
        hold.amount,
        reserve.metadata.as_ref().map(Value::to_string),
        reserve.request_id,
        timestamp(hold.created_at),
        timestamp(hold.expires_at),
        reserve.placed_by,
        capped,
        capped.map(|_| app_spend::today()),
    ])?;
    if let Some(grant) = capped {
        app_spend::add(conn, grant, reserve.cost)?;
    }
    Ok(ReserveOutcome::Held {
        hold,
        available: balance - held,
    })
}

/// Settles a hold under the one writer. `now_by_clock` is the store clock's reading (what
/// decides which grants are past their end date).
pub(super) fn settle(
    conn: &Connection,
    settle: &Settle,
    now_by_clock: DateTime<Utc>,
) -> Result<SettleOutcome, StoreError> {
    let Some((current, metadata)) = find_hold(conn, &settle.reservation_id)? else {
        return Ok(SettleOutcome::UnknownReservation);
    };
    if settle
        .owner_must_be
        .is_some_and(|owner| owner != current.user_id)
    {
        return Ok(SettleOutcome::UnknownReservation);
    }
    if let Some(principal) = &settle.principal_must_be {
        let placed_by: Option<String> = conn
            .prepare_cached("SELECT placed_by FROM credit_holds WHERE id = ?1")?
            .query_row(params![settle.reservation_id], |row| row.get(0))?;
        if placed_by.is_some_and(|placed_by| placed_by != *principal) {
            return Ok(SettleOutcome::UnknownReservation);
        }
    }
    match current.status {
        HoldStatus::Held => {}
        HoldStatus::Expired => return Ok(SettleOutcome::Expired { hold: current }),
        HoldStatus::Captured | HoldStatus::Released => {
            return Ok(SettleOutcome::AlreadySettled { hold: current });
        }
    }
    let at = now();
    if current.expires_at <= at {
        expire_user_holds(conn, current.user_id)?;
        let (expired, _) = find_hold(conn, &settle.reservation_id)?
            .ok_or_else(|| StoreError::Corrupt("an expired hold vanished".into()))?;
        return Ok(SettleOutcome::Expired { hold: expired });
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
    let mut taken = Vec::new();
    if captured > 0 {
        let account = read_account(conn, current.user_id)?
            .ok_or_else(|| StoreError::Corrupt("a hold's account vanished".into()))?;
        if account.frozen {
            return Ok(SettleOutcome::AccountDisabled);
        }
        if account.granted > 0 {
            // What live holds kept from expiry first, then the spending order.
            let (user_id, taker) = (current.user_id, Taker::Capture);
            taken = take_from_grants(conn, &account, user_id, captured, taker, now_by_clock)?;
        }
    }
    let outcome = write_settlement(conn, settle, current, captured, metadata.as_deref(), at)?;
    if let SettleOutcome::Settled {
        transaction: Some(debit),
        ..
    } = &outcome
    {
        record_spends(conn, &debit.id, debit.user_id, &taken)?;
    }
    Ok(outcome)
}

/// A settlement's writes, under the one writer: what of the hold the app's cap gets back, the
/// account (balance less what is captured, `held` less the whole hold), the capture's debit row,
/// and the hold itself.
fn write_settlement(
    conn: &Connection,
    settle: &Settle,
    current: Hold,
    captured: i64,
    metadata: Option<&str>,
    at: DateTime<Utc>,
) -> Result<SettleOutcome, StoreError> {
    // What of the hold was not captured is not spent: the app's cap gets it back.
    app_spend::give_back_hold(conn, &current.id, current.amount - captured)?;
    let (balance, held): (i64, i64) = conn
        .prepare_cached(
            "UPDATE credit_accounts SET balance = balance - ?2, held = held - ?3, updated_at = ?4
             WHERE user_id = ?1 RETURNING balance, held",
        )?
        .query_row(
            params![
                current.user_id.to_string(),
                captured,
                current.amount,
                timestamp(at)
            ],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
    let metadata: Option<Value> = metadata.map(serde_json::from_str).transpose()?;
    let transaction = if captured > 0 {
        let entry = Entry {
            user_id: current.user_id,
            kind: TransactionKind::Debit,
            service: Some(&current.service),
            amount: -captured,
            refund_of: None,
            reason: None,
            metadata: metadata.as_ref(),
            key: None,
            request_id: settle.request_id.as_deref(),
        };
        Some(record(conn, entry, balance)?)
    } else {
        None
    };
    let status = if settle.capture.is_some() {
        HoldStatus::Captured
    } else {
        HoldStatus::Released
    };
    conn.prepare_cached(
        "UPDATE credit_holds SET status = ?2, captured = ?3, transaction_id = ?4, settled_at = ?5
         WHERE id = ?1",
    )?
    .execute(params![
        settle.reservation_id,
        status.as_str(),
        settle.capture.is_some().then_some(captured),
        transaction.as_ref().map(|t| t.id.clone()),
        timestamp(at),
    ])?;
    let hold = Hold {
        status,
        captured: settle.capture.is_some().then_some(captured),
        transaction_id: transaction.as_ref().map(|t| t.id.clone()),
        settled_at: Some(at),
        ..current
    };
    Ok(SettleOutcome::Settled {
        hold,
        transaction,
        balance,
        available: balance - held,
    })
}
