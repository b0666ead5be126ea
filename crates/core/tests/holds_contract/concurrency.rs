//! Holds under concurrency and retries: two hundred reserves at once, and an idempotency key.

use super::*;

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
