//! The ledger's storage: one trait, one implementation per engine, one contract test suite.

mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

pub use postgres::{DEBIT_SQL, PgStore};
pub use sqlite::SqliteStore;

use super::{
    AuditReport, Debit, DebitOutcome, Grant, GrantOutcome, Holdings, IdempotencyClaim, Idempotent,
    Refund, RefundOutcome, Reserve, ReserveOutcome, Settle, SettleOutcome, TransactionPage,
};
use crate::admin::AdminStore;
use crate::grants::GrantStore;
use crate::oauth::OAuthStore;
use crate::payments::PaymentStore;
use crate::service_keys::ServiceKeyStore;
use crate::usage::UsageStore;
use crate::users::UserStore;
use crate::webhooks::WebhookStore;

/// The engine failed, or returned something the ledger cannot read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine's error.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// A stored value that breaks the schema's promises.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The embedded engine refused.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The embedded engine's writer is gone, or its group commit failed.
    #[error("sqlite writer: {0}")]
    Writer(String),
    /// A stored outcome that does not deserialize.
    #[error("stored outcome: {0}")]
    Json(#[from] serde_json::Error),
}

impl StoreError {
    /// Whether the engine is out of reach or out of connections (a 503, worth a retry), rather
    /// than broken.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Sqlx(e) => matches!(
                e,
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
            ),
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            Self::Writer(_) => true,
            _ => false,
        }
    }
}

/// Storage of the credit ledger. Every write is atomic: the balance and its transaction row
/// change together or not at all.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// The balance of an account, `None` for an unknown user.
    async fn balance(&self, user_id: Uuid) -> Result<Option<i64>, StoreError>;
    /// Debits an account if, and only if, its balance covers the cost.
    async fn debit(
        &self,
        debit: &Debit,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<DebitOutcome>, StoreError>;
    /// Reverses all or part of a debit.
    async fn refund(
        &self,
        refund: &Refund,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<RefundOutcome>, StoreError>;
    /// Adds credits to an account.
    async fn grant(
        &self,
        grant: &Grant,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<GrantOutcome>, StoreError>;
    /// An account's history, newest first, after the transaction named by `cursor`.
    /// `None` for an unknown user.
    async fn transactions(
        &self,
        user_id: Uuid,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Option<TransactionPage>, StoreError>;
    /// The balance of an account and what of it live holds set aside (computed on read: an
    /// expired hold no longer counts, swept or not). `None` for an unknown user.
    async fn holdings(&self, user_id: Uuid) -> Result<Option<Holdings>, StoreError>;
    /// Sets credits aside if, and only if, the available balance covers them.
    async fn reserve(
        &self,
        reserve: &Reserve,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Idempotent<ReserveOutcome>, StoreError>;
    /// Captures all or part of a hold as a debit, or releases it; each hold is settled once.
    async fn settle(&self, settle: &Settle) -> Result<SettleOutcome, StoreError>;
    /// Frees every hold that expired unsettled; returns how many accounts got credits back.
    async fn expire_holds(&self) -> Result<u64, StoreError>;
    /// Checks, for every account, that its balance equals the sum of its transactions and its
    /// held credits the sum of its live holds.
    async fn audit(&self) -> Result<AuditReport, StoreError>;
    /// Forgets idempotency keys created before `older_than`; returns how many.
    async fn purge_idempotency_keys(&self, older_than: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Answers whether the engine takes queries.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Everything the hub stores in its database.
pub trait Store:
    LedgerStore
    + UserStore
    + ServiceKeyStore
    + OAuthStore
    + AdminStore
    + PaymentStore
    + UsageStore
    + GrantStore
    + WebhookStore
{
}
impl<T> Store for T where
    T: LedgerStore
        + UserStore
        + ServiceKeyStore
        + OAuthStore
        + AdminStore
        + PaymentStore
        + UsageStore
        + GrantStore
        + WebhookStore
{
}

/// The store for an open database.
pub fn open(database: hub_storage::Database) -> Arc<dyn Store> {
    open_with_clock(database, Arc::new(crate::grants::SystemClock))
}

/// The store for an open database, deciding grant expiry by `clock` (tests move it).
pub fn open_with_clock(
    database: hub_storage::Database,
    clock: Arc<dyn crate::grants::Clock>,
) -> Arc<dyn Store> {
    match database {
        hub_storage::Database::Postgres(pool) => Arc::new(PgStore::new(pool).with_clock(clock)),
        hub_storage::Database::Sqlite { path, reader, .. } => {
            Arc::new(SqliteStore::new(&path, reader).with_clock(clock))
        }
    }
}

/// A key met again: the first outcome if the request is the same, a refusal if not.
fn replay<T: DeserializeOwned>(
    claim: &IdempotencyClaim,
    stored_fingerprint: &str,
    stored_outcome: Option<Value>,
) -> Result<Idempotent<T>, StoreError> {
    if stored_fingerprint != claim.fingerprint {
        return Ok(Idempotent::KeyReused);
    }
    let outcome = stored_outcome.ok_or_else(|| {
        StoreError::Corrupt(format!("idempotency key {:?} has no outcome", claim.key))
    })?;
    Ok(Idempotent::Replayed(serde_json::from_value(outcome)?))
}

fn parse_kind(kind: &str) -> Result<super::TransactionKind, StoreError> {
    super::TransactionKind::parse(kind)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown transaction kind {kind:?}")))
}
