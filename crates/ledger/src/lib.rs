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
//! - Promotional grants (an end date, a priority) are spent first by their order and expire as
//!   `expire` transactions; accounts without them keep the one-statement debit ([`grants`]).

pub mod admin;
pub mod grants;
mod holds;
mod idempotency;
pub mod oauth;
mod operations;
pub mod paging;
pub mod payments;
pub mod service_keys;
pub mod store;
pub mod usage;
pub mod users;
pub mod webhooks;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

pub use holds::*;
pub use idempotency::*;
pub use operations::*;
pub use store::{LedgerStore, Store, StoreError};

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
    /// What was left of a grant at its end date, taken off the balance.
    Expire,
}

impl TransactionKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debit => "debit",
            Self::Refund => "refund",
            Self::Grant => "grant",
            Self::Adjustment => "adjustment",
            Self::Expire => "expire",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "debit" => Self::Debit,
            "refund" => Self::Refund,
            "grant" => Self::Grant,
            "adjustment" => Self::Adjustment,
            "expire" => Self::Expire,
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
}
