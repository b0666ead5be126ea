//! Grants with an end date and a priority on SQLite (the rules are in `crate::grants`). The one
//! writer orders everything here; accounts without grant rows (`granted = 0`) never come here.

use super::*;
use crate::grants::{Source, Spent, Taker, allocate, give_back, new_grant_id, to_expire};

/// An account as the writer sees it.
pub(super) struct Account {
    pub(super) balance: i64,
    pub(super) held: i64,
    pub(super) granted: i64,
    pub(super) frozen: bool,
}

pub(super) fn read_account(
    conn: &Connection,
    user_id: Uuid,
) -> Result<Option<Account>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT balance, held, granted, frozen FROM credit_accounts WHERE user_id = ?1",
        )?
        .query_row(params![user_id.to_string()], |row| {
            Ok(Account {
                balance: row.get(0)?,
                held: row.get(1)?,
                granted: row.get(2)?,
                frozen: row.get::<_, i64>(3)? != 0,
            })
        })
        .optional()?)
}

/// Expires what is left of the account's grants past their end date, each part as an `expire`
/// transaction, except what live holds set aside ([`to_expire`]); holds that expired unswept
/// are freed first, so they keep nothing. Whether anything expired.
pub(super) fn expire_user_grants(
    conn: &Connection,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let at = timestamp(now);
    let due = grant_sources(conn, user_id, Some(now))?;
    if due.is_empty() {
        return Ok(false);
    }
    expire_user_holds(conn, user_id)?;
    let Some(account) = read_account(conn, user_id)? else {
        return Ok(false);
    };
    let parts = to_expire(due, account.held);
    for (grant_id, amount) in &parts {
        conn.prepare_cached(
            "UPDATE credit_grants SET remaining = remaining - ?2,
                 expired_at = CASE WHEN remaining = ?2 THEN ?3 END
             WHERE id = ?1",
        )?
        .execute(params![grant_id, amount, at])?;
        let balance: i64 = conn
            .prepare_cached(
                "UPDATE credit_accounts SET balance = balance - ?2, granted = granted - ?2,
                     updated_at = ?3
                 WHERE user_id = ?1 RETURNING balance",
            )?
            .query_row(params![user_id.to_string(), amount, at], |row| row.get(0))?;
        let metadata = serde_json::json!({ "grant_id": grant_id });
        let entry = Entry {
            user_id,
            kind: TransactionKind::Expire,
            service: None,
            amount: -amount,
            refund_of: None,
            reason: Some("grant expired"),
            metadata: Some(&metadata),
            key: None,
            request_id: None,
        };
        record(conn, entry, balance)?;
    }
    Ok(!parts.is_empty())
}

/// The account's grant rows with credits left, as sources; only those past their end date at
/// `due_at` when it is given.
fn grant_sources(
    conn: &Connection,
    user_id: Uuid,
    due_at: Option<DateTime<Utc>>,
) -> Result<Vec<Source>, StoreError> {
    conn.prepare_cached(
        "SELECT id, priority, expires_at, seq, remaining FROM credit_grants
         WHERE user_id = ?1 AND remaining > 0 AND (?2 IS NULL OR expires_at <= ?2)",
    )?
    .query_map(params![user_id.to_string(), due_at.map(timestamp)], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i32>(1)?,
            row.get::<_, Option<String>>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, i64>(4)?,
        ))
    })?
    .collect::<rusqlite::Result<Vec<_>>>()?
    .into_iter()
    .map(|(id, priority, expires_at, seq, remaining)| {
        Ok(Source {
            grant_id: Some(id),
            priority,
            expires_at: expires_at.as_deref().map(parse_time).transpose()?,
            seq,
            remaining,
        })
    })
    .collect()
}

/// Takes `amount` from the account's grant rows and base as `taker` takes at `now`
/// ([`allocate`]): the grant rows and `granted`. The caller has checked the balance covers it,
/// takes the balance down after this, and records the parts ([`record_spends`]) once the ledger
/// row has its id.
pub(super) fn take_from_grants(
    conn: &Connection,
    account: &Account,
    user_id: Uuid,
    amount: i64,
    taker: Taker,
    now: DateTime<Utc>,
) -> Result<Vec<(Option<String>, i64)>, StoreError> {
    let mut sources = grant_sources(conn, user_id, None)?;
    sources.push(Source::base(account.balance - account.granted));
    let taken = allocate(sources, amount, now, taker);
    let mut from_grants = 0;
    for (grant_id, part) in &taken {
        if let Some(grant_id) = grant_id {
            conn.prepare_cached(
                "UPDATE credit_grants SET remaining = remaining - ?2 WHERE id = ?1",
            )?
            .execute(params![grant_id, part])?;
            from_grants += part;
        }
    }
    if from_grants > 0 {
        conn.prepare_cached(
            "UPDATE credit_accounts SET granted = granted - ?2 WHERE user_id = ?1",
        )?
        .execute(params![user_id.to_string(), from_grants])?;
    }
    Ok(taken)
}

/// Records what a debit took from where (nothing when it all came from the base).
pub(super) fn record_spends(
    conn: &Connection,
    transaction_id: &str,
    user_id: Uuid,
    taken: &[(Option<String>, i64)],
) -> Result<(), StoreError> {
    if taken.iter().all(|(grant, _)| grant.is_none()) {
        return Ok(());
    }
    for (ordinal, (grant_id, amount)) in taken.iter().enumerate() {
        conn.prepare_cached(
            "INSERT INTO credit_grant_spends (transaction_id, ordinal, user_id, grant_id, amount)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            transaction_id,
            ordinal as i64,
            user_id.to_string(),
            grant_id,
            amount
        ])?;
    }
    Ok(())
}

/// Taking credits off an account that has grant rows: a debit, or an operator's downward
/// adjustment.
pub(super) struct Take<'a> {
    pub(super) entry: Entry<'a>,
    /// Whether a frozen account refuses it (debits; an operator's correction goes through).
    pub(super) refuse_frozen: bool,
}

/// What became of a [`Take`].
pub(super) enum Taken {
    Done(Transaction),
    Short { available: i64 },
    Frozen,
    UnknownUser,
}

impl Take<'_> {
    /// Expire what is due, check, take from the grants in order, then the balance and the row.
    pub(super) fn run(self, conn: &Connection, now: DateTime<Utc>) -> Result<Taken, StoreError> {
        let user_id = self.entry.user_id;
        let amount = -self.entry.amount;
        expire_user_grants(conn, user_id, now)?;
        let Some(account) = read_account(conn, user_id)? else {
            return Ok(Taken::UnknownUser);
        };
        if self.refuse_frozen && account.frozen {
            return Ok(Taken::Frozen);
        }
        if account.balance - account.held < amount {
            return Ok(Taken::Short {
                available: account.balance - account.held,
            });
        }
        let taken = take_from_grants(conn, &account, user_id, amount, Taker::Debit, now)?;
        let balance: i64 = conn
            .prepare_cached(
                "UPDATE credit_accounts SET balance = balance - ?2, updated_at = ?3
                 WHERE user_id = ?1 RETURNING balance",
            )?
            .query_row(
                params![user_id.to_string(), amount, timestamp(Utc::now())],
                |row| row.get(0),
            )?;
        let written = record(conn, self.entry, balance)?;
        record_spends(conn, &written.id, user_id, &taken)?;
        Ok(Taken::Done(written))
    }
}

/// Whether the account has grant rows (its debits take the grant-aware path).
pub(super) fn has_grants(conn: &Connection, user_id: Uuid) -> Result<bool, StoreError> {
    Ok(read_account(conn, user_id)?.is_some_and(|a| a.granted > 0))
}

/// Where a refund of `amount` of the debit `transaction_id` goes, by what the debit took from
/// where (nothing recorded: all to the base). Grants past their end date take nothing back.
pub(super) fn plan_give_back(
    conn: &Connection,
    transaction_id: &str,
    amount: i64,
    now: DateTime<Utc>,
) -> Result<Vec<(i32, Option<String>, i64)>, StoreError> {
    let parts = conn
        .prepare_cached(
            "SELECT s.ordinal,
                    CASE WHEN g.expires_at IS NULL OR g.expires_at > ?2 THEN g.id END,
                    s.amount - s.refunded
             FROM credit_grant_spends s LEFT JOIN credit_grants g ON g.id = s.grant_id
             WHERE s.transaction_id = ?1 AND s.refunded < s.amount",
        )?
        .query_map(params![transaction_id, timestamp(now)], |row| {
            Ok(Spent {
                ordinal: row.get(0)?,
                live_grant: row.get(1)?,
                unrefunded: row.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(give_back(parts, amount))
}

/// Writes a planned give-back: the debit's parts refunded, the live grants' credits and
/// `granted` back. The caller has raised the balance by the whole refund first, so `granted`
/// never passes it.
pub(super) fn write_give_back(
    conn: &Connection,
    user_id: Uuid,
    transaction_id: &str,
    back: &[(i32, Option<String>, i64)],
) -> Result<(), StoreError> {
    let mut to_grants = 0;
    for (ordinal, grant_id, amount) in back {
        conn.prepare_cached(
            "UPDATE credit_grant_spends SET refunded = refunded + ?3
             WHERE transaction_id = ?1 AND ordinal = ?2",
        )?
        .execute(params![transaction_id, ordinal, amount])?;
        if let Some(grant_id) = grant_id {
            conn.prepare_cached(
                "UPDATE credit_grants SET remaining = remaining + ?2, expired_at = NULL WHERE id = ?1",
            )?
            .execute(params![grant_id, amount])?;
            to_grants += amount;
        }
    }
    if to_grants > 0 {
        conn.prepare_cached(
            "UPDATE credit_accounts SET granted = granted + ?2 WHERE user_id = ?1",
        )?
        .execute(params![user_id.to_string(), to_grants])?;
    }
    Ok(())
}

/// Writes the grant row of a grant with an end date or a priority, and counts it in `granted`.
pub(super) fn record_grant(
    conn: &Connection,
    grant: &Grant,
    transaction_id: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO credit_grants
            (id, user_id, transaction_id, amount, remaining, priority, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        new_grant_id(),
        grant.user_id.to_string(),
        transaction_id,
        grant.amount,
        grant.terms.priority,
        grant.terms.expires_at.map(timestamp),
        timestamp(now()),
    ])?;
    conn.prepare_cached("UPDATE credit_accounts SET granted = granted + ?2 WHERE user_id = ?1")?
        .execute(params![grant.user_id.to_string(), grant.amount])?;
    Ok(())
}
