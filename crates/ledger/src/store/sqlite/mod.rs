//! The ledger on the embedded SQLite file.
//!
//! SQLite takes one writer at a time, so the store has exactly one: a thread that owns the only
//! writing connection and commits in groups. Each operation runs inside its own savepoint (so a
//! failed one leaves no trace), and the whole group commits at once; every caller hears back only
//! after that commit. The conditional `UPDATE … WHERE balance >= cost RETURNING` decides each debit
//! exactly as on PostgreSQL. Reads use a pool of read-only connections that WAL mode runs beside
//! the writer.

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
mod writer;

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
use writer::*;

pub(super) const COLUMNS: &str = "id, user_id, kind, service, amount, balance_before, balance_after, \
                       refund_of, reason, metadata, created_at";

/// The most operations one group commit takes.
pub(super) const MAX_GROUP: usize = 256;

/// The ledger and users in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: Writer,
    reader: SqlitePool,
    clock: std::sync::Arc<dyn Clock>,
}

impl SqliteStore {
    /// Starts the writer thread on the migrated file at `path`; reads go through `reader`.
    pub fn new(path: &Path, reader: SqlitePool) -> Self {
        Self {
            writer: Writer::start(path.to_owned()),
            reader,
            clock: std::sync::Arc::new(crate::grants::SystemClock),
        }
    }

    /// Decides grant expiry by `clock` (tests move it).
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// Timestamps as RFC 3339 text in UTC with microseconds: sortable as text, readable by sqlx.
pub(super) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A clock reading truncated to what the text form keeps, so values read back compare equal.
pub(super) fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::parse_from_rfc3339(&timestamp(now)).map_or(now, |t| t.with_timezone(&Utc))
}

/// A timestamp written by [`timestamp`], read back.
pub(super) fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {text:?}: {e}")))
}

/// A UUID column, stored as text.
pub(super) fn uuid(row: &SqliteRow, column: &str) -> Result<Uuid, StoreError> {
    let text: String = row.try_get(column)?;
    Uuid::parse_str(&text).map_err(|e| StoreError::Corrupt(format!("{column} {text:?}: {e}")))
}
