//! Grants with an end date and a priority, on every engine: promotional credits are spent first
//! (by priority, then the earliest end date, then the oldest), what is left at the end date
//! leaves as an `expire` transaction, refunds go back to their grants, and the audit holds, with
//! a clock the test moves instead of sleeping.

mod api;
mod concurrency;
mod expiry;
mod spending;

use std::sync::Arc;

use chrono::Duration;
use hub_core::Store;
use hub_core::ledger::grants::{Clock, CreditGrant, GrantTerms, ManualClock};
use hub_core::ledger::{
    Debit, DebitOutcome, Grant, GrantOutcome, Idempotent, Refund, RefundOutcome, ServiceName,
    Transaction, TransactionKind,
};
use hub_test_support::{TestDatabase, engines, user_with};
use uuid::Uuid;

/// A store on a fresh database whose grant expiry follows a clock the test moves.
struct Ledger {
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    _db: TestDatabase,
}

impl Ledger {
    async fn new(engine: hub_test_support::Engine) -> Self {
        let db = TestDatabase::new(engine).await;
        let clock = Arc::new(ManualClock::new());
        let store = db.store_with_clock(clock.clone());
        Self {
            store,
            clock,
            _db: db,
        }
    }

    fn in_days(&self, days: i64) -> chrono::DateTime<chrono::Utc> {
        self.clock.now() + Duration::days(days)
    }

    fn pass_days(&self, days: i64) {
        self.clock.advance(Duration::days(days));
    }

    async fn user(&self, base: i64) -> Uuid {
        user_with(&self.store, base).await
    }

    /// Grants `amount` ending in `days` (never when `None`) at `priority`.
    async fn grant(
        &self,
        user: Uuid,
        amount: i64,
        days: Option<i64>,
        priority: i32,
    ) -> Transaction {
        let grant = Grant {
            user_id: user,
            amount,
            reason: "promotion".into(),
            request_id: None,
            terms: GrantTerms {
                expires_at: days.map(|d| self.in_days(d)),
                priority,
            },
        };
        match self.store.grant(&grant, None).await.unwrap() {
            Idempotent::Fresh(GrantOutcome::Granted { transaction }) => transaction,
            other => panic!("granted, got {other:?}"),
        }
    }

    async fn debit(&self, user: Uuid, cost: i64) -> DebitOutcome {
        match self.store.debit(&debit(user, cost), None).await.unwrap() {
            Idempotent::Fresh(outcome) => outcome,
            other => panic!("a fresh outcome, got {other:?}"),
        }
    }

    async fn spend(&self, user: Uuid, cost: i64) -> Transaction {
        match self.debit(user, cost).await {
            DebitOutcome::Debited { transaction } => transaction,
            other => panic!("debited {cost}, got {other:?}"),
        }
    }

    async fn refund(&self, debit: &Transaction, amount: i64) -> Transaction {
        let refund = Refund {
            transaction_id: debit.id.clone(),
            amount: Some(amount),
            reason: "the video failed".into(),
            request_id: None,
            owner_must_be: None,
            owner_must_not_be: None,
        };
        match self.store.refund(&refund, None).await.unwrap() {
            Idempotent::Fresh(RefundOutcome::Refunded { transaction, .. }) => transaction,
            other => panic!("refunded, got {other:?}"),
        }
    }

    async fn balance(&self, user: Uuid) -> i64 {
        self.store.balance(user).await.unwrap().unwrap()
    }

    async fn grants(&self, user: Uuid) -> Vec<CreditGrant> {
        self.store.grants(user).await.unwrap().unwrap()
    }

    /// What is left of each listed grant, in spending order.
    async fn remaining(&self, user: Uuid) -> Vec<i64> {
        self.grants(user)
            .await
            .iter()
            .map(|g| g.remaining)
            .collect()
    }

    async fn history(&self, user: Uuid) -> Vec<Transaction> {
        let page = self.store.transactions(user, 200, None).await.unwrap();
        page.unwrap().transactions
    }

    async fn assert_audit(&self) {
        let report = self.store.audit().await.unwrap();
        assert_eq!(report.broken(), 0, "{report:?}");
    }
}

fn debit(user_id: Uuid, cost: i64) -> Debit {
    Debit {
        user_id,
        service: ServiceName::parse("sora2").unwrap(),
        cost,
        metadata: None,
        request_id: None,
        app_grant: None,
    }
}

fn expired(history: &[Transaction]) -> Vec<i64> {
    history
        .iter()
        .filter(|t| t.kind == TransactionKind::Expire)
        .map(|t| t.amount)
        .collect()
}
