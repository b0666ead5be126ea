//! The credit-hold contract every ledger store keeps (a two-phase debit: reserve, then capture
//! or release; a hold not settled in time frees itself), on every engine. Beside the ledger's
//! invariant (a balance is the sum of its transactions), the available balance, balance less
//! live holds, never goes below zero under any concurrency.

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

#[tokio::test]
async fn a_hold_sets_credits_aside_until_it_is_captured_or_released() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let alice = user(&store, 100).await;

        let (id, available) = match hold(&store, alice, 30, 900).await {
            ReserveOutcome::Held { hold, available } => {
                assert_eq!((hold.amount, hold.status), (30, HoldStatus::Held));
                assert!(hold.expires_at > hold.created_at + chrono::Duration::seconds(899));
                (hold.id, available)
            }
            other => panic!("{engine:?}: {other:?}"),
        };
        assert_eq!(available, 70);
        let holdings = store.holdings(alice).await.unwrap().unwrap();
        assert_eq!(
            (holdings.balance, holdings.held, holdings.available()),
            (100, 30, 70)
        );

        // Debits and other holds see only what is available.
        assert_eq!(
            debit(&store, alice, 71).await,
            DebitOutcome::Insufficient { balance: 70 },
            "{engine:?}"
        );
        assert!(matches!(
            hold(&store, alice, 71, 900).await,
            ReserveOutcome::Insufficient { available: 70 }
        ));
        assert!(matches!(
            debit(&store, alice, 60).await,
            DebitOutcome::Debited { .. }
        ));

        // Capture less than held: a debit of what was used, the rest freed.
        match store
            .settle(&settle(&id, Some(Some(20)), alice))
            .await
            .unwrap()
        {
            SettleOutcome::Settled {
                hold,
                transaction,
                balance,
                available,
            } => {
                assert_eq!(hold.status, HoldStatus::Captured);
                assert_eq!(hold.captured, Some(20));
                let transaction = transaction.expect("a debit");
                assert_eq!(
                    (transaction.kind, transaction.amount),
                    (TransactionKind::Debit, -20)
                );
                assert_eq!(
                    hold.transaction_id.as_deref(),
                    Some(transaction.id.as_str())
                );
                assert_eq!(transaction.metadata, Some(json!({ "video": "v-1" })));
                assert_eq!((balance, available), (20, 20), "{engine:?}");
            }
            other => panic!("{engine:?}: {other:?}"),
        }
        // Settled once only.
        for again in [Some(None), None] {
            assert!(
                matches!(
                    store.settle(&settle(&id, again, alice)).await.unwrap(),
                    SettleOutcome::AlreadySettled { .. }
                ),
                "{engine:?}"
            );
        }
        // A release gives it all back and writes nothing.
        let released = held_id(&store, alice, 15, 900).await;
        match store.settle(&settle(&released, None, alice)).await.unwrap() {
            SettleOutcome::Settled {
                hold,
                transaction,
                balance,
                available,
            } => {
                assert_eq!(hold.status, HoldStatus::Released);
                assert!(transaction.is_none());
                assert_eq!((balance, available), (20, 20));
            }
            other => panic!("{other:?}"),
        }
        // Capturing all by default; capturing 0 writes no debit.
        let whole = held_id(&store, alice, 5, 900).await;
        assert!(matches!(
            store
                .settle(&settle(&whole, Some(None), alice))
                .await
                .unwrap(),
            SettleOutcome::Settled {
                balance: 15,
                available: 15,
                ..
            }
        ));
        let nothing = held_id(&store, alice, 5, 900).await;
        assert!(matches!(
            store
                .settle(&settle(&nothing, Some(Some(0)), alice))
                .await
                .unwrap(),
            SettleOutcome::Settled {
                transaction: None,
                balance: 15,
                available: 15,
                ..
            }
        ));
        assert_invariants(&store).await;
    }
}

#[tokio::test]
async fn only_the_principal_that_placed_a_hold_settles_it() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let alice = user(&store, 100).await;
        let id = held_id(&store, alice, 30, 900).await;
        // The user themselves, straight to the REST API, while the tool's work is under way.
        for other in ["user:test", "key:other", "system"] {
            let mut release = settle(&id, None, alice);
            release.principal_must_be = Some(other.into());
            assert_eq!(
                store.settle(&release).await.unwrap(),
                SettleOutcome::UnknownReservation,
                "{engine:?}: {other}"
            );
        }
        assert_eq!(store.holdings(alice).await.unwrap().unwrap().held, 30);
        assert!(matches!(
            store.settle(&settle(&id, None, alice)).await.unwrap(),
            SettleOutcome::Settled { .. }
        ));
        assert_invariants(&store).await;
    }
}

#[tokio::test]
async fn holds_refuse_what_they_cannot_do() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let alice = user(&store, 50).await;
        let bob = user(&store, 50).await;
        let id = held_id(&store, alice, 10, 900).await;
        assert!(matches!(
            store
                .settle(&settle(&id, Some(Some(11)), alice))
                .await
                .unwrap(),
            SettleOutcome::ExceedsHold { held: 10 }
        ));
        assert_eq!(
            store.settle(&settle(&id, None, bob)).await.unwrap(),
            SettleOutcome::UnknownReservation,
            "{engine:?}: another user's hold is not theirs to settle"
        );
        let made_up = format!("res_{}", Uuid::now_v7().simple());
        assert_eq!(
            store.settle(&settle(&made_up, None, alice)).await.unwrap(),
            SettleOutcome::UnknownReservation
        );
        assert!(matches!(
            hold(&store, Uuid::now_v7(), 1, 900).await,
            ReserveOutcome::UnknownUser
        ));
        // Still live after the refusals.
        assert_eq!(store.holdings(alice).await.unwrap().unwrap().held, 10);
        assert_invariants(&store).await;
    }
}

#[tokio::test]
async fn an_expired_hold_frees_itself() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let alice = user(&store, 30).await;
        let lapsing = held_id(&store, alice, 30, 1).await;
        let kept = user(&store, 30).await;
        let other = held_id(&store, kept, 30, 1).await;
        assert_eq!(store.holdings(alice).await.unwrap().unwrap().available(), 0);
        tokio::time::sleep(Duration::from_millis(1200)).await;

        // Reads stop counting it at once, without any call.
        let holdings = store.holdings(alice).await.unwrap().unwrap();
        assert_eq!((holdings.balance, holdings.held), (30, 0), "{engine:?}");
        // A debit that needs the credits frees them on the way.
        assert!(matches!(
            debit(&store, alice, 30).await,
            DebitOutcome::Debited { .. }
        ));
        match store
            .settle(&settle(&lapsing, Some(None), alice))
            .await
            .unwrap()
        {
            SettleOutcome::Expired { hold } => assert_eq!(hold.status, HoldStatus::Expired),
            other => panic!("{engine:?}: {other:?}"),
        }
        // The sweeper frees the rest; a late capture is told so.
        assert!(store.expire_holds().await.unwrap() >= 1);
        assert!(matches!(
            store.settle(&settle(&other, None, kept)).await.unwrap(),
            SettleOutcome::Expired { .. }
        ));
        assert_eq!(store.holdings(kept).await.unwrap().unwrap().available(), 30);
        assert_invariants(&store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_reserves_hold_no_more_than_the_balance() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let alice = user(&store, 500).await;
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { hold(&store, alice, 10, 900).await })
            })
            .collect();
        let mut held = Vec::new();
        let mut refused = 0;
        for task in tasks {
            match task.await.unwrap() {
                ReserveOutcome::Held { hold, available } => {
                    assert!(available >= 0);
                    held.push(hold.id);
                }
                ReserveOutcome::Insufficient { available } => {
                    assert!(available >= 0);
                    refused += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((held.len(), refused), (50, 150), "{engine:?}");
        let holdings = store.holdings(alice).await.unwrap().unwrap();
        assert_eq!((holdings.held, holdings.available()), (500, 0));

        // Settle them all at once, half captured (3 of 10), half released, with debits racing.
        let tasks: Vec<_> = held
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let (store, id) = (store.clone(), id.clone());
                tokio::spawn(async move {
                    let capture = (i % 2 == 0).then_some(Some(3));
                    store.settle(&settle(&id, capture, alice)).await.unwrap()
                })
            })
            .chain((0..20).map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    debit(&store, alice, 5).await;
                    SettleOutcome::UnknownReservation
                })
            }))
            .collect();
        for task in tasks {
            let outcome = task.await.unwrap();
            if let SettleOutcome::Settled { available, .. } = outcome {
                assert!(available >= 0, "{engine:?}");
            }
        }
        let holdings = store.holdings(alice).await.unwrap().unwrap();
        assert_eq!(holdings.held, 0);
        assert!(holdings.balance >= 0);
        // 25 captures of 3 = 75; the debits took what was available, never more.
        let spent_by_debits = 500 - 75 - holdings.balance;
        assert!(
            spent_by_debits % 5 == 0 && spent_by_debits <= 100,
            "{spent_by_debits}"
        );
        assert_invariants(&store).await;
    }
}

#[tokio::test]
async fn an_idempotency_key_holds_once() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let alice = user(&store, 100).await;
        let claim = IdempotencyClaim::new(
            format!("user:{alice}"),
            "hold-1".into(),
            "reserve",
            &json!({ "cost": 30 }),
        );
        let first = store
            .reserve(&reserve(alice, 30, 900), Some(&claim))
            .await
            .unwrap();
        let again = store
            .reserve(&reserve(alice, 30, 900), Some(&claim))
            .await
            .unwrap();
        match (first, again) {
            (Idempotent::Fresh(a), Idempotent::Replayed(b)) => assert_eq!(a, b, "{engine:?}"),
            other => panic!("{engine:?}: {other:?}"),
        }
        assert_eq!(store.holdings(alice).await.unwrap().unwrap().held, 30);
        assert_invariants(&store).await;
    }
}
