//! The writes that move credits: debit, refund and grant, each with its transaction row.

use super::*;

/// What a transaction row records besides its account's balances.
pub(super) struct Entry<'a> {
    pub(super) user_id: Uuid,
    pub(super) kind: TransactionKind,
    pub(super) service: Option<&'a str>,
    pub(super) amount: i64,
    pub(super) refund_of: Option<&'a str>,
    pub(super) reason: Option<&'a str>,
    pub(super) metadata: Option<&'a Value>,
    pub(super) key: Option<&'a str>,
    pub(super) request_id: Option<&'a str>,
}

/// Writes the transaction row of a balance change that has just happened.
pub(super) fn record(
    conn: &Connection,
    entry: Entry<'_>,
    balance_after: i64,
) -> Result<Transaction, StoreError> {
    let id = new_transaction_id();
    let created_at = now();
    let refundable = if entry.kind == TransactionKind::Debit {
        -entry.amount
    } else {
        0
    };
    conn.prepare_cached(
        "INSERT INTO credit_transactions
            (id, user_id, kind, service, amount, balance_before, balance_after, refundable,
             refund_of, reason, metadata, idempotency_key, request_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        id,
        entry.user_id.to_string(),
        entry.kind.as_str(),
        entry.service,
        entry.amount,
        balance_after - entry.amount,
        balance_after,
        refundable,
        entry.refund_of,
        entry.reason,
        entry.metadata.map(Value::to_string),
        entry.key,
        entry.request_id,
        timestamp(created_at),
    ])?;
    Ok(Transaction {
        id,
        user_id: entry.user_id,
        kind: entry.kind,
        service: entry.service.map(str::to_owned),
        amount: entry.amount,
        balance_before: balance_after - entry.amount,
        balance_after,
        refund_of: entry.refund_of.map(str::to_owned),
        reason: entry.reason.map(str::to_owned),
        metadata: entry.metadata.cloned(),
        created_at,
    })
}

pub(super) fn current_balance(conn: &Connection, user_id: Uuid) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT balance FROM credit_accounts WHERE user_id = ?1")?
        .query_row(params![user_id.to_string()], |row| row.get(0))
        .optional()?)
}

pub(super) fn debit(
    conn: &Connection,
    debit: &Debit,
    key: Option<&str>,
    now: DateTime<Utc>,
) -> Result<DebitOutcome, StoreError> {
    let capped = match &debit.app_grant {
        Some(grant) => match app_spend::check(conn, grant, debit.cost)? {
            Err(cap) => return Ok(DebitOutcome::AppCapReached(cap)),
            Ok(cap) => cap.map(|_| grant.as_str()),
        },
        None => None,
    };
    let attempt = || -> Result<Option<i64>, StoreError> {
        Ok(conn
            .prepare_cached(
                "UPDATE credit_accounts SET balance = balance - ?2, updated_at = ?3
                 WHERE user_id = ?1 AND balance - held >= ?2 AND frozen = 0 AND granted = 0
                 RETURNING balance",
            )?
            .query_row(
                params![debit.user_id.to_string(), debit.cost, timestamp(Utc::now())],
                |row| row.get(0),
            )
            .optional()?)
    };
    let mut balance = attempt()?;
    // Short: holds that expired unswept may be what stands in the way. Free them, try again.
    if balance.is_none() && expire_user_holds(conn, debit.user_id)? {
        balance = attempt()?;
    }
    let entry = Entry {
        user_id: debit.user_id,
        kind: TransactionKind::Debit,
        service: Some(debit.service.as_str()),
        amount: -debit.cost,
        refund_of: None,
        reason: None,
        metadata: debit.metadata.as_ref(),
        key,
        request_id: debit.request_id.as_deref(),
    };
    let transaction = match balance {
        Some(balance) => record(conn, entry, balance)?,
        // An account with grant rows: taken from them in spending order.
        None if has_grants(conn, debit.user_id)? => {
            let take = Take {
                entry,
                refuse_frozen: true,
            };
            match take.run(conn, now)? {
                Taken::Done(transaction) => transaction,
                Taken::Short { available } => {
                    super::webhooks::refused(conn, debit.user_id)?;
                    return Ok(DebitOutcome::Insufficient { balance: available });
                }
                Taken::Frozen => return Ok(DebitOutcome::AccountDisabled),
                Taken::UnknownUser => return Ok(DebitOutcome::UnknownUser),
            }
        }
        // The conditional update matched nothing: say why, from what the account holds now.
        None => {
            super::webhooks::refused(conn, debit.user_id)?;
            return Ok(match available_balance(conn, debit.user_id)? {
                Some((_, true)) => DebitOutcome::AccountDisabled,
                Some((balance, false)) => DebitOutcome::Insufficient { balance },
                None => DebitOutcome::UnknownUser,
            });
        }
    };
    if let Some(grant) = capped {
        app_spend::add(conn, grant, debit.cost)?;
    }
    Ok(DebitOutcome::Debited { transaction })
}

pub(super) fn available_balance(
    conn: &Connection,
    user_id: Uuid,
) -> Result<Option<(i64, bool)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT balance - held, frozen FROM credit_accounts WHERE user_id = ?1")?
        .query_row(params![user_id.to_string()], |row| {
            Ok((row.get(0)?, row.get::<_, i64>(1)? != 0))
        })
        .optional()?)
}

pub(super) fn refund(
    conn: &Connection,
    refund: &Refund,
    key: Option<&str>,
    now: DateTime<Utc>,
) -> Result<RefundOutcome, StoreError> {
    let found = conn
        .prepare_cached(
            "SELECT user_id, kind, service, refundable FROM credit_transactions WHERE id = ?1",
        )?
        .query_row(params![refund.transaction_id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    let Some((owner, kind, service, refundable)) = found else {
        return Ok(RefundOutcome::UnknownTransaction);
    };
    let owner = Uuid::parse_str(&owner)
        .map_err(|e| StoreError::Corrupt(format!("user_id {owner:?}: {e}")))?;
    // The single writer holds the database while this runs, so what was read stays true.
    let amount = match crate::decide_refund(refund, owner, parse_kind(&kind)?, refundable) {
        Ok(amount) => amount,
        Err(outcome) => return Ok(outcome),
    };
    // The account first, conditionally: a refund never takes a balance past its maximum.
    let balance: Option<i64> = conn
        .prepare_cached(
            "UPDATE credit_accounts SET balance = balance + ?2, updated_at = ?3
             WHERE user_id = ?1 AND balance <= ?4 - ?2 RETURNING balance",
        )?
        .query_row(
            params![
                owner.to_string(),
                amount,
                timestamp(Utc::now()),
                MAX_BALANCE
            ],
            |row| row.get(0),
        )
        .optional()?;
    let Some(balance) = balance else {
        return Ok(RefundOutcome::BalanceLimit);
    };
    let updated = conn
        .prepare_cached("UPDATE credit_transactions SET refundable = refundable - ?2 WHERE id = ?1 AND refundable >= ?2")?
        .execute(params![refund.transaction_id, amount])?;
    if updated != 1 {
        // Returning an error rolls this operation's savepoint back, balance update included.
        return Err(StoreError::Corrupt(
            "refundable changed under the writer".into(),
        ));
    }
    // A debit taken from grants gives back to them (those still live), in reverse order.
    let back = plan_give_back(conn, &refund.transaction_id, amount, now)?;
    write_give_back(conn, owner, &refund.transaction_id, &back)?;
    let entry = Entry {
        user_id: owner,
        kind: TransactionKind::Refund,
        service: service.as_deref(),
        amount,
        refund_of: Some(&refund.transaction_id),
        reason: Some(&refund.reason),
        metadata: None,
        key,
        request_id: refund.request_id.as_deref(),
    };
    Ok(RefundOutcome::Refunded {
        transaction: record(conn, entry, balance)?,
        remaining: refundable - amount,
    })
}

pub(super) fn grant(
    conn: &Connection,
    grant: &Grant,
    key: Option<&str>,
) -> Result<GrantOutcome, StoreError> {
    let balance: Option<i64> = conn
        .prepare_cached(
            "UPDATE credit_accounts SET balance = balance + ?2, updated_at = ?4
             WHERE user_id = ?1 AND balance <= ?3 - ?2 RETURNING balance",
        )?
        .query_row(
            params![
                grant.user_id.to_string(),
                grant.amount,
                MAX_BALANCE,
                timestamp(Utc::now())
            ],
            |row| row.get(0),
        )
        .optional()?;
    let Some(balance) = balance else {
        return Ok(match current_balance(conn, grant.user_id)? {
            Some(_) => GrantOutcome::BalanceLimit,
            None => GrantOutcome::UnknownUser,
        });
    };
    let entry = Entry {
        user_id: grant.user_id,
        kind: TransactionKind::Grant,
        service: None,
        amount: grant.amount,
        refund_of: None,
        reason: Some(&grant.reason),
        metadata: None,
        key,
        request_id: grant.request_id.as_deref(),
    };
    let transaction = record(conn, entry, balance)?;
    if !grant.terms.is_base() {
        record_grant(conn, grant, &transaction.id)?;
    }
    Ok(GrantOutcome::Granted { transaction })
}
