//! Requests carried out once under an idempotency key, and the history pages, newest first.

use super::*;

#[tokio::test]
async fn an_idempotency_key_carries_out_its_request_once() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let alice = user(&store, 100).await;
        let claim = |key: &str, cost: i64| {
            IdempotencyClaim::new(
                format!("user:{alice}"),
                key.into(),
                "deduct",
                &json!({ "cost": cost }),
            )
        };
        let first = store
            .debit(&debit(alice, 30), Some(&claim("k1", 30)))
            .await
            .unwrap();
        let Idempotent::Fresh(DebitOutcome::Debited { transaction }) = first else {
            panic!("{engine:?}: expected a fresh debit, got {first:?}");
        };
        let again = store
            .debit(&debit(alice, 30), Some(&claim("k1", 30)))
            .await
            .unwrap();
        assert_eq!(
            again,
            Idempotent::Replayed(DebitOutcome::Debited {
                transaction: transaction.clone()
            })
        );
        assert_eq!(
            store.balance(alice).await.unwrap(),
            Some(70),
            "charged once"
        );
        assert_eq!(
            store
                .debit(&debit(alice, 40), Some(&claim("k1", 40)))
                .await
                .unwrap(),
            Idempotent::KeyReused
        );
        // Another caller's key of the same name is another key.
        let other = IdempotencyClaim::new(
            "user:someone-else".into(),
            "k1".into(),
            "deduct",
            &json!({ "cost": 30 }),
        );
        assert!(matches!(
            store.debit(&debit(alice, 30), Some(&other)).await.unwrap(),
            Idempotent::Fresh(_)
        ));
        // A refused debit is remembered as refused.
        let refused = store
            .debit(&debit(alice, 1000), Some(&claim("k2", 1000)))
            .await
            .unwrap();
        assert_eq!(
            refused,
            Idempotent::Fresh(DebitOutcome::Insufficient { balance: 40 })
        );
        store
            .grant(
                &Grant {
                    user_id: alice,
                    amount: 5000,
                    reason: "top-up".into(),
                    request_id: None,
                    terms: hub_core::ledger::grants::GrantTerms::default(),
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            store
                .debit(&debit(alice, 1000), Some(&claim("k2", 1000)))
                .await
                .unwrap(),
            Idempotent::Replayed(DebitOutcome::Insufficient { balance: 40 })
        );
        // Keys are forgotten only after their retention.
        assert_eq!(
            store
                .purge_idempotency_keys(chrono::Utc::now() - chrono::Duration::hours(24))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .purge_idempotency_keys(chrono::Utc::now() + chrono::Duration::seconds(1))
                .await
                .unwrap(),
            3
        );
        assert!(matches!(
            store
                .debit(&debit(alice, 30), Some(&claim("k1", 30)))
                .await
                .unwrap(),
            Idempotent::Fresh(_)
        ));
        assert_invariant(&store).await;
    }
}

#[tokio::test]
async fn history_pages_newest_first() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let alice = user(&store, 100).await;
        for _ in 0..4 {
            fresh_debit(&store, alice, 5).await;
        }
        let first = store.transactions(alice, 2, None).await.unwrap().unwrap();
        assert_eq!(first.transactions.len(), 2);
        assert_eq!(
            first.transactions[0].balance_after, 80,
            "{engine:?}: newest first"
        );
        assert_eq!(first.transactions[1].balance_after, 85);
        let second = store
            .transactions(alice, 2, first.next_cursor.as_deref())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            second
                .transactions
                .iter()
                .map(|t| t.balance_after)
                .collect::<Vec<_>>(),
            vec![90, 95]
        );
        let third = store
            .transactions(alice, 2, second.next_cursor.as_deref())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(third.transactions.len(), 1);
        assert_eq!(third.transactions[0].kind, TransactionKind::Grant);
        assert_eq!(third.next_cursor, None);
        assert!(
            store
                .transactions(Uuid::now_v7(), 2, None)
                .await
                .unwrap()
                .is_none()
        );
    }
}
