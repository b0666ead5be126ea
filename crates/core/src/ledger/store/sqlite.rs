//! The ledger on the embedded SQLite file.
//!
//! Every write goes through the one writer connection, inside a transaction; the conditional
//! `UPDATE … RETURNING` decides each debit exactly as on PostgreSQL. Reads use the read-only
//! pool, which WAL mode lets run beside the writer.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};
use uuid::Uuid;

use super::{LedgerStore, StoreError, parse_kind, replay};
use crate::ledger::{
    AuditReport, Debit, DebitOutcome, Discrepancy, Grant, GrantOutcome, IdempotencyClaim,
    Idempotent, MAX_BALANCE, Refund, RefundOutcome, Transaction, TransactionPage,
    new_transaction_id,
};
use crate::users::{CreatedUser, NewUser, Role, User, UserStore};

const COLUMNS: &str = "id, user_id, kind, service, amount, balance_before, balance_after, \
                       refund_of, reason, metadata, created_at";

/// The ledger and users in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Wraps the writer and reader pools of a migrated file.
    pub fn new(writer: SqlitePool, reader: SqlitePool) -> Self {
        Self { writer, reader }
    }
}

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

trait Operation: Sync {
    type Outcome: Serialize + DeserializeOwned + Send;
    async fn apply(
        &self,
        conn: &mut SqliteConnection,
        key: Option<&str>,
    ) -> Result<Self::Outcome, StoreError>;
}

/// Runs an operation once per idempotency key, in one transaction on the single writer, so
/// twins are serialised and the second finds the first's outcome.
async fn run_idempotent<O: Operation>(
    writer: &SqlitePool,
    operation: &O,
    claim: Option<&IdempotencyClaim>,
) -> Result<Idempotent<O::Outcome>, StoreError> {
    let mut tx = writer.begin().await?;
    if let Some(claim) = claim {
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, created_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (scope, key) DO NOTHING",
        )
        .bind(&claim.scope)
        .bind(&claim.key)
        .bind(&claim.fingerprint)
        .bind(Utc::now())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            let row = sqlx::query(
                "SELECT fingerprint, outcome FROM idempotency_keys WHERE scope = ?1 AND key = ?2",
            )
            .bind(&claim.scope)
            .bind(&claim.key)
            .fetch_one(&mut *tx)
            .await?;
            let outcome: Option<String> = row.try_get("outcome")?;
            let outcome = outcome.as_deref().map(serde_json::from_str).transpose()?;
            return replay(claim, row.try_get("fingerprint")?, outcome);
        }
    }
    let outcome = operation
        .apply(&mut tx, claim.map(|c| c.key.as_str()))
        .await?;
    if let Some(claim) = claim {
        sqlx::query("UPDATE idempotency_keys SET outcome = ?3 WHERE scope = ?1 AND key = ?2")
            .bind(&claim.scope)
            .bind(&claim.key)
            .bind(serde_json::to_string(&outcome)?)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Idempotent::Fresh(outcome))
}

/// Writes a transaction row and returns it as stored.
#[allow(clippy::too_many_arguments)]
async fn insert_transaction(
    conn: &mut SqliteConnection,
    user_id: Uuid,
    kind: &str,
    service: Option<&str>,
    amount: i64,
    balance_after: i64,
    refund_of: Option<&str>,
    reason: Option<&str>,
    metadata: Option<String>,
    key: Option<&str>,
    request_id: Option<&str>,
) -> Result<Transaction, StoreError> {
    let refundable = if kind == "debit" { -amount } else { 0 };
    let row = sqlx::query(&format!(
        "INSERT INTO credit_transactions
            (id, user_id, kind, service, amount, balance_before, balance_after, refundable,
             refund_of, reason, metadata, idempotency_key, request_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         RETURNING {COLUMNS}"
    ))
    .bind(new_transaction_id())
    .bind(user_id.to_string())
    .bind(kind)
    .bind(service)
    .bind(amount)
    .bind(balance_after - amount)
    .bind(balance_after)
    .bind(refundable)
    .bind(refund_of)
    .bind(reason)
    .bind(metadata)
    .bind(key)
    .bind(request_id)
    .bind(Utc::now())
    .fetch_one(&mut *conn)
    .await?;
    transaction(&row)
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

impl Operation for Debit {
    type Outcome = DebitOutcome;

    async fn apply(
        &self,
        conn: &mut SqliteConnection,
        key: Option<&str>,
    ) -> Result<DebitOutcome, StoreError> {
        let balance: Option<i64> = sqlx::query_scalar(
            "UPDATE credit_accounts SET balance = balance - ?2, updated_at = ?3
             WHERE user_id = ?1 AND balance >= ?2 RETURNING balance",
        )
        .bind(self.user_id.to_string())
        .bind(self.cost)
        .bind(Utc::now())
        .fetch_optional(&mut *conn)
        .await?;
        let Some(balance) = balance else {
            return Ok(match account_balance(conn, self.user_id).await? {
                Some(balance) => DebitOutcome::Insufficient { balance },
                None => DebitOutcome::UnknownUser,
            });
        };
        let metadata = self.metadata.as_ref().map(|m| m.to_string());
        let transaction = insert_transaction(
            conn,
            self.user_id,
            "debit",
            Some(self.service.as_str()),
            -self.cost,
            balance,
            None,
            None,
            metadata,
            key,
            self.request_id.as_deref(),
        )
        .await?;
        Ok(DebitOutcome::Debited { transaction })
    }
}

impl Operation for Refund {
    type Outcome = RefundOutcome;

    async fn apply(
        &self,
        conn: &mut SqliteConnection,
        key: Option<&str>,
    ) -> Result<RefundOutcome, StoreError> {
        let Some(debit) = sqlx::query(
            "SELECT user_id, kind, service, refundable FROM credit_transactions WHERE id = ?1",
        )
        .bind(&self.transaction_id)
        .fetch_optional(&mut *conn)
        .await?
        else {
            return Ok(RefundOutcome::UnknownTransaction);
        };
        let owner = uuid(&debit, "user_id")?;
        let kind = parse_kind(debit.try_get("kind")?)?;
        let refundable: i64 = debit.try_get("refundable")?;
        let service: Option<String> = debit.try_get("service")?;
        let amount = match crate::ledger::decide_refund(self, owner, kind, refundable) {
            Ok(amount) => amount,
            Err(outcome) => return Ok(outcome),
        };
        // Conditional all the same, so that a second writer could never take it below zero.
        let updated = sqlx::query(
            "UPDATE credit_transactions SET refundable = refundable - ?2 WHERE id = ?1 AND refundable >= ?2",
        )
        .bind(&self.transaction_id)
        .bind(amount)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if updated != 1 {
            return Err(StoreError::Corrupt(
                "refundable changed under the writer".into(),
            ));
        }
        let balance: i64 = sqlx::query_scalar(
            "UPDATE credit_accounts SET balance = balance + ?2, updated_at = ?3 WHERE user_id = ?1 RETURNING balance",
        )
        .bind(owner.to_string())
        .bind(amount)
        .bind(Utc::now())
        .fetch_one(&mut *conn)
        .await?;
        let transaction = insert_transaction(
            conn,
            owner,
            "refund",
            service.as_deref(),
            amount,
            balance,
            Some(&self.transaction_id),
            Some(&self.reason),
            None,
            key,
            self.request_id.as_deref(),
        )
        .await?;
        Ok(RefundOutcome::Refunded {
            transaction,
            remaining: refundable - amount,
        })
    }
}

impl Operation for Grant {
    type Outcome = GrantOutcome;

    async fn apply(
        &self,
        conn: &mut SqliteConnection,
        key: Option<&str>,
    ) -> Result<GrantOutcome, StoreError> {
        let balance: Option<i64> = sqlx::query_scalar(
            "UPDATE credit_accounts SET balance = balance + ?2, updated_at = ?4
             WHERE user_id = ?1 AND balance <= ?3 - ?2 RETURNING balance",
        )
        .bind(self.user_id.to_string())
        .bind(self.amount)
        .bind(MAX_BALANCE)
        .bind(Utc::now())
        .fetch_optional(&mut *conn)
        .await?;
        let Some(balance) = balance else {
            return Ok(match account_balance(conn, self.user_id).await? {
                Some(_) => GrantOutcome::BalanceLimit,
                None => GrantOutcome::UnknownUser,
            });
        };
        let transaction = insert_transaction(
            conn,
            self.user_id,
            "grant",
            None,
            self.amount,
            balance,
            None,
            Some(&self.reason),
            None,
            key,
            self.request_id.as_deref(),
        )
        .await?;
        Ok(GrantOutcome::Granted { transaction })
    }
}

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn balance(&self, user_id: Uuid) -> Result<Option<i64>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        account_balance(&mut conn, user_id).await
    }

    async fn debit(
        &self,
        debit: &Debit,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<DebitOutcome>, StoreError> {
        run_idempotent(&self.writer, debit, claim).await
    }

    async fn refund(
        &self,
        refund: &Refund,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<RefundOutcome>, StoreError> {
        run_idempotent(&self.writer, refund, claim).await
    }

    async fn grant(
        &self,
        grant: &Grant,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<GrantOutcome>, StoreError> {
        run_idempotent(&self.writer, grant, claim).await
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

    async fn audit(&self) -> Result<AuditReport, StoreError> {
        let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM credit_accounts")
            .fetch_one(&self.reader)
            .await?;
        let rows = sqlx::query(
            "SELECT a.user_id, a.balance, COALESCE(SUM(t.amount), 0) AS total
             FROM credit_accounts a LEFT JOIN credit_transactions t ON t.user_id = a.user_id
             GROUP BY a.user_id, a.balance
             HAVING a.balance <> COALESCE(SUM(t.amount), 0)",
        )
        .fetch_all(&self.reader)
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
        })
    }

    async fn purge_idempotency_keys(&self, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?1")
                .bind(older_than)
                .execute(&self.writer)
                .await?
                .rows_affected(),
        )
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }
}

fn user(row: &SqliteRow) -> Result<User, StoreError> {
    Ok(User {
        id: uuid(row, "id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, new: &NewUser) -> Result<Option<CreatedUser>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let now = Utc::now();
        let Some(row) = sqlx::query(
            "INSERT INTO users (id, email, name, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (email) DO NOTHING RETURNING id, email, name, created_at",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(&new.email)
        .bind(&new.name)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let created = user(&row)?;
        sqlx::query("INSERT INTO credit_accounts (user_id, updated_at) VALUES (?1, ?2)")
            .bind(created.id.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO user_roles (user_id, role) VALUES (?1, ?2)")
            .bind(created.id.to_string())
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
        Ok(Some(CreatedUser {
            user: created,
            balance: new.initial_credits,
            grant,
        }))
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
        sqlx::query(
            "INSERT INTO user_roles (user_id, role) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )
        .bind(id.to_string())
        .bind(role.as_str())
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}
