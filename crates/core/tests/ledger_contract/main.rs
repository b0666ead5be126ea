//! The contract every ledger store keeps, run on every engine (SQLite always; PostgreSQL when
//! `HUB_TEST_DATABASE_URL` is set).

mod accounts;
mod alerts;
mod balances;
mod refunds;
mod requests;
mod usage;

use std::sync::Arc;

use hub_core::Store;
use hub_core::ledger::{
    Debit, DebitOutcome, Grant, GrantOutcome, IdempotencyClaim, Idempotent, MAX_BALANCE, Refund,
    RefundOutcome, ServiceName, TransactionKind,
};
use hub_core::users::{NewUser, Role};
use hub_test_support::{TestDatabase, engines};
use serde_json::json;
use uuid::Uuid;

async fn user(store: &Arc<dyn Store>, credits: i64) -> Uuid {
    let email = format!("{}@example.com", Uuid::new_v4().simple());
    let new = NewUser::new(&email, "Contract", credits, Role::User).unwrap();
    store.create_user(&new).await.unwrap().unwrap().user.id
}

fn debit(user_id: Uuid, cost: i64) -> Debit {
    Debit {
        user_id,
        service: ServiceName::parse("sora2-video-generation").unwrap(),
        cost,
        metadata: Some(json!({ "task": "t-1" })),
        request_id: Some("req-1".into()),
        app_grant: None,
    }
}

fn refund(transaction_id: &str, amount: Option<i64>) -> Refund {
    Refund {
        transaction_id: transaction_id.to_owned(),
        amount,
        reason: "video failed".into(),
        request_id: None,
        owner_must_be: None,
        owner_must_not_be: None,
    }
}

async fn fresh_debit(store: &Arc<dyn Store>, user_id: Uuid, cost: i64) -> DebitOutcome {
    match store.debit(&debit(user_id, cost), None).await.unwrap() {
        Idempotent::Fresh(outcome) => outcome,
        other => panic!("expected a fresh outcome, got {other:?}"),
    }
}

async fn assert_invariant(store: &Arc<dyn Store>) {
    let report = store.audit().await.unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "invariant broken: {:?}",
        report.discrepancies
    );
}
