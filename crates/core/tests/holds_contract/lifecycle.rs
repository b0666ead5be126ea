//! A hold's life: set aside until captured or released, settled only by its principal, refused
//! what it cannot do, and freed when it expires.

use super::*;

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
