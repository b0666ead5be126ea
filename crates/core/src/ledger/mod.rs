//! The credit ledger: its rules, its types and the store trait that every engine implements.
//!
//! The rules, in one place:
//! - Amounts are integer credits. A balance never goes below zero: a debit is one conditional
//!   `UPDATE … WHERE balance >= cost`, never a read followed by a write, and the database's
//!   `CHECK (balance >= 0)` backs it up.
//! - Every change of a balance writes its transaction row in the same database transaction, so a
//!   balance always equals the sum of its account's amounts.
//! - A refund reverses all or part of one debit; the refunds of a debit never add up to more
//!   than it.
//! - A request with an idempotency key is carried out once; repeats get the first outcome.

pub mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use store::{LedgerStore, StoreError};

/// The largest cost, refund or grant one request may carry.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;
/// The largest balance an account may hold (also a CHECK constraint).
pub const MAX_BALANCE: i64 = 1_000_000_000_000_000;
/// The largest metadata object, serialized.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// The most transactions one page of history holds.
pub const MAX_PAGE: u32 = 200;

/// What a transaction did to its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    /// Credits spent on a service.
    Debit,
    /// Credits given back for an earlier debit.
    Refund,
    /// Credits added by an operator or at sign-up.
    Grant,
    /// An operator's correction.
    Adjustment,
}

impl TransactionKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debit => "debit",
            Self::Refund => "refund",
            Self::Grant => "grant",
            Self::Adjustment => "adjustment",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "debit" => Self::Debit,
            "refund" => Self::Refund,
            "grant" => Self::Grant,
            "adjustment" => Self::Adjustment,
            _ => return None,
        })
    }
}

/// One row of an account's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transaction {
    /// Opaque, unique id (`txn_…`).
    pub id: String,
    /// The account's owner.
    pub user_id: Uuid,
    /// What it did.
    pub kind: TransactionKind,
    /// The service it was spent on (debits and their refunds).
    pub service: Option<String>,
    /// Signed change: negative for debits.
    pub amount: i64,
    /// The balance just before.
    pub balance_before: i64,
    /// The balance just after.
    pub balance_after: i64,
    /// For a refund, the debit it reverses.
    pub refund_of: Option<String>,
    /// Why (grants, refunds).
    pub reason: Option<String>,
    /// The caller's metadata (debits).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// A new opaque transaction id.
pub fn new_transaction_id() -> String {
    format!("txn_{}", Uuid::now_v7().simple())
}

/// A service name: 1–64 characters of `[a-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceName(String);

impl ServiceName {
    /// Checks the rules.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidInput::new(
                "invalid_service",
                "service must be 1 to 64 characters of a-z, 0-9, '.', '_' or '-'",
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Input that breaks a ledger rule; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidInput {
    /// Stable code.
    pub code: &'static str,
    /// Human sentence.
    pub message: String,
    /// Whether it is a size problem (413) rather than a value problem (422).
    pub too_large: bool,
}

impl InvalidInput {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            too_large: false,
        }
    }
}

/// Checks an amount: a whole number of credits, at most [`MAX_AMOUNT`], at least `min`.
pub fn validate_amount(field: &str, value: i64, min: i64) -> Result<i64, InvalidInput> {
    if value < min {
        let what = if min == 0 {
            "zero or more"
        } else {
            "at least 1"
        };
        return Err(InvalidInput::new(
            "invalid_amount",
            format!("{field} must be {what}"),
        ));
    }
    if value > MAX_AMOUNT {
        return Err(InvalidInput::new(
            "invalid_amount",
            format!("{field} must be at most {MAX_AMOUNT}"),
        ));
    }
    Ok(value)
}

/// Checks metadata: an object of at most [`MAX_METADATA_BYTES`] once serialized.
pub fn validate_metadata(
    metadata: Option<Map<String, Value>>,
) -> Result<Option<Value>, InvalidInput> {
    let Some(map) = metadata else { return Ok(None) };
    let value = Value::Object(map);
    if value.to_string().len() > MAX_METADATA_BYTES {
        return Err(InvalidInput {
            code: "metadata_too_large",
            message: format!("metadata must be at most {MAX_METADATA_BYTES} bytes as JSON"),
            too_large: true,
        });
    }
    if holds_nul(&value) {
        // PostgreSQL's jsonb cannot store U+0000; refuse it on every engine alike.
        return Err(InvalidInput::new(
            "invalid_metadata",
            "metadata must not contain the character U+0000",
        ));
    }
    Ok(Some(value))
}

fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// Checks a transaction id as a caller sends it: 1–64 characters of `[A-Za-z0-9_-]`. Anything
/// else names no transaction, and must not reach the database as text it cannot store.
pub fn validate_transaction_id(id: &str) -> Result<&str, InvalidInput> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(id)
    } else {
        Err(InvalidInput::new(
            "invalid_transaction_id",
            "transaction_id must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'",
        ))
    }
}

/// Checks a free-text reason: 1–500 characters as sent (the API document's `maxLength`), not all
/// blank, without control characters; kept trimmed.
pub fn validate_reason(reason: &str) -> Result<String, InvalidInput> {
    let too_long = reason.chars().count() > 500;
    let control = reason.chars().any(char::is_control);
    let reason = reason.trim();
    if reason.is_empty() || too_long || control {
        return Err(InvalidInput::new(
            "invalid_reason",
            "reason must be 1 to 500 characters, without control characters",
        ));
    }
    Ok(reason.to_owned())
}

/// A debit to carry out.
#[derive(Debug, Clone)]
pub struct Debit {
    /// Whose account.
    pub user_id: Uuid,
    /// What the credits pay for.
    pub service: ServiceName,
    /// How many credits, at least 1.
    pub cost: i64,
    /// The caller's audit data.
    pub metadata: Option<Value>,
    /// The request that asked for it.
    pub request_id: Option<String>,
}

/// What became of a debit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DebitOutcome {
    /// Done.
    Debited {
        /// The transaction written.
        transaction: Transaction,
    },
    /// The balance is short; nothing changed.
    Insufficient {
        /// The balance seen.
        balance: i64,
    },
    /// No such account.
    UnknownUser,
}

/// A refund to carry out.
#[derive(Debug, Clone)]
pub struct Refund {
    /// The debit to reverse.
    pub transaction_id: String,
    /// How much; all that remains when `None`.
    pub amount: Option<i64>,
    /// Why.
    pub reason: String,
    /// The request that asked for it.
    pub request_id: Option<String>,
    /// When set, the debit must belong to this user (a service key acting for one user).
    pub owner_must_be: Option<Uuid>,
    /// When set, the debit must not belong to this user (nobody refunds their own debit).
    pub owner_must_not_be: Option<Uuid>,
}

/// What became of a refund.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RefundOutcome {
    /// Done.
    Refunded {
        /// The refund transaction written.
        transaction: Transaction,
        /// What of the debit can still be refunded.
        remaining: i64,
    },
    /// No such transaction (or not one the caller may see).
    UnknownTransaction,
    /// The transaction is not a debit.
    NotADebit,
    /// Nothing of the debit is left to refund.
    AlreadyRefunded,
    /// More was asked than remains.
    ExceedsRemaining {
        /// What remains.
        remaining: i64,
    },
    /// The caller owns the debit.
    OwnDebit,
    /// The balance would pass [`MAX_BALANCE`].
    BalanceLimit,
}

/// A grant to carry out.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Whose account.
    pub user_id: Uuid,
    /// How many credits, at least 1.
    pub amount: i64,
    /// Why.
    pub reason: String,
    /// The request that asked for it.
    pub request_id: Option<String>,
}

/// What became of a grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum GrantOutcome {
    /// Done.
    Granted {
        /// The transaction written.
        transaction: Transaction,
    },
    /// No such account.
    UnknownUser,
    /// The balance would pass [`MAX_BALANCE`].
    BalanceLimit,
}

/// A page of history, newest first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TransactionPage {
    /// The transactions.
    pub transactions: Vec<Transaction>,
    /// Pass as `cursor` for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// An account whose balance is not the sum of its transactions. Never expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discrepancy {
    /// The account.
    pub user_id: Uuid,
    /// Its balance.
    pub balance: i64,
    /// The sum of its transactions.
    pub sum_of_transactions: i64,
}

/// The result of checking the invariant over every account.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// How many accounts were checked.
    pub accounts: i64,
    /// The ones that break it.
    pub discrepancies: Vec<Discrepancy>,
    /// Accounts whose `held` is not the sum of their live holds. Never expected.
    pub hold_discrepancies: Vec<HoldDiscrepancy>,
}

/// An account whose held credits are not the sum of its live holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldDiscrepancy {
    /// The account.
    pub user_id: Uuid,
    /// What it says is held.
    pub held: i64,
    /// The sum of its holds that are not settled.
    pub sum_of_live_holds: i64,
}

// --- Credit holds: a two-phase debit (reserve, then capture or release) ---------------------

/// How long a hold lives unless asked otherwise, in seconds.
pub const DEFAULT_HOLD_SECONDS: i64 = 900;
/// The longest a hold may live, in seconds.
pub const MAX_HOLD_SECONDS: i64 = 3600;

/// A new opaque reservation id.
pub fn new_reservation_id() -> String {
    format!("res_{}", Uuid::now_v7().simple())
}

/// Checks a reservation id's shape (`res_` and 32 hex digits).
pub fn validate_reservation_id(id: &str) -> Result<&str, InvalidInput> {
    let ok = id
        .strip_prefix("res_")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(id)
    } else {
        Err(InvalidInput::new(
            "invalid_reservation_id",
            "the reservation id is not one this hub makes (res_…)",
        ))
    }
}

/// Checks a hold's lifetime: 1 to [`MAX_HOLD_SECONDS`], [`DEFAULT_HOLD_SECONDS`] when absent.
pub fn validate_hold_seconds(ttl: Option<i64>) -> Result<i64, InvalidInput> {
    match ttl {
        None => Ok(DEFAULT_HOLD_SECONDS),
        Some(ttl) if (1..=MAX_HOLD_SECONDS).contains(&ttl) => Ok(ttl),
        Some(_) => Err(InvalidInput::new(
            "invalid_ttl",
            format!("ttl_seconds must be 1 to {MAX_HOLD_SECONDS}"),
        )),
    }
}

/// A hold to place.
#[derive(Debug, Clone)]
pub struct Reserve {
    /// Whose credits.
    pub user_id: Uuid,
    /// What they are held for.
    pub service: ServiceName,
    /// How many, at least 1.
    pub cost: i64,
    /// How long the hold lives, in seconds.
    pub ttl_seconds: i64,
    /// The caller's audit data, kept with the hold and with its debit.
    pub metadata: Option<Value>,
    /// The request that asked for it.
    pub request_id: Option<String>,
    /// The principal placing it; only the same principal settles it.
    pub placed_by: String,
}

/// Where a hold stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    /// The credits are set aside.
    Held,
    /// Turned into a debit (all or part of it).
    Captured,
    /// Given back whole.
    Released,
    /// Not settled in time: given back whole.
    Expired,
}

impl HoldStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Captured => "captured",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }

    /// From the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "held" => Self::Held,
            "captured" => Self::Captured,
            "released" => Self::Released,
            "expired" => Self::Expired,
            _ => return None,
        })
    }
}

/// A hold, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Hold {
    /// `res_…`.
    pub id: String,
    /// Whose credits.
    pub user_id: Uuid,
    /// What they are held for.
    pub service: String,
    /// How many are (or were) held.
    pub amount: i64,
    /// Where it stands.
    pub status: HoldStatus,
    /// What was captured (captured holds).
    pub captured: Option<i64>,
    /// The debit the capture wrote (captured holds with a non-zero capture).
    pub transaction_id: Option<String>,
    /// When it was placed.
    pub created_at: DateTime<Utc>,
    /// When it expires unless settled.
    pub expires_at: DateTime<Utc>,
    /// When it was settled.
    pub settled_at: Option<DateTime<Utc>>,
}

/// What became of a reservation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReserveOutcome {
    /// The credits are set aside.
    Held {
        /// The hold.
        hold: Hold,
        /// The available balance after it.
        available: i64,
    },
    /// The available balance is short; nothing changed.
    Insufficient {
        /// The available balance seen.
        available: i64,
    },
    /// No such account.
    UnknownUser,
}

/// Settling a hold: capture all or part of it, or release it.
#[derive(Debug, Clone)]
pub struct Settle {
    /// The hold.
    pub reservation_id: String,
    /// `Some(amount)` captures (all of the hold when `amount` is `None`); `None` releases.
    pub capture: Option<Option<i64>>,
    /// When set, the hold must belong to this user (the caller acts for one user).
    pub owner_must_be: Option<Uuid>,
    /// When set, the hold must have been placed by this principal (holds from before principals
    /// were recorded excepted).
    pub principal_must_be: Option<String>,
    /// The request that asked for it.
    pub request_id: Option<String>,
}

/// What became of a settlement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SettleOutcome {
    /// Settled now.
    Settled {
        /// The hold, as it stands now.
        hold: Hold,
        /// The debit a capture wrote (none for a release or a capture of 0).
        transaction: Option<Transaction>,
        /// The balance after it.
        balance: i64,
        /// The available balance after it.
        available: i64,
    },
    /// No such hold (or not one the caller may see).
    UnknownReservation,
    /// Settled before: each hold is settled exactly once.
    AlreadySettled {
        /// The hold, as it stands.
        hold: Hold,
    },
    /// It expired before it was settled; its credits are free again.
    Expired {
        /// The hold, as it stands.
        hold: Hold,
    },
    /// A capture of more than is held.
    ExceedsHold {
        /// What is held.
        held: i64,
    },
}

/// An account's balance and what of it is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holdings {
    /// The balance.
    pub balance: i64,
    /// The sum of its live (unexpired, unsettled) holds.
    pub held: i64,
}

impl Holdings {
    /// What may be spent or held now.
    pub fn available(self) -> i64 {
        self.balance - self.held
    }
}

/// An idempotency key as the store sees it: scoped to its caller, with the request's fingerprint.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// Who sent it (the caller and the user acted for), so that keys of different callers
    /// never meet.
    pub scope: String,
    /// The caller's key.
    pub key: String,
    /// A hash of the operation and its input; the same key with another request is refused.
    pub fingerprint: String,
}

impl IdempotencyClaim {
    /// Builds a claim for one operation and its canonical input.
    pub fn new(scope: String, key: String, operation: &str, input: &Value) -> Self {
        // serde_json's map is ordered by key, so equal inputs serialize equally.
        let mut hasher = Sha256::new();
        hasher.update(operation.as_bytes());
        hasher.update([0]);
        hasher.update(input.to_string().as_bytes());
        Self {
            scope,
            key,
            fingerprint: hex::encode(hasher.finalize()),
        }
    }
}

/// Decides how much of a debit a refund gives back, or why it gives nothing. The store calls
/// this with the debit's row locked (or the single writer held), so the answer stays true until
/// the refund is written.
// The refusal is an outcome as stored and answered; its size does not matter off the hot path.
#[allow(clippy::result_large_err)]
pub(crate) fn decide_refund(
    refund: &Refund,
    owner: Uuid,
    kind: TransactionKind,
    refundable: i64,
) -> Result<i64, RefundOutcome> {
    if refund.owner_must_be.is_some_and(|user| user != owner) {
        return Err(RefundOutcome::UnknownTransaction);
    }
    if refund.owner_must_not_be == Some(owner) {
        return Err(RefundOutcome::OwnDebit);
    }
    if kind != TransactionKind::Debit {
        return Err(RefundOutcome::NotADebit);
    }
    if refundable == 0 {
        return Err(RefundOutcome::AlreadyRefunded);
    }
    match refund.amount {
        None => Ok(refundable),
        Some(amount) if amount <= refundable => Ok(amount),
        Some(_) => Err(RefundOutcome::ExceedsRemaining {
            remaining: refundable,
        }),
    }
}

/// Cuts a fetch of `limit + 1` rows into a page and the cursor of the next.
pub(crate) fn page(mut transactions: Vec<Transaction>, limit: u32) -> TransactionPage {
    let more = transactions.len() > limit as usize;
    transactions.truncate(limit as usize);
    let next_cursor = if more {
        transactions.last().map(|t| t.id.clone())
    } else {
        None
    };
    TransactionPage {
        transactions,
        next_cursor,
    }
}

/// How many hours an idempotency key is remembered, at least.
pub const IDEMPOTENCY_RETENTION_HOURS: i64 = 24;

/// The answer to a request that may have carried an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum Idempotent<T> {
    /// Carried out now.
    Fresh(T),
    /// Carried out before; this is the first outcome again, and nothing changed.
    Replayed(T),
    /// The key was used before for a different request; nothing changed.
    KeyReused,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_follow_the_rules() {
        assert!(ServiceName::parse("sora2-video-generation").is_ok());
        assert!(ServiceName::parse("gpt.4_o").is_ok());
        for bad in ["", "Sora", "a b", "x/y", &"a".repeat(65)] {
            assert_eq!(
                ServiceName::parse(bad).unwrap_err().code,
                "invalid_service",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn amounts_are_bounded() {
        assert!(validate_amount("cost", 0, 0).is_ok());
        assert!(validate_amount("cost", 0, 1).is_err());
        assert!(validate_amount("cost", -1, 0).is_err());
        assert!(validate_amount("cost", MAX_AMOUNT, 1).is_ok());
        assert!(validate_amount("cost", MAX_AMOUNT + 1, 1).is_err());
    }

    #[test]
    fn text_the_database_cannot_store_is_refused() {
        let mut map = Map::new();
        map.insert(
            "nested".into(),
            serde_json::json!({ "list": ["ok", "a\u{0}b"] }),
        );
        assert_eq!(
            validate_metadata(Some(map)).unwrap_err().code,
            "invalid_metadata"
        );
        assert!(validate_reason("video\u{0}failed").is_err());
        assert!(validate_transaction_id("txn_01a2\u{0}").is_err());
        assert!(validate_transaction_id("txn_01a213c4b53170dcaa7ab2645cfc4d28").is_ok());
    }

    #[test]
    fn metadata_over_16_kib_is_too_large() {
        let mut map = Map::new();
        map.insert("p".into(), Value::String("x".repeat(MAX_METADATA_BYTES)));
        let err = validate_metadata(Some(map)).unwrap_err();
        assert!(err.too_large);
    }

    #[test]
    fn fingerprints_ignore_key_order_but_not_values() {
        let a = IdempotencyClaim::new(
            "s".into(),
            "k".into(),
            "deduct",
            &serde_json::json!({"a": 1, "b": 2}),
        );
        let b = IdempotencyClaim::new(
            "s".into(),
            "k".into(),
            "deduct",
            &serde_json::json!({"b": 2, "a": 1}),
        );
        let c = IdempotencyClaim::new(
            "s".into(),
            "k".into(),
            "deduct",
            &serde_json::json!({"a": 1, "b": 3}),
        );
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
    }
}
