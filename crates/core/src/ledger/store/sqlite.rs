//! The ledger on the embedded SQLite file.
//!
//! SQLite takes one writer at a time, so the store has exactly one: a thread that owns the only
//! writing connection and commits in groups. Each operation runs inside its own savepoint (so a
//! failed one leaves no trace), and the whole group commits at once; every caller hears back only
//! after that commit. The conditional `UPDATE … WHERE balance >= cost RETURNING` decides each debit
//! exactly as on PostgreSQL. Reads use a pool of read-only connections that WAL mode runs beside
//! the writer.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{LedgerStore, StoreError, parse_kind, replay};
use crate::ledger::{
    AuditReport, Debit, DebitOutcome, Discrepancy, Grant, GrantOutcome, Hold, HoldDiscrepancy,
    HoldStatus, Holdings, IdempotencyClaim, Idempotent, MAX_BALANCE, Refund, RefundOutcome,
    Reserve, ReserveOutcome, Settle, SettleOutcome, Transaction, TransactionKind, TransactionPage,
    new_reservation_id, new_transaction_id,
};
use crate::service_keys::{NewServiceKey, ServiceKey, ServiceKeyStore};
use crate::users::{CreatedUser, EmailVerification, NewUser, Role, User, UserStore};

const COLUMNS: &str = "id, user_id, kind, service, amount, balance_before, balance_after, \
                       refund_of, reason, metadata, created_at";

/// The most operations one group commit takes.
const MAX_GROUP: usize = 256;

/// The ledger and users in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: Writer,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Starts the writer thread on the migrated file at `path`; reads go through `reader`.
    pub fn new(path: &Path, reader: SqlitePool) -> Self {
        Self {
            writer: Writer::start(path.to_owned()),
            reader,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The writer thread.

/// One operation waiting for the writer: it runs, then hears whether its group committed.
trait Job: Send {
    fn run(&mut self, conn: &Connection);
    fn failed(&self) -> bool;
    fn finish(self: Box<Self>, committed: Result<(), String>);
}

struct Pending<T, F> {
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) {
        if let Some(work) = self.work.take() {
            self.result = Some(work(conn));
        }
    }

    fn failed(&self) -> bool {
        !matches!(self.result, Some(Ok(_)))
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let result = match (committed, self.result) {
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Err(e), _) => Err(StoreError::Writer(format!("group commit failed: {e}"))),
            (Ok(()), None) => Err(StoreError::Writer("operation never ran".into())),
        };
        // The caller may have gone away (its request was cancelled); the write stands.
        let _ = self.reply.send(result);
    }
}

#[derive(Debug, Clone)]
struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    fn start(path: std::path::PathBuf) -> Self {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>(4096);
        std::thread::Builder::new()
            .name("hub-sqlite-writer".into())
            .spawn(move || writer_thread(&path, queue))
            .map_err(|e| tracing::error!(error = %e, "cannot start the sqlite writer"))
            .ok();
        Self { jobs }
    }

    /// Runs `work` on the writer, inside a savepoint of the next group commit.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending {
            work: Some(work),
            result: None,
            reply,
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Writer("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Writer("the writer stopped before answering".into()))?
    }
}

fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.pragma_update(None, "synchronous", "normal")?;
    conn.pragma_update(None, "foreign_keys", "on")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn writer_thread(path: &Path, mut queue: mpsc::Receiver<Box<dyn Job>>) {
    let mut conn = match open_writer(path) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "cannot open the sqlite writer");
            while let Some(job) = queue.blocking_recv() {
                job.finish(Err(format!("cannot open {}: {e}", path.display())));
            }
            return;
        }
    };
    while let Some(first) = queue.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let committed = commit_group(&mut conn, &mut group);
        if let Err(e) = &committed {
            tracing::error!(error = %e, operations = group.len(), "sqlite group commit failed");
        }
        for job in group {
            job.finish(committed.clone());
        }
    }
}

fn commit_group(conn: &mut Connection, group: &mut [Box<dyn Job>]) -> Result<(), String> {
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    for job in group.iter_mut() {
        let savepoint = tx.savepoint().map_err(|e| e.to_string())?;
        job.run(&savepoint);
        if job.failed() {
            // Dropping an uncommitted savepoint rolls it back: the failed operation leaves nothing.
            drop(savepoint);
            // Some errors (disk full, I/O) make SQLite roll back the whole transaction itself;
            // going on would run the rest outside it. Stop: the whole group has failed.
            if tx.is_autocommit() {
                return Err("the transaction was rolled back by the engine".into());
            }
        } else {
            savepoint.commit().map_err(|e| e.to_string())?;
        }
    }
    tx.commit().map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Writes, run on the writer thread.

/// Timestamps as RFC 3339 text in UTC with microseconds: sortable as text, readable by sqlx.
fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A clock reading truncated to what the text form keeps, so values read back compare equal.
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::parse_from_rfc3339(&timestamp(now)).map_or(now, |t| t.with_timezone(&Utc))
}

/// Runs `operation` once per idempotency key: the claim and the write share one savepoint, and
/// the single writer serialises twins, so the second finds the first's outcome.
fn run_idempotent<T, F>(
    conn: &Connection,
    claim: Option<&IdempotencyClaim>,
    operation: F,
) -> Result<Idempotent<T>, StoreError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce(&Connection, Option<&str>) -> Result<T, StoreError>,
{
    let Some(claim) = claim else {
        return Ok(Idempotent::Fresh(operation(conn, None)?));
    };
    let claimed = conn
        .prepare_cached(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (scope, key) DO NOTHING",
        )?
        .execute(params![claim.scope, claim.key, claim.fingerprint, timestamp(Utc::now())])?
        == 1;
    if !claimed {
        let (fingerprint, outcome): (String, Option<String>) = conn
            .prepare_cached(
                "SELECT fingerprint, outcome FROM idempotency_keys WHERE scope = ?1 AND key = ?2",
            )?
            .query_row(params![claim.scope, claim.key], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
        let outcome: Option<Value> = outcome.as_deref().map(serde_json::from_str).transpose()?;
        return replay(claim, &fingerprint, outcome);
    }
    let outcome = operation(conn, Some(&claim.key))?;
    conn.prepare_cached("UPDATE idempotency_keys SET outcome = ?3 WHERE scope = ?1 AND key = ?2")?
        .execute(params![
            claim.scope,
            claim.key,
            serde_json::to_string(&outcome)?
        ])?;
    Ok(Idempotent::Fresh(outcome))
}

/// What a transaction row records besides its account's balances.
struct Entry<'a> {
    user_id: Uuid,
    kind: TransactionKind,
    service: Option<&'a str>,
    amount: i64,
    refund_of: Option<&'a str>,
    reason: Option<&'a str>,
    metadata: Option<&'a Value>,
    key: Option<&'a str>,
    request_id: Option<&'a str>,
}

/// Writes the transaction row of a balance change that has just happened.
fn record(
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

fn current_balance(conn: &Connection, user_id: Uuid) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT balance FROM credit_accounts WHERE user_id = ?1")?
        .query_row(params![user_id.to_string()], |row| row.get(0))
        .optional()?)
}

fn debit(conn: &Connection, debit: &Debit, key: Option<&str>) -> Result<DebitOutcome, StoreError> {
    let attempt = || -> Result<Option<i64>, StoreError> {
        Ok(conn
            .prepare_cached(
                "UPDATE credit_accounts SET balance = balance - ?2, updated_at = ?3
                 WHERE user_id = ?1 AND balance - held >= ?2 RETURNING balance",
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
    let Some(balance) = balance else {
        // The conditional update matched nothing: say why, from what the account holds now.
        return Ok(match available_balance(conn, debit.user_id)? {
            Some(balance) => DebitOutcome::Insufficient { balance },
            None => DebitOutcome::UnknownUser,
        });
    };
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
    Ok(DebitOutcome::Debited {
        transaction: record(conn, entry, balance)?,
    })
}

fn available_balance(conn: &Connection, user_id: Uuid) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT balance - held FROM credit_accounts WHERE user_id = ?1")?
        .query_row(params![user_id.to_string()], |row| row.get(0))
        .optional()?)
}

const HOLD_COLUMNS: &str = "id, user_id, service, amount, status, captured, transaction_id, \
                            created_at, expires_at, settled_at, metadata";

fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {text:?}: {e}")))
}

/// A hold row (with its metadata) as read by the writer.
fn hold_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Hold, Option<String>, [String; 4])> {
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
fn find_hold(conn: &Connection, id: &str) -> Result<Option<(Hold, Option<String>)>, StoreError> {
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
fn expire_user_holds(conn: &Connection, user_id: Uuid) -> Result<bool, StoreError> {
    let at = timestamp(now());
    let amounts: Vec<i64> = conn
        .prepare_cached(
            "UPDATE credit_holds SET status = 'expired', settled_at = ?2
             WHERE user_id = ?1 AND status = 'held' AND expires_at <= ?2 RETURNING amount",
        )?
        .query_map(params![user_id.to_string(), at], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if amounts.is_empty() {
        return Ok(false);
    }
    conn.prepare_cached("UPDATE credit_accounts SET held = held - ?2 WHERE user_id = ?1")?
        .execute(params![user_id.to_string(), amounts.iter().sum::<i64>()])?;
    Ok(true)
}

/// Frees every expired hold; how many accounts got credits back.
fn expire_all_holds(conn: &Connection) -> Result<u64, StoreError> {
    let at = timestamp(now());
    let freed: Vec<(String, i64)> = conn
        .prepare_cached(
            "UPDATE credit_holds SET status = 'expired', settled_at = ?1
             WHERE status = 'held' AND expires_at <= ?1 RETURNING user_id, amount",
        )?
        .query_map(params![at], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut by_user = std::collections::BTreeMap::<String, i64>::new();
    for (user, amount) in freed {
        *by_user.entry(user).or_default() += amount;
    }
    for (user, amount) in &by_user {
        conn.prepare_cached("UPDATE credit_accounts SET held = held - ?2 WHERE user_id = ?1")?
            .execute(params![user, amount])?;
    }
    Ok(by_user.len() as u64)
}

fn reserve(conn: &Connection, reserve: &Reserve) -> Result<ReserveOutcome, StoreError> {
    let created_at = now();
    let attempt = || -> Result<Option<(i64, i64)>, StoreError> {
        Ok(conn
            .prepare_cached(
                "UPDATE credit_accounts SET held = held + ?2, updated_at = ?3
                 WHERE user_id = ?1 AND balance - held >= ?2 RETURNING balance, held",
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
    let mut reserved = attempt()?;
    if reserved.is_none() && expire_user_holds(conn, reserve.user_id)? {
        reserved = attempt()?;
    }
    let Some((balance, held)) = reserved else {
        return Ok(match available_balance(conn, reserve.user_id)? {
            Some(available) => ReserveOutcome::Insufficient { available },
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
             placed_by)
         VALUES (?1, ?2, ?3, ?4, 'held', ?5, ?6, ?7, ?8, ?9)",
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
    ])?;
    Ok(ReserveOutcome::Held {
        hold,
        available: balance - held,
    })
}

fn settle(conn: &Connection, settle: &Settle) -> Result<SettleOutcome, StoreError> {
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
    let metadata: Option<Value> = metadata.as_deref().map(serde_json::from_str).transpose()?;
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

fn refund(
    conn: &Connection,
    refund: &Refund,
    key: Option<&str>,
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
    let amount = match crate::ledger::decide_refund(refund, owner, parse_kind(&kind)?, refundable) {
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

fn grant(conn: &Connection, grant: &Grant, key: Option<&str>) -> Result<GrantOutcome, StoreError> {
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
    Ok(GrantOutcome::Granted {
        transaction: record(conn, entry, balance)?,
    })
}

fn create_user(conn: &Connection, new: &NewUser) -> Result<Option<CreatedUser>, StoreError> {
    let user = User {
        id: Uuid::now_v7(),
        email: new.email.clone(),
        name: new.name.clone(),
        created_at: now(),
    };
    let inserted = conn
        .prepare_cached(
            "INSERT INTO users
                 (id, email, name, created_at, google_subject, password_hash, email_verified_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            user.id.to_string(),
            user.email,
            user.name,
            timestamp(user.created_at),
            new.google_subject,
            new.password_hash,
            new.email_verified.then(|| timestamp(user.created_at)),
        ])?;
    if inserted == 0 {
        return Ok(None);
    }
    conn.prepare_cached("INSERT INTO credit_accounts (user_id, updated_at) VALUES (?1, ?2)")?
        .execute(params![user.id.to_string(), timestamp(user.created_at)])?;
    conn.prepare_cached("INSERT INTO user_roles (user_id, role) VALUES (?1, ?2)")?
        .execute(params![user.id.to_string(), new.role.as_str()])?;
    let initial = if new.initial_credits > 0 {
        let initial = Grant {
            user_id: user.id,
            amount: new.initial_credits,
            reason: "initial credits".to_owned(),
            request_id: None,
        };
        match grant(conn, &initial, None)? {
            GrantOutcome::Granted { transaction } => Some(transaction),
            other => {
                return Err(StoreError::Corrupt(format!(
                    "grant to a new account: {other:?}"
                )));
            }
        }
    } else {
        None
    };
    Ok(Some(CreatedUser {
        user,
        balance: new.initial_credits,
        grant: initial,
    }))
}

fn verify_email(
    conn: &Connection,
    id: Uuid,
    credits: i64,
) -> Result<EmailVerification, StoreError> {
    // The conditional update decides: of concurrent calls, only one finds the address unverified.
    let verified = conn
        .prepare_cached(
            "UPDATE users SET email_verified_at = ?2 WHERE id = ?1 AND email_verified_at IS NULL",
        )?
        .execute(params![id.to_string(), timestamp(now())])?;
    if verified == 0 {
        let exists = conn
            .prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
            .query_row(params![id.to_string()], |_| Ok(()))
            .optional()?
            .is_some();
        return Ok(if exists {
            EmailVerification::AlreadyVerified
        } else {
            EmailVerification::UnknownUser
        });
    }
    if credits <= 0 {
        return Ok(EmailVerification::Verified { grant: None });
    }
    let welcome = Grant {
        user_id: id,
        amount: credits,
        reason: "new-user credits: email verified".to_owned(),
        request_id: None,
    };
    Ok(EmailVerification::Verified {
        grant: match grant(conn, &welcome, None)? {
            GrantOutcome::Granted { transaction } => Some(transaction),
            // At the balance ceiling: the address is verified all the same.
            GrantOutcome::BalanceLimit => None,
            GrantOutcome::UnknownUser => {
                return Err(StoreError::Corrupt(format!(
                    "user {id} has no credit account"
                )));
            }
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Reads, on the read-only pool.

fn uuid(row: &SqliteRow, column: &str) -> Result<Uuid, StoreError> {
    let text: String = row.try_get(column)?;
    Uuid::parse_str(&text).map_err(|e| StoreError::Corrupt(format!("{column} {text:?}: {e}")))
}

fn transaction(row: &SqliteRow) -> Result<Transaction, StoreError> {
    let metadata: Option<String> = row.try_get("metadata")?;
    Ok(Transaction {
        id: row.try_get("id")?,
        user_id: uuid(row, "user_id")?,
        kind: parse_kind(row.try_get("kind")?)?,
        service: row.try_get("service")?,
        amount: row.try_get("amount")?,
        balance_before: row.try_get("balance_before")?,
        balance_after: row.try_get("balance_after")?,
        refund_of: row.try_get("refund_of")?,
        reason: row.try_get("reason")?,
        metadata: metadata.as_deref().map(serde_json::from_str).transpose()?,
        created_at: row.try_get("created_at")?,
    })
}

fn user(row: &SqliteRow) -> Result<User, StoreError> {
    Ok(User {
        id: uuid(row, "id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

async fn account_balance(
    conn: &mut SqliteConnection,
    user_id: Uuid,
) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT balance FROM credit_accounts WHERE user_id = ?1")
            .bind(user_id.to_string())
            .fetch_optional(&mut *conn)
            .await?,
    )
}

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn balance(&self, user_id: Uuid) -> Result<Option<i64>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        account_balance(&mut conn, user_id).await
    }

    async fn debit(
        &self,
        operation: &Debit,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<DebitOutcome>, StoreError> {
        let (operation, claim) = (operation.clone(), claim.cloned());
        self.writer
            .write(move |conn| {
                run_idempotent(conn, claim.as_ref(), |conn, key| {
                    debit(conn, &operation, key)
                })
            })
            .await
    }

    async fn refund(
        &self,
        operation: &Refund,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<RefundOutcome>, StoreError> {
        let (operation, claim) = (operation.clone(), claim.cloned());
        self.writer
            .write(move |conn| {
                run_idempotent(conn, claim.as_ref(), |conn, key| {
                    refund(conn, &operation, key)
                })
            })
            .await
    }

    async fn grant(
        &self,
        operation: &Grant,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<GrantOutcome>, StoreError> {
        let (operation, claim) = (operation.clone(), claim.cloned());
        self.writer
            .write(move |conn| {
                run_idempotent(conn, claim.as_ref(), |conn, key| {
                    grant(conn, &operation, key)
                })
            })
            .await
    }

    async fn transactions(
        &self,
        user_id: Uuid,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Option<TransactionPage>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        if account_balance(&mut conn, user_id).await?.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM credit_transactions
             WHERE user_id = ?1
               AND (?2 IS NULL
                    OR seq < (SELECT seq FROM credit_transactions WHERE id = ?2 AND user_id = ?1))
             ORDER BY seq DESC LIMIT ?3"
        ))
        .bind(user_id.to_string())
        .bind(cursor)
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut *conn)
        .await?;
        let transactions = rows
            .iter()
            .map(transaction)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(crate::ledger::page(transactions, limit)))
    }

    async fn holdings(&self, user_id: Uuid) -> Result<Option<Holdings>, StoreError> {
        let row = sqlx::query(
            "SELECT a.balance, COALESCE((SELECT sum(h.amount) FROM credit_holds h
                 WHERE h.user_id = a.user_id AND h.status = 'held' AND h.expires_at > ?2), 0) AS held
             FROM credit_accounts a WHERE a.user_id = ?1",
        )
        .bind(user_id.to_string())
        .bind(timestamp(Utc::now()))
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(Holdings {
                balance: row.try_get("balance")?,
                held: row.try_get("held")?,
            })
        })
        .transpose()
    }

    async fn reserve(
        &self,
        operation: &Reserve,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<ReserveOutcome>, StoreError> {
        let (operation, claim) = (operation.clone(), claim.cloned());
        self.writer
            .write(move |conn| {
                run_idempotent(conn, claim.as_ref(), |conn, _key| reserve(conn, &operation))
            })
            .await
    }

    async fn settle(&self, operation: &Settle) -> Result<SettleOutcome, StoreError> {
        let operation = operation.clone();
        self.writer
            .write(move |conn| settle(conn, &operation))
            .await
    }

    async fn expire_holds(&self) -> Result<u64, StoreError> {
        self.writer.write(expire_all_holds).await
    }

    async fn audit(&self) -> Result<AuditReport, StoreError> {
        // One read transaction, so the balances and sums are of the same moment.
        let mut tx = self.reader.begin().await?;
        let hold_rows = sqlx::query(
            "SELECT a.user_id, a.held, COALESCE(SUM(h.amount), 0) AS total
             FROM credit_accounts a LEFT JOIN credit_holds h
               ON h.user_id = a.user_id AND h.status = 'held'
             GROUP BY a.user_id, a.held
             HAVING a.held <> COALESCE(SUM(h.amount), 0)",
        )
        .fetch_all(&mut *tx)
        .await?;
        let hold_discrepancies = hold_rows
            .iter()
            .map(|row| {
                Ok(HoldDiscrepancy {
                    user_id: uuid(row, "user_id")?,
                    held: row.try_get("held")?,
                    sum_of_live_holds: row.try_get("total")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM credit_accounts")
            .fetch_one(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT a.user_id, a.balance, COALESCE(SUM(t.amount), 0) AS total
             FROM credit_accounts a LEFT JOIN credit_transactions t ON t.user_id = a.user_id
             GROUP BY a.user_id, a.balance
             HAVING a.balance <> COALESCE(SUM(t.amount), 0)",
        )
        .fetch_all(&mut *tx)
        .await?;
        let discrepancies = rows
            .iter()
            .map(|row| {
                Ok(Discrepancy {
                    user_id: uuid(row, "user_id")?,
                    balance: row.try_get("balance")?,
                    sum_of_transactions: row.try_get("total")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(AuditReport {
            accounts,
            discrepancies,
            hold_discrepancies,
        })
    }

    async fn purge_idempotency_keys(&self, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
        let cutoff = timestamp(older_than);
        self.writer
            .write(move |conn| {
                Ok(conn
                    .prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?1")?
                    .execute(params![cutoff])? as u64)
            })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, new: &NewUser) -> Result<Option<CreatedUser>, StoreError> {
        let new = new.clone();
        self.writer.write(move |conn| create_user(conn, &new)).await
    }

    async fn find_user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT id, email, name, created_at FROM users WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(user).transpose()
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT id, email, name, created_at FROM users WHERE email = ?1")
            .bind(email.trim().to_lowercase())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(user).transpose()
    }

    async fn find_user_by_google_subject(&self, subject: &str) -> Result<Option<User>, StoreError> {
        let row =
            sqlx::query("SELECT id, email, name, created_at FROM users WHERE google_subject = ?1")
                .bind(subject)
                .fetch_optional(&self.reader)
                .await?;
        row.as_ref().map(user).transpose()
    }

    async fn link_google_subject(&self, id: Uuid, subject: &str) -> Result<bool, StoreError> {
        let subject = subject.to_owned();
        self.writer
            .write(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE users SET google_subject = ?2, password_hash = NULL,
                             email_verified_at = COALESCE(email_verified_at, ?3)
                         WHERE id = ?1 AND google_subject IS NULL
                           AND NOT EXISTS (SELECT 1 FROM users WHERE google_subject = ?2)",
                    )?
                    .execute(params![id.to_string(), subject, timestamp(now())])?
                    == 1)
            })
            .await
    }

    async fn verify_email(&self, id: Uuid, credits: i64) -> Result<EmailVerification, StoreError> {
        self.writer
            .write(move |conn| verify_email(conn, id, credits))
            .await
    }

    async fn email_verified(&self, id: Uuid) -> Result<Option<bool>, StoreError> {
        let verified: Option<Option<String>> =
            sqlx::query_scalar("SELECT email_verified_at FROM users WHERE id = ?1")
                .bind(id.to_string())
                .fetch_optional(&self.reader)
                .await?;
        Ok(verified.map(|at| at.is_some()))
    }

    async fn set_password_hash(&self, id: Uuid, hash: &str) -> Result<bool, StoreError> {
        let hash = hash.to_owned();
        self.writer
            .write(move |conn| {
                Ok(conn
                    .prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")?
                    .execute(params![id.to_string(), hash])?
                    == 1)
            })
            .await
    }

    async fn find_credentials(
        &self,
        email: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, name, created_at, password_hash FROM users WHERE email = ?1",
        )
        .bind(email.trim().to_lowercase())
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((user(&row)?, row.try_get("password_hash")?)))
    }

    async fn roles(&self, id: Uuid) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = ?1 ORDER BY role")
                .bind(id.to_string())
                .fetch_all(&self.reader)
                .await?,
        )
    }

    async fn permissions(&self, id: Uuid) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT rp.permission FROM user_roles ur
             JOIN role_permissions rp ON rp.role = ur.role WHERE ur.user_id = ?1 ORDER BY 1",
        )
        .bind(id.to_string())
        .fetch_all(&self.reader)
        .await?)
    }

    async fn assign_role(&self, id: Uuid, role: Role) -> Result<(), StoreError> {
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO user_roles (user_id, role) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                )?
                .execute(params![id.to_string(), role.as_str()])?;
                Ok(())
            })
            .await
    }
}

fn service_key(row: &SqliteRow) -> Result<ServiceKey, StoreError> {
    let scopes: String = row.try_get("scopes")?;
    Ok(ServiceKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        scopes: scopes
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

#[async_trait]
impl ServiceKeyStore for SqliteStore {
    async fn insert_service_key(&self, key: &NewServiceKey) -> Result<(), StoreError> {
        let (id, name, hash, scopes) = (
            key.record.id.clone(),
            key.record.name.clone(),
            crate::service_keys::key_hash(&key.key),
            key.record.scopes.join(" "),
        );
        let created_at = timestamp(key.record.created_at);
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO service_keys (id, name, key_hash, scopes, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![id, name, hash, scopes, created_at])?;
                Ok(())
            })
            .await
    }

    async fn find_service_key(&self, key_hash: &str) -> Result<Option<ServiceKey>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, scopes, created_at, revoked_at FROM service_keys
             WHERE key_hash = ?1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(service_key).transpose()
    }

    async fn list_service_keys(&self) -> Result<Vec<ServiceKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, scopes, created_at, revoked_at FROM service_keys ORDER BY created_at DESC, id",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(service_key).collect()
    }

    async fn revoke_service_key(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let now = timestamp(Utc::now());
        self.writer
            .write(move |conn| {
                Ok(conn
                    .prepare_cached("UPDATE service_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")?
                    .execute(params![id, now])?
                    == 1)
            })
            .await
    }
}
