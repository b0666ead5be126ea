//! Refunds: never more than their debit, and only by whoever owns the debit.

use super::*;

#[tokio::test]
async fn refunds_never_exceed_their_debit() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let alice = user(&store, 100).await;
        let DebitOutcome::Debited { transaction: spent } = fresh_debit(&store, alice, 30).await
        else {
            panic!("expected a debit");
        };
        let r = store
            .refund(&refund(&spent.id, Some(10)), None)
            .await
            .unwrap();
        let Idempotent::Fresh(RefundOutcome::Refunded {
            transaction,
            remaining,
        }) = r
        else {
            panic!("{engine:?}: expected a refund, got {r:?}");
        };
        assert_eq!(
            (transaction.amount, remaining, transaction.balance_after),
            (10, 20, 80)
        );
        assert_eq!(transaction.refund_of.as_deref(), Some(spent.id.as_str()));
        assert_eq!(transaction.kind, TransactionKind::Refund);
        assert_eq!(
            store
                .refund(&refund(&spent.id, Some(21)), None)
                .await
                .unwrap(),
            Idempotent::Fresh(RefundOutcome::ExceedsRemaining { remaining: 20 })
        );
        let Idempotent::Fresh(RefundOutcome::Refunded {
            transaction,
            remaining,
        }) = store.refund(&refund(&spent.id, None), None).await.unwrap()
        else {
            panic!("expected the rest refunded");
        };
        assert_eq!(
            (transaction.amount, remaining, transaction.balance_after),
            (20, 0, 100)
        );
        assert_eq!(
            store.refund(&refund(&spent.id, None), None).await.unwrap(),
            Idempotent::Fresh(RefundOutcome::AlreadyRefunded)
        );
        assert_eq!(
            store.refund(&refund("txn_nope", None), None).await.unwrap(),
            Idempotent::Fresh(RefundOutcome::UnknownTransaction)
        );
        assert_eq!(
            store
                .refund(&refund(&transaction.id, None), None)
                .await
                .unwrap(),
            Idempotent::Fresh(RefundOutcome::NotADebit),
            "a refund is not refundable"
        );
        assert_invariant(&store).await;
    }
}

#[tokio::test]
async fn refunds_respect_who_owns_the_debit() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let alice = user(&store, 100).await;
        let bob = user(&store, 100).await;
        let DebitOutcome::Debited { transaction: spent } = fresh_debit(&store, alice, 30).await
        else {
            panic!("expected a debit");
        };
        let mut for_bob = refund(&spent.id, None);
        for_bob.owner_must_be = Some(bob);
        assert_eq!(
            store.refund(&for_bob, None).await.unwrap(),
            Idempotent::Fresh(RefundOutcome::UnknownTransaction),
            "{engine:?}: a key acting for Bob does not see Alice's debit"
        );
        let mut by_alice = refund(&spent.id, None);
        by_alice.owner_must_not_be = Some(alice);
        assert_eq!(
            store.refund(&by_alice, None).await.unwrap(),
            Idempotent::Fresh(RefundOutcome::OwnDebit)
        );
        assert_eq!(store.balance(alice).await.unwrap(), Some(70));
    }
}
