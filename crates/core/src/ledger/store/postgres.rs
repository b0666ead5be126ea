//! The ledger on PostgreSQL.
//!
//! A debit without an idempotency key is a single statement: a data-modifying CTE whose
//! conditional `UPDATE` and transaction `INSERT` commit together, in one round trip.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use super::{LedgerStore, StoreError, parse_kind, replay};
use crate::ledger::{
    AuditReport, Debit, DebitOutcome, Discrepancy, Grant, GrantOutcome, Hold, HoldDiscrepancy,
    HoldStatus, Holdings, IdempotencyClaim, Idempotent, MAX_BALANCE, Refund, RefundOutcome,
    Reserve, ReserveOutcome, Settle, SettleOutcome, Transaction, TransactionPage,
    new_reservation_id, new_transaction_id,
};
use crate::service_keys::{NewServiceKey, ServiceKey, ServiceKeyStore};
use crate::users::{CreatedUser, EmailVerification, NewUser, Role, User, UserStore};

const COLUMNS: &str = "id, user_id, kind, service, amount, balance_before, balance_after, \
                       refund_of, reason, metadata, created_at";

/// The debit, as one statement. `hub bench` hands this same text to pgbench.
pub const DEBIT_SQL: &str = "\
WITH debited AS (
    UPDATE credit_accounts SET balance = balance - $2, updated_at = now()
    WHERE user_id = $1 AND balance - held >= $2
    RETURNING user_id, balance
)
INSERT INTO credit_transactions
    (id, user_id, kind, service, amount, balance_before, balance_after, refundable,
     metadata, idempotency_key, request_id)
SELECT $3, user_id, 'debit', $4, -$2, balance + $2, balance, $2, $5, $6, $7 FROM debited
RETURNING id, user_id, kind, service, amount, balance_before, balance_after, refund_of, reason,
          metadata, created_at";

/// The ledger and users on a PostgreSQL pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Wraps a pool whose database is migrated.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn transaction(row: &PgRow) -> Result<Transaction, StoreError> {
    Ok(Transaction {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        kind: parse_kind(row.try_get("kind")?)?,
        service: row.try_get("service")?,
        amount: row.try_get("amount")?,
        balance_before: row.try_get("balance_before")?,
        balance_after: row.try_get("balance_after")?,
        refund_of: row.try_get("refund_of")?,
        reason: row.try_get("reason")?,
        metadata: row
            .try_get::<Option<Json<Value>>, _>("metadata")?
            .map(|j| j.0),
        created_at: row.try_get("created_at")?,
    })
}

/// One ledger write, run inside the idempotency envelope.
trait Operation: Sync {
    type Outcome: Serialize + DeserializeOwned + Send;
    async fn apply(
        &self,
        conn: &mut PgConnection,
        key: Option<&str>,
    ) -> Result<Self::Outcome, StoreError>;
}

/// Runs an operation once per idempotency key: the key is claimed in the same database
/// transaction as the write, so a concurrent twin waits on the claim and then replays.
async fn run_idempotent<O: Operation>(
    pool: &PgPool,
    operation: &O,
    claim: Option<&IdempotencyClaim>,
) -> Result<Idempotent<O::Outcome>, StoreError> {
    let mut tx = pool.begin().await?;
    if let Some(claim) = claim {
        // ON CONFLICT waits for a concurrent claimant of the same key to commit or roll back.
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, fingerprint) VALUES ($1, $2, $3) \
             ON CONFLICT (scope, key) DO NOTHING",
        )
        .bind(&claim.scope)
        .bind(&claim.key)
        .bind(&claim.fingerprint)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            let row = sqlx::query(
                "SELECT fingerprint, outcome FROM idempotency_keys WHERE scope = $1 AND key = $2",
            )
            .bind(&claim.scope)
            .bind(&claim.key)
            .fetch_one(&mut *tx)
            .await?;
            let outcome: Option<Json<Value>> = row.try_get("outcome")?;
            return replay(claim, row.try_get("fingerprint")?, outcome.map(|j| j.0));
        }
    }
    let outcome = operation
        .apply(&mut tx, claim.map(|c| c.key.as_str()))
        .await?;
    if let Some(claim) = claim {
        sqlx::query("UPDATE idempotency_keys SET outcome = $3 WHERE scope = $1 AND key = $2")
            .bind(&claim.scope)
            .bind(&claim.key)
            .bind(Json(serde_json::to_value(&outcome)?))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Idempotent::Fresh(outcome))
}

impl Operation for Debit {
    type Outcome = DebitOutcome;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        key: Option<&str>,
    ) -> Result<DebitOutcome, StoreError> {
        for attempt in 0..2 {
            let row = sqlx::query(DEBIT_SQL)
                .bind(self.user_id)
                .bind(self.cost)
                .bind(new_transaction_id())
                .bind(self.service.as_str())
                .bind(self.metadata.as_ref().map(Json))
                .bind(key)
                .bind(self.request_id.as_deref())
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(row) = row {
                return Ok(DebitOutcome::Debited {
                    transaction: transaction(&row)?,
                });
            }
            // Short: holds that expired unswept may be what stands in the way. Free them and
            // try once more.
            if attempt == 0 && !expire_user_holds(&mut *conn, self.user_id).await? {
                break;
            }
        }
        // The conditional update matched nothing: say why, from what the account holds now.
        let balance: Option<i64> =
            sqlx::query_scalar("SELECT balance - held FROM credit_accounts WHERE user_id = $1")
                .bind(self.user_id)
                .fetch_optional(&mut *conn)
                .await?;
        Ok(match balance {
            Some(balance) => DebitOutcome::Insufficient { balance },
            None => DebitOutcome::UnknownUser,
        })
    }
}

const HOLD_COLUMNS: &str = "id, user_id, service, amount, status, captured, transaction_id, \
                            created_at, expires_at, settled_at";

fn hold(row: &PgRow) -> Result<Hold, StoreError> {
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
async fn expire_user_holds(conn: &mut PgConnection, user_id: Uuid) -> Result<bool, StoreError> {
    let freed = sqlx::query(
        "WITH expired AS (
            UPDATE credit_holds SET status = 'expired', settled_at = now()
            WHERE user_id = $1 AND status = 'held' AND expires_at <= now()
            RETURNING amount)
         UPDATE credit_accounts SET held = held - (SELECT COALESCE(sum(amount), 0)::bigint FROM expired)
         WHERE user_id = $1 AND EXISTS (SELECT 1 FROM expired)",
    )
    .bind(user_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(freed > 0)
}

/// The reservation, as one statement: the account's `held` grows only if the available balance
/// covers the cost, and the hold row is written with it.
const RESERVE_SQL: &str = "\
WITH reserved AS (
    UPDATE credit_accounts SET held = held + $2, updated_at = now()
    WHERE user_id = $1 AND balance - held >= $2
    RETURNING user_id, balance, held
), placed AS (
    INSERT INTO credit_holds (id, user_id, service, amount, metadata, request_id, expires_at,
                              placed_by)
    SELECT $3, user_id, $4, $2, $5, $6, now() + make_interval(secs => $7), $8 FROM reserved
    RETURNING id, user_id, service, amount, status, captured, transaction_id, created_at,
              expires_at, settled_at
)
SELECT placed.*, reserved.balance - reserved.held AS available FROM placed, reserved";

impl Operation for Reserve {
    type Outcome = ReserveOutcome;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        _key: Option<&str>,
    ) -> Result<ReserveOutcome, StoreError> {
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
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(row) = row {
                return Ok(ReserveOutcome::Held {
                    hold: hold(&row)?,
                    available: row.try_get("available")?,
                });
            }
            if attempt == 0 && !expire_user_holds(&mut *conn, self.user_id).await? {
                break;
            }
        }
        let available: Option<i64> =
            sqlx::query_scalar("SELECT balance - held FROM credit_accounts WHERE user_id = $1")
                .bind(self.user_id)
                .fetch_optional(&mut *conn)
                .await?;
        Ok(match available {
            Some(available) => ReserveOutcome::Insufficient { available },
            None => ReserveOutcome::UnknownUser,
        })
    }
}

/// Settles a hold in one database transaction; the hold's row lock makes it once only.
async fn settle(pool: &PgPool, settle: &Settle) -> Result<SettleOutcome, StoreError> {
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
    let transaction = if captured > 0 {
        let metadata: Option<Json<Value>> = row.try_get("metadata")?;
        let written = sqlx::query(&format!(
            "INSERT INTO credit_transactions
                (id, user_id, kind, service, amount, balance_before, balance_after, refundable,
                 metadata, request_id)
             VALUES ($1, $2, 'debit', $3, -$4, $5 + $4, $5, $4, $6, $7)
             RETURNING {COLUMNS}"
        ))
        .bind(new_transaction_id())
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
    tx.commit().await?;
    Ok(SettleOutcome::Settled {
        hold: hold(&settled)?,
        transaction,
        balance,
        available: balance - held,
    })
}

impl Operation for Refund {
    type Outcome = RefundOutcome;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        key: Option<&str>,
    ) -> Result<RefundOutcome, StoreError> {
        // The debit's row lock serialises refunds of one debit.
        let Some(debit) = sqlx::query(
            "SELECT user_id, kind, service, refundable FROM credit_transactions WHERE id = $1 FOR UPDATE",
        )
        .bind(&self.transaction_id)
        .fetch_optional(&mut *conn)
        .await?
        else {
            return Ok(RefundOutcome::UnknownTransaction);
        };
        let owner: Uuid = debit.try_get("user_id")?;
        let kind = parse_kind(debit.try_get("kind")?)?;
        let refundable: i64 = debit.try_get("refundable")?;
        let service: Option<String> = debit.try_get("service")?;
        let decision = crate::ledger::decide_refund(self, owner, kind, refundable);
        let amount = match decision {
            Ok(amount) => amount,
            Err(outcome) => return Ok(outcome),
        };
        // The account first, conditionally: a refund never takes a balance past its maximum.
        let row = sqlx::query(&format!(
            "WITH credited AS (
                UPDATE credit_accounts SET balance = balance + $2, updated_at = now()
                WHERE user_id = $1 AND balance <= $9 - $2 RETURNING user_id, balance
            )
            INSERT INTO credit_transactions
                (id, user_id, kind, service, amount, balance_before, balance_after, refund_of,
                 reason, idempotency_key, request_id)
            SELECT $3, user_id, 'refund', $4, $2, balance - $2, balance, $5, $6, $7, $8 FROM credited
            RETURNING {COLUMNS}"
        ))
        .bind(owner)
        .bind(amount)
        .bind(new_transaction_id())
        .bind(service)
        .bind(&self.transaction_id)
        .bind(&self.reason)
        .bind(key)
        .bind(self.request_id.as_deref())
        .bind(MAX_BALANCE)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return Ok(RefundOutcome::BalanceLimit);
        };
        sqlx::query("UPDATE credit_transactions SET refundable = refundable - $2 WHERE id = $1")
            .bind(&self.transaction_id)
            .bind(amount)
            .execute(&mut *conn)
            .await?;
        Ok(RefundOutcome::Refunded {
            transaction: transaction(&row)?,
            remaining: refundable - amount,
        })
    }
}

impl Operation for Grant {
    type Outcome = GrantOutcome;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        key: Option<&str>,
    ) -> Result<GrantOutcome, StoreError> {
        let row = sqlx::query(&format!(
            "WITH credited AS (
                UPDATE credit_accounts SET balance = balance + $2, updated_at = now()
                WHERE user_id = $1 AND balance <= $3 - $2 RETURNING user_id, balance
            )
            INSERT INTO credit_transactions
                (id, user_id, kind, amount, balance_before, balance_after, reason,
                 idempotency_key, request_id)
            SELECT $4, user_id, 'grant', $2, balance - $2, balance, $5, $6, $7 FROM credited
            RETURNING {COLUMNS}"
        ))
        .bind(self.user_id)
        .bind(self.amount)
        .bind(MAX_BALANCE)
        .bind(new_transaction_id())
        .bind(&self.reason)
        .bind(key)
        .bind(self.request_id.as_deref())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            return Ok(GrantOutcome::Granted {
                transaction: transaction(&row)?,
            });
        }
        let exists = sqlx::query("SELECT 1 FROM credit_accounts WHERE user_id = $1")
            .bind(self.user_id)
            .fetch_optional(&mut *conn)
            .await?
            .is_some();
        Ok(if exists {
            GrantOutcome::BalanceLimit
        } else {
            GrantOutcome::UnknownUser
        })
    }
}

#[async_trait]
impl LedgerStore for PgStore {
    async fn balance(&self, user_id: Uuid) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT balance FROM credit_accounts WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn debit(
        &self,
        debit: &Debit,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<DebitOutcome>, StoreError> {
        if claim.is_none() {
            // One statement is its own transaction: no BEGIN/COMMIT round trips.
            let mut conn = self.pool.acquire().await?;
            return Ok(Idempotent::Fresh(debit.apply(&mut conn, None).await?));
        }
        run_idempotent(&self.pool, debit, claim).await
    }

    async fn refund(
        &self,
        refund: &Refund,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<RefundOutcome>, StoreError> {
        run_idempotent(&self.pool, refund, claim).await
    }

    async fn grant(
        &self,
        grant: &Grant,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<GrantOutcome>, StoreError> {
        run_idempotent(&self.pool, grant, claim).await
    }

    async fn transactions(
        &self,
        user_id: Uuid,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Option<TransactionPage>, StoreError> {
        if self.balance(user_id).await?.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM credit_transactions
             WHERE user_id = $1
               AND ($2::text IS NULL
                    OR seq < (SELECT seq FROM credit_transactions WHERE id = $2 AND user_id = $1))
             ORDER BY seq DESC LIMIT $3"
        ))
        .bind(user_id)
        .bind(cursor)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
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
                 WHERE h.user_id = a.user_id AND h.status = 'held' AND h.expires_at > now()), 0)::bigint AS held
             FROM credit_accounts a WHERE a.user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
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
        reserve: &Reserve,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<ReserveOutcome>, StoreError> {
        run_idempotent(&self.pool, reserve, claim).await
    }

    async fn settle(&self, operation: &Settle) -> Result<SettleOutcome, StoreError> {
        settle(&self.pool, operation).await
    }

    async fn expire_holds(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "WITH expired AS (
                UPDATE credit_holds SET status = 'expired', settled_at = now()
                WHERE status = 'held' AND expires_at <= now()
                RETURNING user_id, amount),
             freed AS (SELECT user_id, sum(amount)::bigint AS amount FROM expired GROUP BY user_id)
             UPDATE credit_accounts a SET held = a.held - freed.amount
             FROM freed WHERE a.user_id = freed.user_id",
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn audit(&self) -> Result<AuditReport, StoreError> {
        let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM credit_accounts")
            .fetch_one(&self.pool)
            .await?;
        let hold_rows = sqlx::query(
            "SELECT a.user_id, a.held, COALESCE(SUM(h.amount), 0)::bigint AS total
             FROM credit_accounts a LEFT JOIN credit_holds h
               ON h.user_id = a.user_id AND h.status = 'held'
             GROUP BY a.user_id, a.held
             HAVING a.held <> COALESCE(SUM(h.amount), 0)",
        )
        .fetch_all(&self.pool)
        .await?;
        let hold_discrepancies = hold_rows
            .iter()
            .map(|row| {
                Ok(HoldDiscrepancy {
                    user_id: row.try_get("user_id")?,
                    held: row.try_get("held")?,
                    sum_of_live_holds: row.try_get("total")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let rows = sqlx::query(
            "SELECT a.user_id, a.balance, COALESCE(SUM(t.amount), 0)::bigint AS total
             FROM credit_accounts a LEFT JOIN credit_transactions t ON t.user_id = a.user_id
             GROUP BY a.user_id, a.balance
             HAVING a.balance <> COALESCE(SUM(t.amount), 0)",
        )
        .fetch_all(&self.pool)
        .await?;
        let discrepancies = rows
            .iter()
            .map(|row| {
                Ok(Discrepancy {
                    user_id: row.try_get("user_id")?,
                    balance: row.try_get("balance")?,
                    sum_of_transactions: row.try_get("total")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(AuditReport {
            accounts,
            discrepancies,
            hold_discrepancies,
        })
    }

    async fn purge_idempotency_keys(&self, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                .bind(older_than)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

fn user(row: &PgRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, new: &NewUser) -> Result<Option<CreatedUser>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query(
            "INSERT INTO users (id, email, name, google_subject, password_hash, email_verified_at)
             VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN now() END)
             ON CONFLICT DO NOTHING RETURNING id, email, name, created_at",
        )
        .bind(Uuid::now_v7())
        .bind(&new.email)
        .bind(&new.name)
        .bind(new.google_subject.as_deref())
        .bind(new.password_hash.as_deref())
        .bind(new.email_verified)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let created = user(&row)?;
        sqlx::query("INSERT INTO credit_accounts (user_id) VALUES ($1)")
            .bind(created.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)")
            .bind(created.id)
            .bind(new.role.as_str())
            .execute(&mut *tx)
            .await?;
        let grant = if new.initial_credits > 0 {
            let grant = Grant {
                user_id: created.id,
                amount: new.initial_credits,
                reason: "initial credits".to_owned(),
                request_id: None,
            };
            match grant.apply(&mut tx, None).await? {
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
        tx.commit().await?;
        let balance = new.initial_credits;
        Ok(Some(CreatedUser {
            user: created,
            balance,
            grant,
        }))
    }

    async fn find_user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT id, email, name, created_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user).transpose()?)
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT id, email, name, created_at FROM users WHERE email = $1")
            .bind(email.trim().to_lowercase())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user).transpose()?)
    }

    async fn find_user_by_google_subject(&self, subject: &str) -> Result<Option<User>, StoreError> {
        let row =
            sqlx::query("SELECT id, email, name, created_at FROM users WHERE google_subject = $1")
                .bind(subject)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.as_ref().map(user).transpose()?)
    }

    async fn link_google_subject(&self, id: Uuid, subject: &str) -> Result<bool, StoreError> {
        let linked = sqlx::query(
            "UPDATE users SET google_subject = $2, password_hash = NULL,
                 email_verified_at = COALESCE(email_verified_at, now())
             WHERE id = $1 AND google_subject IS NULL
               AND NOT EXISTS (SELECT 1 FROM users WHERE google_subject = $2)",
        )
        .bind(id)
        .bind(subject)
        .execute(&self.pool)
        .await;
        match linked {
            Ok(done) => Ok(done.rows_affected() == 1),
            // A concurrent link of the same subject won the race.
            Err(sqlx::Error::Database(e)) if e.constraint() == Some("users_google_subject_key") => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn verify_email(&self, id: Uuid, credits: i64) -> Result<EmailVerification, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The row lock of the conditional update orders concurrent calls: the second waits, then
        // finds the address verified.
        let verified = sqlx::query(
            "UPDATE users SET email_verified_at = now() WHERE id = $1 AND email_verified_at IS NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if verified == 0 {
            let exists = sqlx::query("SELECT 1 FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            return Ok(if exists {
                EmailVerification::AlreadyVerified
            } else {
                EmailVerification::UnknownUser
            });
        }
        let grant = if credits > 0 {
            let welcome = Grant {
                user_id: id,
                amount: credits,
                reason: "new-user credits: email verified".to_owned(),
                request_id: None,
            };
            match welcome.apply(&mut tx, None).await? {
                GrantOutcome::Granted { transaction } => Some(transaction),
                // At the balance ceiling: the address is verified all the same.
                GrantOutcome::BalanceLimit => None,
                GrantOutcome::UnknownUser => {
                    return Err(StoreError::Corrupt(format!(
                        "user {id} has no credit account"
                    )));
                }
            }
        } else {
            None
        };
        tx.commit().await?;
        Ok(EmailVerification::Verified { grant })
    }

    async fn email_verified(&self, id: Uuid) -> Result<Option<bool>, StoreError> {
        let verified: Option<Option<DateTime<Utc>>> =
            sqlx::query_scalar("SELECT email_verified_at FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(verified.map(|at| at.is_some()))
    }

    async fn set_password_hash(&self, id: Uuid, hash: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                .bind(id)
                .bind(hash)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1,
        )
    }

    async fn find_credentials(
        &self,
        email: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, name, created_at, password_hash FROM users WHERE email = $1",
        )
        .bind(email.trim().to_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((user(&row)?, row.try_get("password_hash")?)))
    }

    async fn roles(&self, id: Uuid) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
                .bind(id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn permissions(&self, id: Uuid) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT rp.permission FROM user_roles ur
             JOIN role_permissions rp ON rp.role = ur.role WHERE ur.user_id = $1 ORDER BY 1",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn assign_role(&self, id: Uuid, role: Role) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(role.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn service_key(row: &PgRow) -> Result<ServiceKey, sqlx::Error> {
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
impl ServiceKeyStore for PgStore {
    async fn insert_service_key(&self, key: &NewServiceKey) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO service_keys (id, name, key_hash, scopes, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&key.record.id)
            .bind(&key.record.name)
            .bind(crate::service_keys::key_hash(&key.key))
            .bind(key.record.scopes.join(" "))
            .bind(key.record.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn find_service_key(&self, key_hash: &str) -> Result<Option<ServiceKey>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, scopes, created_at, revoked_at FROM service_keys
             WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(service_key).transpose()?)
    }

    async fn list_service_keys(&self) -> Result<Vec<ServiceKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, scopes, created_at, revoked_at FROM service_keys ORDER BY created_at DESC, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(service_key).collect::<Result<_, _>>()?)
    }

    async fn revoke_service_key(&self, id: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE service_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }
}
