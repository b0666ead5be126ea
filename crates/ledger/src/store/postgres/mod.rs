//! The ledger on PostgreSQL.
//!
//! A debit without an idempotency key is a single statement: a data-modifying CTE whose
//! conditional `UPDATE` and transaction `INSERT` commit together, in one round trip. Accounts
//! with grant rows (`granted > 0`) miss it and take the grant-aware path in `grants.rs`.

mod admin;
mod app_spend;
mod debits;
mod grant_reads;
mod grants;
mod holds;
mod ledger;
mod oauth;
mod payments;
mod service_keys;
mod usage;
mod users;
mod webhooks;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::grants::Clock;
use crate::service_keys::{NewServiceKey, ServiceKey, ServiceKeyStore};
use crate::store::{LedgerStore, StoreError, parse_kind, replay};
use crate::users::{CreatedUser, EmailVerification, NewUser, Role, User, UserStore};
use crate::{
    AuditReport, Debit, DebitOutcome, Discrepancy, Grant, GrantOutcome, Hold, HoldDiscrepancy,
    HoldStatus, Holdings, IdempotencyClaim, Idempotent, MAX_BALANCE, Refund, RefundOutcome,
    Reserve, ReserveOutcome, Settle, SettleOutcome, Transaction, TransactionKind, TransactionPage,
    new_reservation_id, new_transaction_id,
};
use debits::*;
use grant_reads::*;
use grants::*;
use holds::*;

pub(super) const COLUMNS: &str = "id, user_id, kind, service, amount, balance_before, balance_after, \
                       refund_of, reason, metadata, created_at";

/// The debit, as one statement. `hub bench` hands this same text to pgbench.
pub const DEBIT_SQL: &str = "\
WITH debited AS (
    UPDATE credit_accounts SET balance = balance - $2, updated_at = now()
    WHERE user_id = $1 AND balance - held >= $2 AND NOT frozen AND granted = 0
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
    clock: std::sync::Arc<dyn Clock>,
}

impl PgStore {
    /// Wraps a pool whose database is migrated.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            clock: std::sync::Arc::new(crate::grants::SystemClock),
        }
    }

    /// Decides grant expiry by `clock` (tests move it).
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

pub(super) fn transaction(row: &PgRow) -> Result<Transaction, StoreError> {
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
