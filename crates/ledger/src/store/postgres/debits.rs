//! The operations that move credits (debit, refund, grant), each run once per idempotency key.

use super::*;

/// One ledger write, run inside the idempotency envelope.
pub(super) trait Operation: Sync {
    type Outcome: Serialize + DeserializeOwned + Send;
    async fn apply(
        &self,
        conn: &mut PgConnection,
        key: Option<&str>,
    ) -> Result<Self::Outcome, StoreError>;

    /// [`Operation::apply`] at the store clock's `now` (what decides grant expiry); the
    /// operations that spend or give back credits take it.
    async fn apply_at(
        &self,
        conn: &mut PgConnection,
        key: Option<&str>,
        _now: DateTime<Utc>,
    ) -> Result<Self::Outcome, StoreError> {
        self.apply(conn, key).await
    }
}

/// Runs an operation once per idempotency key: the key is claimed in the same database
/// transaction as the write, so a concurrent twin waits on the claim and then replays.
pub(super) async fn run_idempotent<O: Operation>(
    pool: &PgPool,
    operation: &O,
    claim: Option<&IdempotencyClaim>,
) -> Result<Idempotent<O::Outcome>, StoreError> {
    run_idempotent_at(pool, operation, claim, Utc::now()).await
}

/// [`run_idempotent`] at `now` by the store's clock.
pub(super) async fn run_idempotent_at<O: Operation>(
    pool: &PgPool,
    operation: &O,
    claim: Option<&IdempotencyClaim>,
    now: DateTime<Utc>,
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
        .apply_at(&mut tx, claim.map(|c| c.key.as_str()), now)
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
        self.apply_at(conn, key, Utc::now()).await
    }

    async fn apply_at(
        &self,
        conn: &mut PgConnection,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<DebitOutcome, StoreError> {
        let tracked = match &self.app_grant {
            Some(grant) => match app_spend::charge(&mut *conn, grant, self.cost).await? {
                Err(cap) => return Ok(DebitOutcome::AppCapReached(cap)),
                Ok(tracked) => tracked.then_some(grant.as_str()),
            },
            None => None,
        };
        let outcome = self.debit(&mut *conn, key, now).await?;
        if let (Some(grant), false) = (tracked, matches!(outcome, DebitOutcome::Debited { .. })) {
            app_spend::give_back_today(&mut *conn, grant, self.cost).await?;
        }
        Ok(outcome)
    }
}

impl Debit {
    /// The debit itself: the one conditional statement, once more after freeing expired holds;
    /// for an account with grant rows, the grant-aware path.
    async fn debit(
        &self,
        conn: &mut PgConnection,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<DebitOutcome, StoreError> {
        let mut retried = false;
        loop {
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
            // The conditional update matched nothing: say why, from what the account holds now.
            let state: Option<(i64, bool, bool)> = sqlx::query_as(
                "SELECT balance - held, frozen, granted > 0 FROM credit_accounts WHERE user_id = $1",
            )
            .bind(self.user_id)
            .fetch_optional(&mut *conn)
            .await?;
            let Some((balance, frozen, granted)) = state else {
                return Ok(DebitOutcome::UnknownUser);
            };
            if frozen {
                return Ok(DebitOutcome::AccountDisabled);
            }
            if granted {
                // It frees holds that expired unswept itself, before it locks the account.
                return self.debit_grants(conn, key, now).await;
            }
            // Short: holds that expired unswept may be what stands in the way. Free them and
            // try once more.
            if retried || !expire_user_holds(&mut *conn, self.user_id).await? {
                super::webhooks::refused(&mut *conn, self.user_id).await?;
                return Ok(DebitOutcome::Insufficient { balance });
            }
            retried = true;
        }
    }

    /// The debit of an account with grant rows: taken from them in spending order.
    async fn debit_grants(
        &self,
        conn: &mut PgConnection,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<DebitOutcome, StoreError> {
        let take = Take {
            user_id: self.user_id,
            amount: self.cost,
            kind: TransactionKind::Debit,
            service: Some(self.service.as_str()),
            metadata: self.metadata.as_ref(),
            reason: None,
            key,
            request_id: self.request_id.as_deref(),
            refuse_frozen: true,
        };
        Ok(match take.run(conn, now).await? {
            Taken::Done(transaction) => DebitOutcome::Debited { transaction },
            Taken::Short { available } => {
                super::webhooks::refused(&mut *conn, self.user_id).await?;
                DebitOutcome::Insufficient { balance: available }
            }
            Taken::Frozen => DebitOutcome::AccountDisabled,
            Taken::UnknownUser => DebitOutcome::UnknownUser,
        })
    }
}

/// What an account has available and whether it is frozen, as a refusal reports it.
pub(super) async fn available(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Option<(i64, bool)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT balance - held, frozen FROM credit_accounts WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

impl Operation for Refund {
    type Outcome = RefundOutcome;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        key: Option<&str>,
    ) -> Result<RefundOutcome, StoreError> {
        self.apply_at(conn, key, Utc::now()).await
    }

    async fn apply_at(
        &self,
        conn: &mut PgConnection,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<RefundOutcome, StoreError> {
        // The debit's row lock serialises refunds of one debit.
        let Some(debit) = sqlx::query(
            "SELECT user_id, kind, service, refundable,
                    EXISTS (SELECT 1 FROM credit_grant_spends s
                            WHERE s.transaction_id = credit_transactions.id) AS split
             FROM credit_transactions WHERE id = $1 FOR UPDATE",
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
        let decision = crate::decide_refund(self, owner, kind, refundable);
        let amount = match decision {
            Ok(amount) => amount,
            Err(outcome) => return Ok(outcome),
        };
        // A debit taken from grants gives back to them (those still live), in reverse order.
        let back = if debit.try_get("split")? {
            plan_give_back(&mut *conn, &self.transaction_id, amount, now).await?
        } else {
            Vec::new()
        };
        let to_grants: i64 = back
            .iter()
            .filter(|(_, grant, _)| grant.is_some())
            .map(|(_, _, amount)| amount)
            .sum();
        // The account first, conditionally: a refund never takes a balance past its maximum.
        let row = sqlx::query(&format!(
            "WITH credited AS (
                UPDATE credit_accounts SET balance = balance + $2, granted = granted + $10,
                    updated_at = now()
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
        .bind(to_grants)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return Ok(RefundOutcome::BalanceLimit);
        };
        if !back.is_empty() {
            write_give_back(&mut *conn, &self.transaction_id, &back).await?;
        }
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
                UPDATE credit_accounts SET balance = balance + $2, granted = granted + $8,
                    updated_at = now()
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
        .bind(if self.terms.is_base() { 0 } else { self.amount })
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            let transaction = transaction(&row)?;
            if !self.terms.is_base() {
                record_grant(&mut *conn, self, &transaction.id).await?;
            }
            return Ok(GrantOutcome::Granted { transaction });
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
