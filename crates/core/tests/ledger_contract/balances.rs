//! Balances: the opening grant, debits of exactly the cost or nothing, grants and balances up to
//! the maximum, and concurrent debits that never overdraw.

use super::*;

#[tokio::test]
async fn users_start_with_their_credits_as_a_grant() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let new = NewUser::new("  Alice@Example.COM ", "Alice", 100, Role::User).unwrap();
        let created = store.create_user(&new).await.unwrap().unwrap();
        assert_eq!(created.user.email, "alice@example.com", "{engine:?}");
        assert_eq!(created.balance, 100);
        assert_eq!(created.user.id.get_version_num(), 7, "user ids are UUIDv7");
        let grant = created.grant.unwrap();
        assert_eq!(
            (grant.kind, grant.amount, grant.balance_after),
            (TransactionKind::Grant, 100, 100)
        );
        assert_eq!(store.balance(created.user.id).await.unwrap(), Some(100));
        assert!(
            store.create_user(&new).await.unwrap().is_none(),
            "the email is taken"
        );
        assert_eq!(
            store
                .find_user_by_email("ALICE@example.com")
                .await
                .unwrap()
                .unwrap()
                .id,
            created.user.id
        );
        assert_eq!(
            store.permissions(created.user.id).await.unwrap(),
            vec!["credits:check".to_owned(), "credits:deduct".to_owned()]
        );
        store
            .assign_role(created.user.id, Role::Admin)
            .await
            .unwrap();
        assert!(
            store
                .permissions(created.user.id)
                .await
                .unwrap()
                .contains(&"credits:grant".to_owned())
        );
        assert_invariant(&store).await;
    }
}

#[tokio::test]
async fn a_debit_takes_exactly_the_cost_or_nothing() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let alice = user(&store, 100).await;
        let DebitOutcome::Debited { transaction } = fresh_debit(&store, alice, 30).await else {
            panic!("{engine:?}: expected a debit");
        };
        assert_eq!(transaction.amount, -30);
        assert_eq!(
            (transaction.balance_before, transaction.balance_after),
            (100, 70)
        );
        assert_eq!(transaction.kind, TransactionKind::Debit);
        assert_eq!(
            transaction.service.as_deref(),
            Some("sora2-video-generation")
        );
        assert_eq!(transaction.metadata, Some(json!({ "task": "t-1" })));
        assert!(transaction.id.starts_with("txn_"));

        assert_eq!(
            fresh_debit(&store, alice, 71).await,
            DebitOutcome::Insufficient { balance: 70 }
        );
        assert_eq!(
            store.balance(alice).await.unwrap(),
            Some(70),
            "a refused debit changes nothing"
        );
        assert!(matches!(
            fresh_debit(&store, alice, 70).await,
            DebitOutcome::Debited { .. }
        ));
        assert_eq!(store.balance(alice).await.unwrap(), Some(0));
        assert_eq!(
            fresh_debit(&store, alice, 1).await,
            DebitOutcome::Insufficient { balance: 0 }
        );
        assert_eq!(
            fresh_debit(&store, Uuid::now_v7(), 1).await,
            DebitOutcome::UnknownUser
        );
        assert_eq!(store.balance(Uuid::now_v7()).await.unwrap(), None);
        assert_invariant(&store).await;
    }
}

#[tokio::test]
async fn grants_add_credits_up_to_the_maximum() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let alice = user(&store, 0).await;
        let grant = |user_id, amount| Grant {
            user_id,
            amount,
            reason: "top-up".into(),
            request_id: None,
            terms: hub_core::ledger::grants::GrantTerms::default(),
        };
        let Idempotent::Fresh(GrantOutcome::Granted { transaction }) =
            store.grant(&grant(alice, 50), None).await.unwrap()
        else {
            panic!("{engine:?}: expected a grant");
        };
        assert_eq!(
            (
                transaction.kind,
                transaction.amount,
                transaction.balance_after
            ),
            (TransactionKind::Grant, 50, 50)
        );
        assert_eq!(transaction.reason.as_deref(), Some("top-up"));
        assert_eq!(
            store.grant(&grant(Uuid::now_v7(), 5), None).await.unwrap(),
            Idempotent::Fresh(GrantOutcome::UnknownUser)
        );
        assert_eq!(store.balance(alice).await.unwrap(), Some(50));
        assert_invariant(&store).await;
    }
}

#[tokio::test]
async fn a_balance_never_passes_its_maximum() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let alice = user(&store, 30).await;
        let DebitOutcome::Debited { transaction: spent } = fresh_debit(&store, alice, 30).await
        else {
            panic!("expected a debit");
        };
        let step = 1_000_000_000_000;
        let grant = Grant {
            user_id: alice,
            amount: step,
            reason: "fill".into(),
            request_id: None,
            terms: hub_core::ledger::grants::GrantTerms::default(),
        };
        for _ in 0..(MAX_BALANCE / step) {
            assert!(matches!(
                store.grant(&grant, None).await.unwrap(),
                Idempotent::Fresh(GrantOutcome::Granted { .. })
            ));
        }
        assert_eq!(store.balance(alice).await.unwrap(), Some(MAX_BALANCE));
        let one = Grant { amount: 1, ..grant };
        assert_eq!(
            store.grant(&one, None).await.unwrap(),
            Idempotent::Fresh(GrantOutcome::BalanceLimit),
            "{engine:?}"
        );
        assert_eq!(store.balance(alice).await.unwrap(), Some(MAX_BALANCE));
        assert_eq!(
            store.refund(&refund(&spent.id, None), None).await.unwrap(),
            Idempotent::Fresh(RefundOutcome::BalanceLimit),
            "{engine:?}: a refund never passes the maximum either"
        );
        let partial = store
            .refund(&refund(&spent.id, Some(1)), None)
            .await
            .unwrap();
        assert_eq!(
            partial,
            Idempotent::Fresh(RefundOutcome::BalanceLimit),
            "and changed nothing"
        );
        assert_invariant(&store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_debits_on_one_account_never_overdraw() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let alice = user(&store, 3000).await;
        let tasks = (0..200).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.debit(&debit(alice, 30), None).await.unwrap() })
        });
        let outcomes = futures_util::future::join_all(tasks).await;
        let debited = outcomes
            .iter()
            .filter(|o| {
                matches!(
                    o.as_ref().unwrap(),
                    Idempotent::Fresh(DebitOutcome::Debited { .. })
                )
            })
            .count();
        assert_eq!(debited, 100, "{engine:?}");
        assert_eq!(store.balance(alice).await.unwrap(), Some(0));
        assert_invariant(&store).await;
    }
}
