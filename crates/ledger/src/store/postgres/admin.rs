//! Operators' actions and the audit log on PostgreSQL: each action and its entry in one
//! transaction.

use super::*;
use crate::admin::{
    AccountChange, AccountState, Adjust, AdjustOutcome, AdminStore, AuditEntry, AuditFilter,
    AuditRecord, Changes, DELETED_NAME, MAX_AUDIT_PAGE, deleted_email,
};

/// Writes an audit entry on `conn` (inside the caller's transaction).
pub(super) async fn record_entry(
    conn: &mut PgConnection,
    entry: &AuditEntry,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO admin_audit (id, actor, action, target, before, after, reason, request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(AuditEntry::new_id())
    .bind(&entry.actor)
    .bind(entry.action)
    .bind(&entry.target)
    .bind(entry.before.as_ref().map(Json))
    .bind(entry.after.as_ref().map(Json))
    .bind(entry.reason.as_deref())
    .bind(entry.request_id.as_deref())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A ledger operation that records itself in the audit log when it changes an account.
struct Audited<'a, O> {
    operation: &'a O,
    audit: &'a AuditEntry,
}

impl<O> Operation for Audited<'_, O>
where
    O: Operation,
    O::Outcome: Changes,
{
    type Outcome = O::Outcome;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        key: Option<&str>,
    ) -> Result<Self::Outcome, StoreError> {
        self.apply_at(conn, key, Utc::now()).await
    }

    async fn apply_at(
        &self,
        conn: &mut PgConnection,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Self::Outcome, StoreError> {
        let outcome = self.operation.apply_at(&mut *conn, key, now).await?;
        if outcome.changed() {
            let mut entry = self.audit.clone();
            entry.after = Some(serde_json::to_value(&outcome)?);
            record_entry(&mut *conn, &entry).await?;
        }
        Ok(outcome)
    }
}

impl Operation for Adjust {
    type Outcome = AdjustOutcome;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        key: Option<&str>,
    ) -> Result<AdjustOutcome, StoreError> {
        self.apply_at(conn, key, Utc::now()).await
    }

    async fn apply_at(
        &self,
        conn: &mut PgConnection,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<AdjustOutcome, StoreError> {
        // Down on an account with grant rows: taken from them in spending order, as a debit is.
        let row = sqlx::query(&format!(
            "WITH adjusted AS (
                UPDATE credit_accounts SET balance = balance + $2, updated_at = now()
                WHERE user_id = $1 AND balance - held + $2 >= 0 AND balance + $2 <= $3
                  AND ($2 >= 0 OR granted = 0)
                RETURNING user_id, balance
            )
            INSERT INTO credit_transactions
                (id, user_id, kind, amount, balance_before, balance_after, reason,
                 idempotency_key, request_id)
            SELECT $4, user_id, 'adjustment', $2, balance - $2, balance, $5, $6, $7 FROM adjusted
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
            return Ok(AdjustOutcome::Adjusted {
                transaction: transaction(&row)?,
            });
        }
        if self.amount < 0 {
            let take = Take {
                user_id: self.user_id,
                amount: -self.amount,
                kind: TransactionKind::Adjustment,
                service: None,
                metadata: None,
                reason: Some(&self.reason),
                key,
                request_id: self.request_id.as_deref(),
                refuse_frozen: false,
            };
            return Ok(match take.run(conn, now).await? {
                Taken::Done(transaction) => AdjustOutcome::Adjusted { transaction },
                Taken::Short { available } => AdjustOutcome::Insufficient { available },
                Taken::Frozen | Taken::UnknownUser => AdjustOutcome::UnknownUser,
            });
        }
        Ok(match available(&mut *conn, self.user_id).await? {
            None => AdjustOutcome::UnknownUser,
            Some((available, _)) if self.amount < 0 => AdjustOutcome::Insufficient { available },
            Some(_) => AdjustOutcome::BalanceLimit,
        })
    }
}

/// The account's flags, locked for the rest of the transaction.
async fn lock_state(conn: &mut PgConnection, id: Uuid) -> Result<Option<(bool, bool)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT disabled_at IS NOT NULL, deleted_at IS NOT NULL FROM users WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

#[async_trait]
impl AdminStore for PgStore {
    async fn account_state(&self, id: Uuid) -> Result<Option<AccountState>, StoreError> {
        let row = sqlx::query("SELECT disabled_at, deleted_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(AccountState {
                disabled_at: row.try_get("disabled_at")?,
                deleted_at: row.try_get("deleted_at")?,
            })
        })
        .transpose()
    }

    async fn set_disabled(
        &self,
        id: Uuid,
        disabled: bool,
        audit: &AuditEntry,
    ) -> Result<AccountChange, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some((was_disabled, deleted)) = lock_state(&mut tx, id).await? else {
            return Ok(AccountChange::UnknownUser);
        };
        if deleted && !disabled {
            return Ok(AccountChange::Deleted);
        }
        if was_disabled == disabled {
            return Ok(AccountChange::Unchanged);
        }
        sqlx::query("UPDATE users SET disabled_at = CASE WHEN $2 THEN now() END WHERE id = $1")
            .bind(id)
            .bind(disabled)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE credit_accounts SET frozen = $2, updated_at = now() WHERE user_id = $1",
        )
        .bind(id)
        .bind(disabled)
        .execute(&mut *tx)
        .await?;
        let mut entry = audit.clone();
        entry.before = Some(serde_json::json!({ "disabled": was_disabled }));
        entry.after = Some(serde_json::json!({ "disabled": disabled }));
        record_entry(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(AccountChange::Changed)
    }

    async fn delete_user(&self, id: Uuid, audit: &AuditEntry) -> Result<AccountChange, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some((was_disabled, deleted)) = lock_state(&mut tx, id).await? else {
            return Ok(AccountChange::UnknownUser);
        };
        if deleted {
            return Ok(AccountChange::Unchanged);
        }
        sqlx::query(
            "UPDATE users SET email = $2, name = $3, google_subject = NULL, password_hash = NULL,
                 email_verified_at = NULL, disabled_at = coalesce(disabled_at, now()),
                 deleted_at = now()
             WHERE id = $1",
        )
        .bind(id)
        .bind(deleted_email(id))
        .bind(DELETED_NAME)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE credit_accounts SET frozen = true, updated_at = now() WHERE user_id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE oauth_grants SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let mut entry = audit.clone();
        entry.before = Some(serde_json::json!({ "deleted": false, "disabled": was_disabled }));
        entry.after = Some(serde_json::json!({ "deleted": true, "disabled": true }));
        record_entry(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(AccountChange::Changed)
    }

    async fn grant_audited(
        &self,
        grant: &Grant,
        claim: Option<&IdempotencyClaim>,
        audit: &AuditEntry,
    ) -> Result<Idempotent<GrantOutcome>, StoreError> {
        let operation = Audited {
            operation: grant,
            audit,
        };
        run_idempotent(&self.pool, &operation, claim).await
    }

    async fn refund_audited(
        &self,
        refund: &Refund,
        claim: Option<&IdempotencyClaim>,
        audit: &AuditEntry,
    ) -> Result<Idempotent<RefundOutcome>, StoreError> {
        let operation = Audited {
            operation: refund,
            audit,
        };
        run_idempotent_at(&self.pool, &operation, claim, self.clock.now()).await
    }

    async fn adjust_audited(
        &self,
        adjust: &Adjust,
        claim: Option<&IdempotencyClaim>,
        audit: &AuditEntry,
    ) -> Result<Idempotent<AdjustOutcome>, StoreError> {
        let operation = Audited {
            operation: adjust,
            audit,
        };
        run_idempotent_at(&self.pool, &operation, claim, self.clock.now()).await
    }

    async fn insert_service_key_audited(
        &self,
        key: &NewServiceKey,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO service_keys (id, name, key_hash, scopes, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key.record.id)
        .bind(&key.record.name)
        .bind(crate::service_keys::key_hash(&key.key))
        .bind(key.record.scopes.join(" "))
        .bind(key.record.created_at)
        .execute(&mut *tx)
        .await?;
        record_entry(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_service_key_audited(
        &self,
        id: &str,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let revoked = sqlx::query(
            "UPDATE service_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if revoked {
            record_entry(&mut tx, audit).await?;
            tx.commit().await?;
        }
        Ok(revoked)
    }

    async fn record_audit(&self, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        record_entry(&mut conn, audit).await
    }

    async fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, id, actor, action, target, before, after, reason, request_id, created_at
             FROM admin_audit
             WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR action = $2)
               AND ($3::text IS NULL OR target = $3) AND ($4::bigint IS NULL OR seq < $4)
             ORDER BY seq DESC LIMIT $5",
        )
        .bind(filter.actor.as_deref())
        .bind(filter.action.as_deref())
        .bind(filter.target.as_deref())
        .bind(filter.cursor)
        .bind(i64::from(filter.limit.min(MAX_AUDIT_PAGE)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRecord {
                    seq: row.try_get("seq")?,
                    id: row.try_get("id")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    before: row
                        .try_get::<Option<Json<Value>>, _>("before")?
                        .map(|j| j.0),
                    after: row.try_get::<Option<Json<Value>>, _>("after")?.map(|j| j.0),
                    reason: row.try_get("reason")?,
                    request_id: row.try_get("request_id")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }
}
