//! An OAuth app's daily spending cap, as every ledger store keeps it, on every engine: counted in
//! the same transaction as the debit or hold, so 200 concurrent debits against a cap that fits 50
//! give exactly 50; a hold counts until it is released, and a capture counts only what it took.

use std::sync::Arc;

use hub_core::Store;
use hub_core::ledger::oauth::NewGrant;
use hub_core::ledger::{
    AppCap, Debit, DebitOutcome, Idempotent, Reserve, ReserveOutcome, ServiceName, Settle,
    SettleOutcome,
};
use hub_core::users::{NewUser, Role};
use hub_test_support::{TestDatabase, engines};
use uuid::Uuid;

async fn user_with_app(store: &Arc<dyn Store>, credits: i64, cap: Option<i64>) -> (Uuid, String) {
    let email = format!("{}@example.com", Uuid::new_v4().simple());
    let new = NewUser::new(&email, "Capped", credits, Role::User).unwrap();
    let user = store.create_user(&new).await.unwrap().unwrap().user.id;
    let grant = store
        .upsert_grant(&NewGrant {
            user_id: user,
            client_id: "oc_test".into(),
            client_name: "Test app".into(),
            scopes: vec!["credits:spend".into()],
            daily_cap: cap,
        })
        .await
        .unwrap();
    (user, grant.id)
}

async fn debit(store: &Arc<dyn Store>, user: Uuid, grant: &str, cost: i64) -> DebitOutcome {
    let debit = Debit {
        user_id: user,
        service: ServiceName::parse("sora2").unwrap(),
        cost,
        metadata: None,
        request_id: None,
        app_grant: Some(grant.to_owned()),
    };
    match store.debit(&debit, None).await.unwrap() {
        Idempotent::Fresh(outcome) => outcome,
        other => panic!("{other:?}"),
    }
}

async fn reserve(store: &Arc<dyn Store>, user: Uuid, grant: &str, cost: i64) -> ReserveOutcome {
    let reserve = Reserve {
        user_id: user,
        service: ServiceName::parse("sora2").unwrap(),
        cost,
        ttl_seconds: 600,
        metadata: None,
        request_id: None,
        placed_by: "mcp/user:test".into(),
        app_grant: Some(grant.to_owned()),
    };
    match store.reserve(&reserve, None).await.unwrap() {
        Idempotent::Fresh(outcome) => outcome,
        other => panic!("{other:?}"),
    }
}

async fn settle(store: &Arc<dyn Store>, id: &str, capture: Option<Option<i64>>) {
    let settled = store
        .settle(&Settle {
            reservation_id: id.to_owned(),
            capture,
            owner_must_be: None,
            principal_must_be: Some("mcp/user:test".into()),
            request_id: None,
        })
        .await
        .unwrap();
    assert!(
        matches!(settled, SettleOutcome::Settled { .. }),
        "{settled:?}"
    );
}

fn held(outcome: ReserveOutcome) -> String {
    match outcome {
        ReserveOutcome::Held { hold, .. } => hold.id,
        other => panic!("held, got {other:?}"),
    }
}

#[tokio::test]
async fn two_hundred_concurrent_debits_against_a_cap_of_fifty_give_exactly_fifty() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let (user, grant) = user_with_app(&store, 1_000, Some(50)).await;
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (store, grant) = (store.clone(), grant.clone());
                tokio::spawn(async move { debit(&store, user, &grant, 1).await })
            })
            .collect();
        let mut debited = 0;
        for task in tasks {
            match task.await.unwrap() {
                DebitOutcome::Debited { .. } => debited += 1,
                DebitOutcome::AppCapReached(AppCap { cap, spent }) => {
                    assert_eq!((cap, spent), (50, 50), "{engine:?}");
                }
                other => panic!("{engine:?}: {other:?}"),
            }
        }
        assert_eq!(debited, 50, "{engine:?}");
        assert_eq!(store.balance(user).await.unwrap(), Some(950), "{engine:?}");
        assert!(store.audit().await.unwrap().discrepancies.is_empty());
        // The cap is the app's, not the user's: the same user spends on without it.
        let (_, uncapped) = (user, {
            let g = store
                .upsert_grant(&NewGrant {
                    user_id: user,
                    client_id: "oc_other".into(),
                    client_name: "Other".into(),
                    scopes: vec!["credits:spend".into()],
                    daily_cap: None,
                })
                .await
                .unwrap();
            g.id
        });
        assert!(matches!(
            debit(&store, user, &uncapped, 100).await,
            DebitOutcome::Debited { .. }
        ));
    }
}

#[tokio::test]
async fn holds_count_against_the_cap_until_released_and_captures_count_what_they_took() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let (user, grant) = user_with_app(&store, 1_000, Some(30)).await;
        let first = held(reserve(&store, user, &grant, 20).await);
        assert_eq!(
            reserve(&store, user, &grant, 20).await,
            ReserveOutcome::AppCapReached(AppCap { cap: 30, spent: 20 }),
            "{engine:?}"
        );
        assert!(matches!(
            debit(&store, user, &grant, 11).await,
            DebitOutcome::AppCapReached(_)
        ));
        settle(&store, &first, None).await;
        let second = held(reserve(&store, user, &grant, 20).await);
        settle(&store, &second, Some(Some(5))).await;
        // 5 captured: 25 left today.
        let third = held(reserve(&store, user, &grant, 25).await);
        assert!(
            matches!(
                debit(&store, user, &grant, 1).await,
                DebitOutcome::AppCapReached(_)
            ),
            "{engine:?}"
        );
        settle(&store, &third, Some(None)).await;
        assert_eq!(
            store.balance(user).await.unwrap(),
            Some(1_000 - 5 - 25),
            "{engine:?}"
        );
        // Short of credits: the cap's charge is given back with the refusal.
        let (poor, poor_grant) = user_with_app(&store, 3, Some(10)).await;
        assert!(matches!(
            debit(&store, poor, &poor_grant, 5).await,
            DebitOutcome::Insufficient { .. }
        ));
        assert!(
            matches!(
                debit(&store, poor, &poor_grant, 3).await,
                DebitOutcome::Debited { .. }
            ),
            "{engine:?}: the refused debit was not counted"
        );
        assert!(store.audit().await.unwrap().discrepancies.is_empty());
    }
}
