//! Operators' actions and the audit log on SQLite: each action and its entry in one savepoint of
//! the single writer.

use super::*;
use crate::admin::{
    AccountChange, AccountState, Adjust, AdjustOutcome, AdminStore, AuditEntry, AuditFilter,
    AuditRecord, Changes, DELETED_NAME, MAX_AUDIT_PAGE, deleted_email,
};

/// Writes an audit entry under the writer (inside the operation's savepoint).
pub(super) fn record_entry(conn: &Connection, entry: &AuditEntry) -> Result<(), StoreError> {
    let json = |value: &Option<Value>| value.as_ref().map(Value::to_string);
    conn.prepare_cached(
        "INSERT INTO admin_audit
             (id, actor, action, target, before, after, reason, request_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        AuditEntry::new_id(),
        entry.actor,
        entry.action,
        entry.target,
        json(&entry.before),
        json(&entry.after),
        entry.reason,
        entry.request_id,
        timestamp(now()),
    ])?;
    Ok(())
}

/// Runs a ledger operation and records it when it changed an account.
fn audited<T: Changes + Serialize>(
    conn: &Connection,
    audit: &AuditEntry,
    outcome: T,
) -> Result<T, StoreError> {
    if outcome.changed() {
        let mut entry = audit.clone();
        entry.after = Some(serde_json::to_value(&outcome)?);
        record_entry(conn, &entry)?;
    }
    Ok(outcome)
}

fn apply_adjust(
    conn: &Connection,
    adjust: &Adjust,
    key: Option<&str>,
    now: DateTime<Utc>,
) -> Result<AdjustOutcome, StoreError> {
    let balance: Option<i64> = conn
        .prepare_cached(
            "UPDATE credit_accounts SET balance = balance + ?2, updated_at = ?4
             WHERE user_id = ?1 AND balance - held + ?2 >= 0 AND balance + ?2 <= ?3
               AND (?2 >= 0 OR granted = 0)
             RETURNING balance",
        )?
        .query_row(
            params![
                adjust.user_id.to_string(),
                adjust.amount,
                MAX_BALANCE,
                timestamp(Utc::now())
            ],
            |row| row.get(0),
        )
        .optional()?;
    let entry = Entry {
        user_id: adjust.user_id,
        kind: TransactionKind::Adjustment,
        service: None,
        amount: adjust.amount,
        refund_of: None,
        reason: Some(&adjust.reason),
        metadata: None,
        key,
        request_id: adjust.request_id.as_deref(),
    };
    // Down on an account with grant rows: taken from them in spending order, as a debit is.
    if balance.is_none() && adjust.amount < 0 && has_grants(conn, adjust.user_id)? {
        let take = Take {
            entry,
            refuse_frozen: false,
        };
        return Ok(match take.run(conn, now)? {
            Taken::Done(transaction) => AdjustOutcome::Adjusted { transaction },
            Taken::Short { available } => AdjustOutcome::Insufficient { available },
            Taken::Frozen | Taken::UnknownUser => AdjustOutcome::UnknownUser,
        });
    }
    let Some(balance) = balance else {
        return Ok(match available_balance(conn, adjust.user_id)? {
            None => AdjustOutcome::UnknownUser,
            Some((available, _)) if adjust.amount < 0 => AdjustOutcome::Insufficient { available },
            Some(_) => AdjustOutcome::BalanceLimit,
        });
    };
    Ok(AdjustOutcome::Adjusted {
        transaction: super::debits::record(conn, entry, balance)?,
    })
}

/// The account's flags: disabled, deleted.
fn state(conn: &Connection, id: Uuid) -> Result<Option<(bool, bool)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT disabled_at IS NOT NULL, deleted_at IS NOT NULL FROM users WHERE id = ?1",
        )?
        .query_row(params![id.to_string()], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?)
}

fn set_disabled(
    conn: &Connection,
    id: Uuid,
    disabled: bool,
    audit: &AuditEntry,
) -> Result<AccountChange, StoreError> {
    let Some((was_disabled, deleted)) = state(conn, id)? else {
        return Ok(AccountChange::UnknownUser);
    };
    if deleted && !disabled {
        return Ok(AccountChange::Deleted);
    }
    if was_disabled == disabled {
        return Ok(AccountChange::Unchanged);
    }
    let at = timestamp(now());
    conn.prepare_cached("UPDATE users SET disabled_at = ?2 WHERE id = ?1")?
        .execute(params![id.to_string(), disabled.then_some(&at)])?;
    conn.prepare_cached(
        "UPDATE credit_accounts SET frozen = ?2, updated_at = ?3 WHERE user_id = ?1",
    )?
    .execute(params![id.to_string(), disabled, at])?;
    let mut entry = audit.clone();
    entry.before = Some(serde_json::json!({ "disabled": was_disabled }));
    entry.after = Some(serde_json::json!({ "disabled": disabled }));
    record_entry(conn, &entry)?;
    Ok(AccountChange::Changed)
}

fn delete_user(
    conn: &Connection,
    id: Uuid,
    audit: &AuditEntry,
) -> Result<AccountChange, StoreError> {
    let Some((was_disabled, deleted)) = state(conn, id)? else {
        return Ok(AccountChange::UnknownUser);
    };
    if deleted {
        return Ok(AccountChange::Unchanged);
    }
    let (user, at) = (id.to_string(), timestamp(now()));
    conn.prepare_cached(
        "UPDATE users SET email = ?2, name = ?3, google_subject = NULL, password_hash = NULL,
             email_verified_at = NULL, disabled_at = coalesce(disabled_at, ?4), deleted_at = ?4
         WHERE id = ?1",
    )?
    .execute(params![user, deleted_email(id), DELETED_NAME, at])?;
    conn.prepare_cached(
        "UPDATE credit_accounts SET frozen = 1, updated_at = ?2 WHERE user_id = ?1",
    )?
    .execute(params![user, at])?;
    conn.prepare_cached("DELETE FROM user_roles WHERE user_id = ?1")?
        .execute(params![user])?;
    conn.prepare_cached(
        "UPDATE oauth_grants SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
    )?
    .execute(params![user, at])?;
    let mut entry = audit.clone();
    entry.before = Some(serde_json::json!({ "deleted": false, "disabled": was_disabled }));
    entry.after = Some(serde_json::json!({ "deleted": true, "disabled": true }));
    record_entry(conn, &entry)?;
    Ok(AccountChange::Changed)
}

fn audit_record(row: &SqliteRow) -> Result<AuditRecord, StoreError> {
    let json = |column: &str| -> Result<Option<Value>, StoreError> {
        let text: Option<String> = row.try_get(column)?;
        Ok(text.as_deref().map(serde_json::from_str).transpose()?)
    };
    Ok(AuditRecord {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        before: json("before")?,
        after: json("after")?,
        reason: row.try_get("reason")?,
        request_id: row.try_get("request_id")?,
        created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
    })
}

#[async_trait]
impl AdminStore for SqliteStore {
    async fn account_state(&self, id: Uuid) -> Result<Option<AccountState>, StoreError> {
        let row = sqlx::query("SELECT disabled_at, deleted_at FROM users WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        let time = |text: Option<String>| text.as_deref().map(parse_time).transpose();
        row.map(|row| {
            Ok(AccountState {
                disabled_at: time(row.try_get("disabled_at")?)?,
                deleted_at: time(row.try_get("deleted_at")?)?,
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
        let audit = audit.clone();
        self.writer
            .write(move |conn| set_disabled(conn, id, disabled, &audit))
            .await
    }

    async fn delete_user(&self, id: Uuid, audit: &AuditEntry) -> Result<AccountChange, StoreError> {
        let audit = audit.clone();
        self.writer
            .write(move |conn| delete_user(conn, id, &audit))
            .await
    }

    async fn grant_audited(
        &self,
        grant: &Grant,
        claim: Option<&IdempotencyClaim>,
        audit: &AuditEntry,
    ) -> Result<Idempotent<GrantOutcome>, StoreError> {
        let (operation, claim, audit) = (grant.clone(), claim.cloned(), audit.clone());
        self.writer
            .write(move |conn| {
                run_idempotent(conn, claim.as_ref(), |conn, key| {
                    audited(conn, &audit, super::debits::grant(conn, &operation, key)?)
                })
            })
            .await
    }

    async fn refund_audited(
        &self,
        refund: &Refund,
        claim: Option<&IdempotencyClaim>,
        audit: &AuditEntry,
    ) -> Result<Idempotent<RefundOutcome>, StoreError> {
        let (operation, claim, audit) = (refund.clone(), claim.cloned(), audit.clone());
        let clock = self.clock.clone();
        self.writer
            .write(move |conn| {
                run_idempotent(conn, claim.as_ref(), |conn, key| {
                    let outcome = super::debits::refund(conn, &operation, key, clock.now())?;
                    audited(conn, &audit, outcome)
                })
            })
            .await
    }

    async fn adjust_audited(
        &self,
        adjust: &Adjust,
        claim: Option<&IdempotencyClaim>,
        audit: &AuditEntry,
    ) -> Result<Idempotent<AdjustOutcome>, StoreError> {
        let (operation, claim, audit) = (adjust.clone(), claim.cloned(), audit.clone());
        let clock = self.clock.clone();
        self.writer
            .write(move |conn| {
                run_idempotent(conn, claim.as_ref(), |conn, key| {
                    audited(
                        conn,
                        &audit,
                        apply_adjust(conn, &operation, key, clock.now())?,
                    )
                })
            })
            .await
    }

    async fn insert_service_key_audited(
        &self,
        key: &NewServiceKey,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let record = &key.record;
        let row = (
            record.id.clone(),
            record.name.clone(),
            crate::service_keys::key_hash(&key.key),
            record.scopes.join(" "),
            timestamp(record.created_at),
        );
        let audit = audit.clone();
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO service_keys (id, name, key_hash, scopes, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![row.0, row.1, row.2, row.3, row.4])?;
                record_entry(conn, &audit)
            })
            .await
    }

    async fn revoke_service_key_audited(
        &self,
        id: &str,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let (id, audit, now) = (id.to_owned(), audit.clone(), timestamp(now()));
        self.writer
            .write(move |conn| {
                let revoked = conn
                    .prepare_cached(
                        "UPDATE service_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                    )?
                    .execute(params![id, now])?
                    == 1;
                if revoked {
                    record_entry(conn, &audit)?;
                }
                Ok(revoked)
            })
            .await
    }

    async fn record_audit(&self, audit: &AuditEntry) -> Result<(), StoreError> {
        let audit = audit.clone();
        self.writer
            .write(move |conn| record_entry(conn, &audit))
            .await
    }

    async fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, id, actor, action, target, before, after, reason, request_id, created_at
             FROM admin_audit
             WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR action = ?2)
               AND (?3 IS NULL OR target = ?3) AND (?4 IS NULL OR seq < ?4)
             ORDER BY seq DESC LIMIT ?5",
        )
        .bind(filter.actor.as_deref())
        .bind(filter.action.as_deref())
        .bind(filter.target.as_deref())
        .bind(filter.cursor)
        .bind(i64::from(filter.limit.min(MAX_AUDIT_PAGE)))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(audit_record).collect()
    }
}
