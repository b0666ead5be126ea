//! The credit-hold contract every ledger store keeps (a two-phase debit: reserve, then capture
//! or release; a hold not settled in time frees itself), on every engine. Beside the ledger's
//! invariant (a balance is the sum of its transactions), the available balance, balance less
//! live holds, never goes below zero under any concurrency.

mod concurrency;
mod lifecycle;

use std::sync::Arc;
use std::time::Duration;

use hub_core::Store;
use hub_core::ledger::{
    Debit, DebitOutcome, HoldStatus, IdempotencyClaim, Idempotent, Reserve, ReserveOutcome,
    ServiceName, Settle, SettleOutcome, TransactionKind,
};
use hub_core::users::{NewUser, Role};
use hub_test_support::{TestDatabase, engines};
use serde_json::json;
use uuid::Uuid;

async fn user(store: &Arc<dyn Store>, credits: i64) -> Uuid {
    let email = format!("{}@example.com", Uuid::new_v4().simple());
    let new = NewUser::new(&email, "Holds", credits, Role::User).unwrap();
    store.create_user(&new).await.unwrap().unwrap().user.id
}

fn reserve(user_id: Uuid, cost: i64, ttl_seconds: i64) -> Reserve {
    Reserve {
        user_id,
        service: ServiceName::parse("sora2").unwrap(),
        cost,
        ttl_seconds,
        metadata: Some(json!({ "video": "v-1" })),
        request_id: None,
        placed_by: "mcp/user:test".into(),
        app_grant: None,
    }
}

async fn hold(store: &Arc<dyn Store>, user_id: Uuid, cost: i64, ttl: i64) -> ReserveOutcome {
    match store
        .reserve(&reserve(user_id, cost, ttl), None)
        .await
        .unwrap()
    {
        Idempotent::Fresh(outcome) => outcome,
        other => panic!("a fresh outcome, got {other:?}"),
    }
}

async fn held_id(store: &Arc<dyn Store>, user_id: Uuid, cost: i64, ttl: i64) -> String {
    match hold(store, user_id, cost, ttl).await {
        ReserveOutcome::Held { hold, .. } => hold.id,
        other => panic!("held, got {other:?}"),
    }
}

fn settle(id: &str, capture: Option<Option<i64>>, owner: Uuid) -> Settle {
    Settle {
        reservation_id: id.to_owned(),
        capture,
        owner_must_be: Some(owner),
        principal_must_be: Some("mcp/user:test".into()),
        request_id: None,
    }
}

async fn debit(store: &Arc<dyn Store>, user_id: Uuid, cost: i64) -> DebitOutcome {
    let debit = Debit {
        user_id,
        service: ServiceName::parse("sora2").unwrap(),
        cost,
        metadata: None,
        request_id: None,
        app_grant: None,
    };
    match store.debit(&debit, None).await.unwrap() {
        Idempotent::Fresh(outcome) => outcome,
        other => panic!("a fresh outcome, got {other:?}"),
    }
}

async fn assert_invariants(store: &Arc<dyn Store>) {
    let report = store.audit().await.unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
    assert!(
        report.hold_discrepancies.is_empty(),
        "{:?}",
        report.hold_discrepancies
    );
}
