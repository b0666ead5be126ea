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

fn release(id: &str) -> Settle {
    Settle {
        capture: None,
        ..capture(id, 0)
    }
}

impl Ledger {
    async fn hold(&self, user: Uuid, cost: i64) -> String {
        match self
            .store
            .reserve(&reserve(user, cost), None)
            .await
            .unwrap()
        {
            Idempotent::Fresh(ReserveOutcome::Held { hold, .. }) => hold.id,
            other => panic!("held {cost}, got {other:?}"),
        }
    }

    async fn settle(&self, settle: &Settle) -> i64 {
        match self.store.settle(settle).await.unwrap() {
            SettleOutcome::Settled { balance, .. } => balance,
            other => panic!("settled, got {other:?}"),
        }
    }

    /// The account's balance and `held` as stored (a read shows the same once swept).
    async fn holdings(&self, user: Uuid) -> (i64, i64) {
        let holdings = self.store.holdings(user).await.unwrap().unwrap();
        (holdings.balance, holdings.held)
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

/// 50 paid credits and a promotion of 100 spent first, ending tomorrow.
async fn paid_and_promoted(ledger: &Ledger) -> Uuid {
    let user = ledger.user(50).await;
    ledger.grant(user, 100, Some(1), 10).await;
    user
}

#[tokio::test]
async fn a_hold_over_a_whole_promotion_keeps_it_and_the_capture_spends_it_not_the_paid_credits() {
    for engine in engines() {
        let ledger = Ledger::new(engine).await;
        let user = paid_and_promoted(&ledger).await;
        let hold = ledger.hold(user, 100).await;

        ledger.pass_days(2);
        // All of the promotion sits under the hold: nothing expires, the paid 50 stay free.
        assert_eq!(ledger.store.expire_grants().await.unwrap(), 0, "{engine:?}");
        assert_eq!(expired(&ledger.history(user).await), [0; 0], "{engine:?}");
        assert_eq!(ledger.holdings(user).await, (150, 100), "{engine:?}");
        ledger.assert_audit().await;

        assert_eq!(ledger.settle(&capture(&hold, 100)).await, 50, "{engine:?}");
        assert_eq!(ledger.store.expire_grants().await.unwrap(), 0, "{engine:?}");
        assert_eq!(ledger.balance(user).await, 50, "{engine:?}");
        assert!(matches!(
            ledger.debit(user, 51).await,
            DebitOutcome::Insufficient { balance: 50 }
        ));
        ledger.spend(user, 50).await;
        ledger.assert_audit().await;
    }
}

#[tokio::test]
async fn a_hold_over_part_of_a_promotion_lets_the_rest_expire_and_the_capture_spends_what_it_kept()
{
    for engine in engines() {
        let ledger = Ledger::new(engine).await;
        let user = paid_and_promoted(&ledger).await;
        let hold = ledger.hold(user, 60).await;

        ledger.pass_days(2);
        assert_eq!(ledger.store.expire_grants().await.unwrap(), 1, "{engine:?}");
        assert_eq!(expired(&ledger.history(user).await), [-40], "{engine:?}");
        assert_eq!(ledger.holdings(user).await, (110, 60), "{engine:?}");
        ledger.assert_audit().await;

        assert_eq!(ledger.settle(&capture(&hold, 60)).await, 50, "{engine:?}");
        assert_eq!(ledger.store.expire_grants().await.unwrap(), 0, "{engine:?}");
        assert_eq!(expired(&ledger.history(user).await), [-40], "{engine:?}");
        assert_eq!(ledger.holdings(user).await, (50, 0), "{engine:?}");
        ledger.assert_audit().await;
    }
}

#[tokio::test]
async fn a_hold_released_after_the_end_date_lets_the_next_sweep_expire_the_rest() {
    for engine in engines() {
        let ledger = Ledger::new(engine).await;
        let user = paid_and_promoted(&ledger).await;
        let hold = ledger.hold(user, 100).await;

        ledger.pass_days(2);
        assert_eq!(ledger.store.expire_grants().await.unwrap(), 0, "{engine:?}");
        assert_eq!(ledger.settle(&release(&hold)).await, 150, "{engine:?}");
        assert_eq!(ledger.balance(user).await, 50, "{engine:?}: not shown");
        assert_eq!(ledger.store.expire_grants().await.unwrap(), 1, "{engine:?}");
        assert_eq!(expired(&ledger.history(user).await), [-100], "{engine:?}");
        assert_eq!(ledger.holdings(user).await, (50, 0), "{engine:?}");
        ledger.assert_audit().await;
    }
}

#[tokio::test]
async fn a_debit_beside_a_hold_never_spends_what_the_hold_kept_from_expiry() {
    for engine in engines() {
        let ledger = Ledger::new(engine).await;
        let user = paid_and_promoted(&ledger).await;
        let hold = ledger.hold(user, 100).await;

        ledger.pass_days(2);
        // The free 50 are the paid credits; the promotion is only the hold's to spend.
        ledger.spend(user, 50).await;
        assert_eq!(ledger.holdings(user).await, (100, 100), "{engine:?}");
        ledger.settle(&release(&hold)).await;
        assert_eq!(ledger.store.expire_grants().await.unwrap(), 1, "{engine:?}");
        assert_eq!(expired(&ledger.history(user).await), [-100], "{engine:?}");
        assert_eq!(ledger.holdings(user).await, (0, 0), "{engine:?}");
        ledger.assert_audit().await;
    }
}

#[tokio::test]
async fn the_sweep_frees_holds_that_expired_unswept_before_it_counts_what_they_keep() {
    for engine in engines() {
        let ledger = Ledger::new(engine).await;
        let user = paid_and_promoted(&ledger).await;
        let mut short = reserve(user, 100);
        short.ttl_seconds = 1;
        let placed = ledger.store.reserve(&short, None).await.unwrap();
        assert!(matches!(
            placed,
            Idempotent::Fresh(ReserveOutcome::Held { .. })
        ));
        // Holds expire by the database's clock, not the ledger's: wait that second out.
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        ledger.pass_days(2);
        // No hold sweep has run: the grant sweep frees the hold first, on every engine.
        assert_eq!(ledger.store.expire_grants().await.unwrap(), 1, "{engine:?}");
        assert_eq!(expired(&ledger.history(user).await), [-100], "{engine:?}");
        assert_eq!(ledger.holdings(user).await, (50, 0), "{engine:?}");
        ledger.assert_audit().await;
    }
}
