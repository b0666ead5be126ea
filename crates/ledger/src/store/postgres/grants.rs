//! Grants with an end date and a priority on PostgreSQL (the rules are in `crate::grants`).
//!
//! Accounts without grant rows (`granted = 0`) never come here: their debit is [`DEBIT_SQL`].
//! Everything here runs with the account's row locked (`FOR UPDATE`), which orders it against
//! every other change of that account's grants. Locks are taken hold rows, then the account
//! row, then grant rows, as everywhere: whoever expires grants frees the account's expired holds
//! before it locks the account.

use super::*;
use crate::grants::{Source, Spent, Taker, allocate, give_back, new_grant_id, to_expire};

/// The account, locked for the rest of the database transaction.
pub(super) struct Account {
    pub(super) balance: i64,
    pub(super) held: i64,
    pub(super) granted: i64,
    pub(super) frozen: bool,
}

pub(super) async fn lock_account(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Option<Account>, StoreError> {
    let row = sqlx::query(
        "SELECT balance, held, granted, frozen FROM credit_accounts WHERE user_id = $1 FOR UPDATE",
    )
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok(Account {
            balance: row.try_get("balance")?,
            held: row.try_get("held")?,
            granted: row.try_get("granted")?,
            frozen: row.try_get("frozen")?,
        })
    })
    .transpose()
}

/// Expires what is left of the account's grants past their end date, each part as an `expire`
/// transaction, except what live holds set aside ([`to_expire`]). The caller has freed the
/// account's expired holds ([`expire_user_holds`]) and then taken the account's row lock
/// ([`lock_account`]), which gave it `held`: live holds only, as on SQLite. Whether anything
/// expired.
pub(super) async fn expire_user_grants(
    conn: &mut PgConnection,
    user_id: Uuid,
    held: i64,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let due = grant_sources(&mut *conn, user_id, Some(now)).await?;
    if due.is_empty() {
        return Ok(false);
    }
    let parts = to_expire(due, held);
    for (grant_id, amount) in &parts {
        sqlx::query(
            "UPDATE credit_grants SET remaining = remaining - $2,
                 expired_at = CASE WHEN remaining = $2 THEN $3 END
             WHERE id = $1",
        )
        .bind(grant_id)
        .bind(amount)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "WITH expired AS (
                UPDATE credit_accounts SET balance = balance - $2, granted = granted - $2,
                    updated_at = now()
                WHERE user_id = $1 RETURNING user_id, balance)
             INSERT INTO credit_transactions
                (id, user_id, kind, amount, balance_before, balance_after, reason, metadata)
             SELECT $3, user_id, 'expire', -$2, balance + $2, balance, 'grant expired', $4
             FROM expired",
        )
        .bind(user_id)
        .bind(amount)
        .bind(new_transaction_id())
        .bind(Json(serde_json::json!({ "grant_id": grant_id })))
        .execute(&mut *conn)
        .await?;
    }
    Ok(!parts.is_empty())
}

/// The account's grant rows with credits left, as sources; only those past their end date at
/// `due_at` when it is given.
async fn grant_sources(
    conn: &mut PgConnection,
    user_id: Uuid,
    due_at: Option<DateTime<Utc>>,
) -> Result<Vec<Source>, StoreError> {
    type Row = (String, i32, Option<DateTime<Utc>>, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, priority, expires_at, seq, remaining FROM credit_grants
         WHERE user_id = $1 AND remaining > 0 AND ($2::timestamptz IS NULL OR expires_at <= $2)",
    )
    .bind(user_id)
    .bind(due_at)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, priority, expires_at, seq, remaining)| Source {
            grant_id: Some(id),
            priority,
            expires_at,
            seq,
            remaining,
        })
        .collect())
}

/// Takes `amount` from the account's grant rows and base as `taker` takes at `now`
/// ([`allocate`]), for the ledger row `transaction_id`: the grant rows, `granted` and the record
/// of what came from where. The caller holds the account's row lock, has checked the balance
/// covers it, and takes the balance down after this.
pub(super) async fn take_from_grants(
    conn: &mut PgConnection,
    account: &Account,
    spend: Spend<'_>,
) -> Result<(), StoreError> {
    let Spend {
        user_id,
        amount,
        transaction_id,
        taker,
        now,
    } = spend;
    let mut sources = grant_sources(&mut *conn, user_id, None).await?;
    sources.push(Source::base(account.balance - account.granted));
    let taken = allocate(sources, amount, now, taker);
    if taken.iter().all(|(grant, _)| grant.is_none()) {
        return Ok(());
    }
    let ids: Vec<String> = taken
        .iter()
        .map(|(g, _)| g.clone().unwrap_or_default())
        .collect();
    let amounts: Vec<i64> = taken.iter().map(|(_, a)| *a).collect();
    sqlx::query(
        "WITH parts AS (SELECT * FROM unnest($2::text[], $3::bigint[]) AS p(grant_id, amount)),
         took AS (
            UPDATE credit_grants g SET remaining = g.remaining - p.amount
            FROM parts p WHERE g.id = p.grant_id AND g.user_id = $1 RETURNING p.amount)
         UPDATE credit_accounts SET granted = granted - (SELECT COALESCE(sum(amount), 0) FROM took)
         WHERE user_id = $1",
    )
    .bind(user_id)
    .bind(&ids)
    .bind(&amounts)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO credit_grant_spends (transaction_id, ordinal, user_id, grant_id, amount)
         SELECT $1, (p.ordinal - 1)::int, $2, NULLIF(p.grant_id, ''), p.amount
         FROM unnest($3::text[], $4::bigint[]) WITH ORDINALITY AS p(grant_id, amount, ordinal)",
    )
    .bind(transaction_id)
    .bind(user_id)
    .bind(&ids)
    .bind(&amounts)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One spending of an account's credits, for [`take_from_grants`].
pub(super) struct Spend<'a> {
    pub(super) user_id: Uuid,
    pub(super) amount: i64,
    /// The ledger row it is recorded for.
    pub(super) transaction_id: &'a str,
    pub(super) taker: Taker,
    /// The store clock's reading: what decides which grants are past their end date.
    pub(super) now: DateTime<Utc>,
}

/// Taking credits off an account that has grant rows: a debit, or an operator's downward
/// adjustment.
pub(super) struct Take<'a> {
    pub(super) user_id: Uuid,
    pub(super) amount: i64,
    pub(super) kind: TransactionKind,
    pub(super) service: Option<&'a str>,
    pub(super) metadata: Option<&'a Value>,
    pub(super) reason: Option<&'a str>,
    pub(super) key: Option<&'a str>,
    pub(super) request_id: Option<&'a str>,
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
    /// In its own database transaction (a savepoint inside the caller's): free expired holds,
    /// lock the account, expire what is due, check, take from the grants in order, then the
    /// balance and the row. A debit of an account with grants and nothing due costs, beside the
    /// missed [`DEBIT_SQL`] and the account read that sent it here: BEGIN, the expired holds,
    /// the lock, the due grants, the grants, their update, the record of the parts, the balance
    /// with its row, COMMIT.
    pub(super) async fn run(
        &self,
        conn: &mut PgConnection,
        now: DateTime<Utc>,
    ) -> Result<Taken, StoreError> {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        // Hold rows before the account row, as everywhere.
        expire_user_holds(&mut tx, self.user_id).await?;
        let Some(mut account) = lock_account(&mut tx, self.user_id).await? else {
            return Ok(Taken::UnknownUser);
        };
        if expire_user_grants(&mut tx, self.user_id, account.held, now).await? {
            account = lock_account(&mut tx, self.user_id)
                .await?
                .ok_or_else(|| StoreError::Corrupt("a locked account vanished".into()))?;
        }
        let available = account.balance - account.held;
        if self.refuse_frozen && account.frozen {
            tx.commit().await?;
            return Ok(Taken::Frozen);
        }
        if available < self.amount {
            tx.commit().await?;
            return Ok(Taken::Short { available });
        }
        let id = new_transaction_id();
        let spend = Spend {
            user_id: self.user_id,
            amount: self.amount,
            transaction_id: &id,
            taker: Taker::Debit,
            now,
        };
        take_from_grants(&mut tx, &account, spend).await?;
        let refundable = if self.kind == TransactionKind::Debit {
            self.amount
        } else {
            0
        };
        let row = sqlx::query(&format!(
            "WITH taken AS (
                UPDATE credit_accounts SET balance = balance - $2, updated_at = now()
                WHERE user_id = $1 AND balance - held >= $2 RETURNING user_id, balance)
             INSERT INTO credit_transactions
                (id, user_id, kind, service, amount, balance_before, balance_after, refundable,
                 reason, metadata, idempotency_key, request_id)
             SELECT $3, user_id, $4, $5, -$2, balance + $2, balance, $6, $7, $8, $9, $10
             FROM taken RETURNING {COLUMNS}"
        ))
        .bind(self.user_id)
        .bind(self.amount)
        .bind(&id)
        .bind(self.kind.as_str())
        .bind(self.service)
        .bind(refundable)
        .bind(self.reason)
        .bind(self.metadata.map(Json))
        .bind(self.key)
        .bind(self.request_id)
        .fetch_one(&mut *tx)
        .await?;
        let written = transaction(&row)?;
        tx.commit().await?;
        Ok(Taken::Done(written))
    }
}

/// Where a refund of `amount` of the debit `transaction_id` goes, by what the debit took from
/// where (nothing recorded: all to the base). Grants past their end date take nothing back.
pub(super) async fn plan_give_back(
    conn: &mut PgConnection,
    transaction_id: &str,
    amount: i64,
    now: DateTime<Utc>,
) -> Result<Vec<(i32, Option<String>, i64)>, StoreError> {
    let rows: Vec<(i32, Option<String>, i64)> = sqlx::query_as(
        "SELECT s.ordinal,
                CASE WHEN g.expires_at IS NULL OR g.expires_at > $2 THEN g.id END,
                s.amount - s.refunded
         FROM credit_grant_spends s LEFT JOIN credit_grants g ON g.id = s.grant_id
         WHERE s.transaction_id = $1 AND s.refunded < s.amount",
    )
    .bind(transaction_id)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let parts = rows
        .into_iter()
        .map(|(ordinal, live_grant, unrefunded)| Spent {
            ordinal,
            live_grant,
            unrefunded,
        })
        .collect();
    Ok(give_back(parts, amount))
}

/// Writes a planned give-back: the debit's parts refunded, the live grants' credits back. The
/// account's `granted` grows in the refund's own statement.
pub(super) async fn write_give_back(
    conn: &mut PgConnection,
    transaction_id: &str,
    back: &[(i32, Option<String>, i64)],
) -> Result<(), StoreError> {
    let ordinals: Vec<i32> = back.iter().map(|(o, _, _)| *o).collect();
    let ids: Vec<String> = back
        .iter()
        .map(|(_, g, _)| g.clone().unwrap_or_default())
        .collect();
    let amounts: Vec<i64> = back.iter().map(|(_, _, a)| *a).collect();
    sqlx::query(
        "WITH parts AS (SELECT * FROM unnest($2::int[], $3::text[], $4::bigint[])
                        AS p(ordinal, grant_id, amount)),
         spends AS (
            UPDATE credit_grant_spends s SET refunded = s.refunded + p.amount
            FROM parts p WHERE s.transaction_id = $1 AND s.ordinal = p.ordinal)
         UPDATE credit_grants g SET remaining = g.remaining + p.amount, expired_at = NULL
         FROM parts p WHERE g.id = p.grant_id",
    )
    .bind(transaction_id)
    .bind(&ordinals)
    .bind(&ids)
    .bind(&amounts)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes the grant row of a grant with an end date or a priority, for its ledger row.
pub(super) async fn record_grant(
    conn: &mut PgConnection,
    grant: &Grant,
    transaction_id: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO credit_grants
            (id, user_id, transaction_id, amount, remaining, priority, expires_at)
         VALUES ($1, $2, $3, $4, $4, $5, $6)",
    )
    .bind(new_grant_id())
    .bind(grant.user_id)
    .bind(transaction_id)
    .bind(grant.amount)
    .bind(grant.terms.priority)
    .bind(grant.terms.expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
