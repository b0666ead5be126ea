//! Paid top-ups: a confirmed payment grants its credits once, recorded with the grant.

use async_trait::async_trait;
use uuid::Uuid;

use crate::{StoreError, Transaction};

/// A confirmed payment to grant for.
#[derive(Debug, Clone)]
pub struct Payment {
    /// The Stripe Checkout Session (one payment): the key that makes it grant once.
    pub checkout_session_id: String,
    /// The event that confirmed it.
    pub event_id: String,
    /// Whose account.
    pub user_id: Uuid,
    /// The pack's credits.
    pub credits: i64,
    /// What was paid, in the currency's minor unit.
    pub amount_total: i64,
    /// Lower-case ISO currency code.
    pub currency: String,
}

/// What became of a payment.
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentOutcome {
    /// Granted now.
    Granted {
        /// The grant.
        transaction: Transaction,
    },
    /// This payment granted before; nothing changed.
    AlreadyGranted,
    /// No such user; nothing changed.
    UnknownUser,
    /// The balance would pass its maximum; nothing changed.
    BalanceLimit,
}

/// Storage of payments and their grants.
#[async_trait]
pub trait PaymentStore: Send + Sync {
    /// Grants a payment's credits, recording the payment in the same transaction; a payment met
    /// again (redelivered, concurrent, or confirmed by a second event) grants nothing.
    async fn grant_for_payment(&self, payment: &Payment) -> Result<PaymentOutcome, StoreError>;
    /// A user's payments that granted, newest first, at most `limit`.
    async fn payments_of(
        &self,
        user_id: Uuid,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, StoreError>;
}

/// A payment that granted its credits, as its user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    /// The Stripe Checkout Session.
    pub checkout_session_id: String,
    /// The credits granted.
    pub credits: i64,
    /// What was paid, in the currency's minor unit.
    pub amount_total: i64,
    /// Lower-case ISO currency code.
    pub currency: String,
    /// The grant's transaction.
    pub transaction_id: String,
    /// When it granted.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The columns of [`PaymentRecord`], in the stores' queries.
pub(crate) const RECORD_COLUMNS: &str =
    "checkout_session_id, credits, amount_total, currency, transaction_id, created_at";

impl Payment {
    /// The grant it makes.
    pub fn grant(&self) -> crate::Grant {
        crate::Grant {
            user_id: self.user_id,
            amount: self.credits,
            reason: format!(
                "payment {} ({} {})",
                self.checkout_session_id, self.amount_total, self.currency
            ),
            request_id: None,
            terms: crate::grants::GrantTerms::default(),
        }
    }
}
