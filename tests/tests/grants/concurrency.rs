//! Many debits at once over an account with mixed grants.

use super::*;
use futures_util::future::join_all;

#[tokio::test]
async fn a_500_way_race_over_mixed_grants_spends_exactly_what_there_was() {
    for engine in engines() {
        let ledger = Ledger::new(engine).await;
        let user = ledger.user(200).await;
        ledger.grant(user, 150, Some(1), 10).await;
        ledger.grant(user, 150, Some(2), 50).await;
        ledger.grant(user, 97, None, 90).await;
        let total = 200 + 150 + 150 + 97;
        let costs: Vec<i64> = (0..500).map(|i| 1 + i % 3).collect();
        let outcomes = join_all(costs.iter().map(|&cost| {
            let store = ledger.store.clone();
            async move {
                let outcome = store.debit(&debit(user, cost), None).await.unwrap();
                (cost, outcome)
            }
        }))
        .await;
        let spent: i64 = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Idempotent::Fresh(DebitOutcome::Debited { .. })))
            .map(|(cost, _)| cost)
            .sum();
        let refused = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Idempotent::Fresh(DebitOutcome::Insufficient { .. })))
            .count();
        assert_eq!(spent + ledger.balance(user).await, total, "{engine:?}");
        assert!(refused > 0 && ledger.balance(user).await < 3, "{engine:?}");
        // Whatever is left sits in the grant spent last.
        let left: i64 = ledger.remaining(user).await.iter().sum();
        assert_eq!(left, ledger.balance(user).await);
        ledger.assert_audit().await;
    }
}

#[tokio::test]
async fn refunds_racing_debits_keep_the_grants_and_the_audit_whole() {
    for engine in engines() {
        let ledger = Ledger::new(engine).await;
        let user = ledger.user(100).await;
        ledger.grant(user, 100, Some(3), 20).await;
        let mut debits = Vec::new();
        for _ in 0..20 {
            debits.push(ledger.spend(user, 5).await);
        }
        // 100 spent, all from the promotion: it is empty, the base whole.
        assert!(ledger.grants(user).await.is_empty());
        let refunds = debits.iter().map(|d| {
            let store = ledger.store.clone();
            let refund = Refund {
                transaction_id: d.id.clone(),
                amount: None,
                reason: "failed".into(),
                request_id: None,
                owner_must_be: None,
                owner_must_not_be: None,
            };
            async move { store.refund(&refund, None).await.unwrap() }
        });
        let spends = (0..20).map(|_| {
            let store = ledger.store.clone();
            async move { store.debit(&debit(user, 5), None).await.unwrap() }
        });
        let (_, spent) = tokio::join!(join_all(refunds), join_all(spends));
        let debited = spent
            .iter()
            .filter(|o| matches!(o, Idempotent::Fresh(DebitOutcome::Debited { .. })))
            .count() as i64;
        assert_eq!(ledger.balance(user).await, 200 - debited * 5, "{engine:?}");
        ledger.assert_audit().await;
    }
}

#[tokio::test]
async fn sweeps_racing_debits_past_the_end_date_never_spend_expired_credits() {
    for engine in engines() {
        let ledger = Ledger::new(engine).await;
        let user = ledger.user(100).await;
        ledger.grant(user, 300, Some(1), 10).await;
        ledger.pass_days(1);
        let debits = (0..200).map(|_| {
            let store = ledger.store.clone();
            async move { store.debit(&debit(user, 1), None).await.unwrap() }
        });
        let sweeps = (0..5).map(|_| {
            let store = ledger.store.clone();
            async move { store.expire_grants().await.unwrap() }
        });
        let (spent, _) = tokio::join!(join_all(debits), join_all(sweeps));
        let debited = spent
            .iter()
            .filter(|o| matches!(o, Idempotent::Fresh(DebitOutcome::Debited { .. })))
            .count() as i64;
        // Only the base could be spent; the promotion left whole, once.
        assert_eq!(debited, 100, "{engine:?}");
        assert_eq!(expired(&ledger.history(user).await), [-300], "{engine:?}");
        assert_eq!(ledger.balance(user).await, 0);
        ledger.assert_audit().await;
    }
}
