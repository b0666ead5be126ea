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
}

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
