//! The operations that move credits (debit, refund, grant), their outcomes, and the reports
//! that check the ledger.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{ServiceName, Transaction, TransactionKind};

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
    /// The OAuth grant of the app spending, if an app is: its daily cap applies, counted in the
    /// same transaction as the debit.
    pub app_grant: Option<String>,
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
    /// The app's daily spending cap does not cover the cost; nothing changed.
    AppCapReached(AppCap),
    /// The account is disabled (frozen by an operator); nothing changed.
    AccountDisabled,
    /// No such account.
    UnknownUser,
}

/// An app's daily spending cap and what it has spent of it today (UTC), as a refusal reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppCap {
    /// The most it may spend a day.
    pub cap: i64,
    /// What it spent today (holds count until they are released).
    pub spent: i64,
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
    /// Its end date and priority; the default adds to the account's base credits.
    pub terms: crate::grants::GrantTerms,
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
    /// Accounts whose `granted` is not the sum of their grant rows. Never expected.
    pub grant_discrepancies: Vec<crate::grants::GrantDiscrepancy>,
}

impl AuditReport {
    /// How many accounts break an invariant.
    pub fn broken(&self) -> usize {
        self.discrepancies.len() + self.hold_discrepancies.len() + self.grant_discrepancies.len()
    }
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
    let next_cursor = crate::paging::cut_page(&mut transactions, limit, |t| t.id.clone());
    TransactionPage {
        transactions,
        next_cursor,
    }
}
