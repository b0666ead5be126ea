//! Credit holds: a two-phase debit (reserve, then capture or release).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{InvalidInput, ServiceName, Transaction};

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
    /// The OAuth grant of the app holding, if an app is: the hold counts against its daily cap
    /// until it is released (or as much as is captured).
    pub app_grant: Option<String>,
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
    /// The app's daily spending cap does not cover the hold; nothing changed.
    AppCapReached(crate::AppCap),
    /// The account is disabled (frozen by an operator); nothing changed.
    AccountDisabled,
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
    /// A capture from a disabled (frozen) account; the hold stays as it was.
    AccountDisabled,
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
    /// Whether an operator disabled the account: nothing may be spent or held from it.
    pub frozen: bool,
}

impl Holdings {
    /// What may be spent or held now.
    pub fn available(self) -> i64 {
        self.balance - self.held
    }
}
