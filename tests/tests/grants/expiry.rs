//! Expiry beside holds: what a live hold set aside stays until it settles.

use super::*;
use hub_core::ledger::{Reserve, ReserveOutcome, Settle, SettleOutcome};

fn reserve(user_id: Uuid, cost: i64) -> Reserve {
    Reserve {
        user_id,
        service: ServiceName::parse("sora2").unwrap(),
        cost,
        ttl_seconds: 3600,
        metadata: None,
        request_id: None,
        placed_by: "mcp/user:test".into(),
        app_grant: None,
    }
}

fn capture(id: &str, amount: i64) -> Settle {
    Settle {
        reservation_id: id.to_owned(),
        capture: Some(Some(amount)),
        owner_must_be: None,
        principal_must_be: None,
        request_id: None,
    }
}

#[tokio::test]
async fn a_hold_over_promotional_credits_keeps_them_until_it_settles() {
    for engine in engines() {
        let ledger = Ledger::new(engine).await;
        let user = ledger.user(0).await;
        ledger.grant(user, 100, Some(1), 10).await;
        let hold = match ledger
            .store
            .reserve(&reserve(user, 60), None)
            .await
            .unwrap()
        {
            Idempotent::Fresh(ReserveOutcome::Held { hold, .. }) => hold,
            other => panic!("held, got {other:?}"),
        };

        ledger.pass_days(2);
        // The hold's 60 stay; the free 40 expire.
        assert_eq!(ledger.store.expire_grants().await.unwrap(), 1, "{engine:?}");
        assert_eq!(expired(&ledger.history(user).await), [-40]);
        let holdings = ledger.store.holdings(user).await.unwrap().unwrap();
        assert_eq!((holdings.balance, holdings.held), (60, 60), "{engine:?}");
        assert!(matches!(
            ledger.debit(user, 1).await,
            DebitOutcome::Insufficient { balance: 0 }
        ));
        ledger.assert_audit().await;

        // The capture spends 50 of them; the 10 it leaves are past their end date.
        let settled = ledger.store.settle(&capture(&hold.id, 50)).await.unwrap();
        assert!(
            matches!(settled, SettleOutcome::Settled { balance: 10, .. }),
            "{engine:?}: {settled:?}"
        );
        assert_eq!(ledger.balance(user).await, 0, "{engine:?}: not shown");
        assert_eq!(ledger.store.expire_grants().await.unwrap(), 1);
        assert_eq!(expired(&ledger.history(user).await), [-10, -40]);
        let holdings = ledger.store.holdings(user).await.unwrap().unwrap();
        assert_eq!((holdings.balance, holdings.held), (0, 0));
        ledger.assert_audit().await;
    }
}

#[tokio::test]
async fn nothing_past_its_end_date_is_spent_or_held_before_the_sweep() {
    for engine in engines() {
        let ledger = Ledger::new(engine).await;
        let user = ledger.user(10).await;
        ledger.grant(user, 90, Some(1), 50).await;
        ledger.pass_days(1);
        // No sweep has run: the debit itself expires the grant first.
        assert!(
            matches!(
                ledger.debit(user, 11).await,
                DebitOutcome::Insufficient { balance: 10 }
            ),
            "{engine:?}"
        );
        assert_eq!(expired(&ledger.history(user).await), [-90]);
        let refused = ledger
            .store
            .reserve(&reserve(user, 11), None)
            .await
            .unwrap();
        assert!(matches!(
            refused,
            Idempotent::Fresh(ReserveOutcome::Insufficient { available: 10 })
        ));
        ledger.spend(user, 10).await;
        ledger.assert_audit().await;
    }
}

#[tokio::test]
async fn a_hold_that_expired_unswept_does_not_stand_in_the_way_of_a_debit() {
    for engine in engines() {
        let ledger = Ledger::new(engine).await;
        let user = ledger.user(0).await;
        ledger.grant(user, 100, Some(30), 10).await;
        let mut short = reserve(user, 100);
        short.ttl_seconds = 1;
        let placed = ledger.store.reserve(&short, None).await.unwrap();
        assert!(matches!(
            placed,
            Idempotent::Fresh(ReserveOutcome::Held { .. })
        ));
        // Holds expire by the database's clock, not the ledger's: wait that second out.
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        ledger.spend(user, 100).await;
        assert!(ledger.grants(user).await.is_empty(), "{engine:?}");
        ledger.assert_audit().await;
    }
}
