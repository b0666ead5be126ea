//! The contract every ledger store keeps, run on every engine (SQLite always; PostgreSQL when
//! `HUB_TEST_DATABASE_URL` is set).

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

#[tokio::test]
async fn google_accounts_are_found_and_linked_once() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let new = NewUser::new("g@example.com", "Gee", 10, Role::User)
            .unwrap()
            .with_google_subject("sub-1");
        let created = store.create_user(&new).await.unwrap().unwrap();
        let found = store
            .find_user_by_google_subject("sub-1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, created.user.id, "{engine:?}");
        assert!(
            store
                .find_user_by_google_subject("sub-2")
                .await
                .unwrap()
                .is_none()
        );

        let other = user(&store, 0).await;
        assert!(
            !store.link_google_subject(other, "sub-1").await.unwrap(),
            "sub-1 belongs to Gee"
        );
        assert!(store.link_google_subject(other, "sub-2").await.unwrap());
        assert_eq!(
            store
                .find_user_by_google_subject("sub-2")
                .await
                .unwrap()
                .unwrap()
                .id,
            other
        );
        let twin = NewUser::new("twin@example.com", "Twin", 0, Role::User)
            .unwrap()
            .with_google_subject("sub-2");
        assert!(
            store.create_user(&twin).await.unwrap().is_none(),
            "one user per Google account"
        );
    }
}

#[tokio::test]
async fn service_keys_are_found_by_hash_until_revoked() {
    use hub_core::service_keys::{key_hash, new_key};
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let scopes = vec!["credits:check".to_owned(), "credits:deduct".to_owned()];
        let made = new_key("sora2", &scopes).unwrap();
        store.insert_service_key(&made).await.unwrap();
        let found = store
            .find_service_key(&key_hash(&made.key))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, made.record.id, "{engine:?}");
        assert_eq!(found.scopes, scopes);
        assert!(
            store
                .find_service_key(&key_hash("hub_sk_guess"))
                .await
                .unwrap()
                .is_none()
        );
        let listed = store.list_service_keys().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(
            !serde_json::to_string(&listed).unwrap().contains(&made.key),
            "never the key itself"
        );
        assert!(store.revoke_service_key(&made.record.id).await.unwrap());
        assert!(!store.revoke_service_key(&made.record.id).await.unwrap());
        assert!(
            store
                .find_service_key(&key_hash(&made.key))
                .await
                .unwrap()
                .is_none(),
            "revoked"
        );
        assert!(
            store.list_service_keys().await.unwrap()[0]
                .revoked_at
                .is_some()
        );
    }
}

#[tokio::test]
async fn an_address_is_verified_once_and_its_credits_granted_once() {
    use hub_core::users::EmailVerification;
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let new = NewUser::new("reg@example.com", "Reg", 0, Role::User)
            .unwrap()
            .with_password_hash("$argon2id$placeholder".into())
            .unverified();
        let id = store.create_user(&new).await.unwrap().unwrap().user.id;
        assert_eq!(
            store.email_verified(id).await.unwrap(),
            Some(false),
            "{engine:?}"
        );
        assert_eq!(store.balance(id).await.unwrap(), Some(0));

        // Twenty verifications at once: one grants, every other finds it done.
        let calls = (0..20).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.verify_email(id, 10).await.unwrap() })
        });
        let outcomes: Vec<EmailVerification> = futures_util::future::join_all(calls)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let grants: Vec<i64> = outcomes
            .iter()
            .filter_map(|o| match o {
                EmailVerification::Verified { grant } => Some(grant.as_ref().unwrap().amount),
                _ => None,
            })
            .collect();
        assert_eq!(grants, vec![10], "{engine:?}: {outcomes:?}");
        assert!(
            outcomes.iter().all(|o| matches!(
                o,
                EmailVerification::Verified { .. } | EmailVerification::AlreadyVerified
            )),
            "{outcomes:?}"
        );
        assert_eq!(store.balance(id).await.unwrap(), Some(10));
        assert_eq!(store.email_verified(id).await.unwrap(), Some(true));
        assert!(matches!(
            store.verify_email(id, 10).await.unwrap(),
            EmailVerification::AlreadyVerified
        ));
        assert!(matches!(
            store.verify_email(Uuid::new_v4(), 10).await.unwrap(),
            EmailVerification::UnknownUser
        ));
        assert_eq!(store.email_verified(Uuid::new_v4()).await.unwrap(), None);

        // Users made verified (Google, an operator) are never granted again; neither is a
        // password account Google linked, which counts as verified from then on.
        let google = NewUser::new("google@example.com", "G", 10, Role::User)
            .unwrap()
            .with_google_subject("sub-verified");
        let google = store.create_user(&google).await.unwrap().unwrap().user.id;
        let operator = user(&store, 100).await;
        for id in [google, operator] {
            assert_eq!(store.email_verified(id).await.unwrap(), Some(true));
            assert!(matches!(
                store.verify_email(id, 10).await.unwrap(),
                EmailVerification::AlreadyVerified
            ));
        }
        let unverified = NewUser::new("linked@example.com", "L", 0, Role::User)
            .unwrap()
            .with_password_hash("$argon2id$placeholder".into())
            .unverified();
        let linked = store
            .create_user(&unverified)
            .await
            .unwrap()
            .unwrap()
            .user
            .id;
        assert!(
            store
                .link_google_subject(linked, "sub-linked")
                .await
                .unwrap()
        );
        assert_eq!(store.email_verified(linked).await.unwrap(), Some(true));
        assert!(matches!(
            store.verify_email(linked, 10).await.unwrap(),
            EmailVerification::AlreadyVerified
        ));
        assert_eq!(store.balance(google).await.unwrap(), Some(10));
        assert_eq!(store.balance(operator).await.unwrap(), Some(100));
        assert_eq!(store.balance(linked).await.unwrap(), Some(0));
        assert_invariant(&store).await;
    }
}

#[tokio::test]
async fn a_password_hash_is_replaced() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let new = NewUser::new("pw@example.com", "Pw", 0, Role::User)
            .unwrap()
            .with_password_hash("old-hash".into());
        let id = store.create_user(&new).await.unwrap().unwrap().user.id;
        assert!(
            store.set_password_hash(id, "new-hash").await.unwrap(),
            "{engine:?}"
        );
        let (_, hash) = store
            .find_credentials("pw@example.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hash.as_deref(), Some("new-hash"));
        assert!(!store.set_password_hash(Uuid::new_v4(), "x").await.unwrap());
    }
}
