//! The spending order, and refunds back to where the credits came from.

use super::*;

#[tokio::test]
async fn promotional_credits_are_spent_first_and_the_rest_expires() {
    for engine in engines() {
        let ledger = Ledger::new(engine).await;
        let user = ledger.user(100).await;
        ledger.grant(user, 50, Some(7), 50).await;
        assert_eq!(ledger.balance(user).await, 150);

        ledger.spend(user, 30).await;
        assert_eq!(
            ledger.remaining(user).await,
            [20],
            "{engine:?}: promo first"
        );
        assert_eq!(ledger.balance(user).await, 120);

        ledger.pass_days(8);
        // A read never shows credits past their end date, swept or not.
        assert_eq!(ledger.balance(user).await, 100, "{engine:?}");
        let holdings = ledger.store.holdings(user).await.unwrap().unwrap();
        assert_eq!(holdings.balance, 100);
        assert!(ledger.grants(user).await.is_empty());

        assert_eq!(ledger.store.expire_grants().await.unwrap(), 1);
        assert_eq!(expired(&ledger.history(user).await), [-20], "{engine:?}");
        assert_eq!(ledger.store.expire_grants().await.unwrap(), 0);
        ledger.assert_audit().await;

        ledger.spend(user, 100).await;
        assert!(matches!(
            ledger.debit(user, 1).await,
            DebitOutcome::Insufficient { balance: 0 }
        ));
        ledger.assert_audit().await;
    }
}

#[tokio::test]
async fn priority_beats_end_date_beats_age_and_base_sits_at_the_default() {
    for engine in engines() {
        let ledger = Ledger::new(engine).await;
        let user = ledger.user(5).await;
        let later = ledger.grant(user, 5, Some(30), 50).await;
        let soon = ledger.grant(user, 5, Some(10), 50).await;
        let first = ledger.grant(user, 5, Some(60), 20).await;
        let soon_too = ledger.grant(user, 5, Some(10), 50).await;
        let last = ledger.grant(user, 5, None, 80).await;
        let order: Vec<String> = ledger
            .grants(user)
            .await
            .into_iter()
            .map(|g| g.transaction_id)
            .collect();
        let expected = [&first, &soon, &soon_too, &later, &last].map(|t| t.id.clone());
        assert_eq!(order, expected, "{engine:?}: listed in spending order");

        // Each debit of 5 empties the next source: the grants in order, the base before the
        // grant of priority 80.
        for spent in [&first, &soon, &soon_too, &later] {
            ledger.spend(user, 5).await;
            let left: Vec<String> = ledger
                .grants(user)
                .await
                .into_iter()
                .map(|g| g.transaction_id)
                .collect();
            assert!(!left.contains(&spent.id), "{engine:?}: {spent:?} spent");
        }
        ledger.spend(user, 5).await;
        assert_eq!(
            ledger.remaining(user).await,
            [5],
            "{engine:?}: base before 80"
        );
        ledger.spend(user, 5).await;
        assert!(ledger.grants(user).await.is_empty());
        assert_eq!(ledger.balance(user).await, 0);
        ledger.assert_audit().await;
    }
}

#[tokio::test]
async fn a_refund_goes_back_to_its_grant_or_to_the_base_once_that_has_ended() {
    for engine in engines() {
        let ledger = Ledger::new(engine).await;
        let user = ledger.user(50).await;
        ledger.grant(user, 50, Some(1), 50).await;
        // 50 from the promotion, then 30 from the base.
        let debit = ledger.spend(user, 80).await;
        assert!(ledger.grants(user).await.is_empty());

        // Back in reverse order: the base's 30 first, then 10 to the promotion.
        ledger.refund(&debit, 40).await;
        assert_eq!(ledger.remaining(user).await, [10], "{engine:?}");
        assert_eq!(ledger.balance(user).await, 60);

        // Once the promotion has ended, its part comes back as base credits.
        ledger.pass_days(2);
        ledger.refund(&debit, 40).await;
        assert_eq!(ledger.store.expire_grants().await.unwrap(), 1);
        assert_eq!(expired(&ledger.history(user).await), [-10], "{engine:?}");
        assert_eq!(ledger.balance(user).await, 90);
        ledger.spend(user, 90).await;
        ledger.assert_audit().await;
    }
}

#[tokio::test]
async fn a_downward_adjustment_takes_from_grants_like_a_debit() {
    use hub_core::ledger::admin::{Adjust, AdjustOutcome, AuditEntry};
    for engine in engines() {
        let ledger = Ledger::new(engine).await;
        let user = ledger.user(10).await;
        ledger.grant(user, 20, Some(5), 10).await;
        let adjust = Adjust {
            user_id: user,
            amount: -25,
            reason: "chargeback".into(),
            request_id: None,
        };
        let audit = AuditEntry::on_user("test", "credits.adjust", user);
        let outcome = ledger.store.adjust_audited(&adjust, None, &audit).await;
        assert!(
            matches!(
                outcome.unwrap(),
                Idempotent::Fresh(AdjustOutcome::Adjusted { .. })
            ),
            "{engine:?}"
        );
        assert!(ledger.grants(user).await.is_empty());
        assert_eq!(ledger.balance(user).await, 5);
        ledger.assert_audit().await;
    }
}
