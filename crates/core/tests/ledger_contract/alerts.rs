//! Low-balance alerts and the webhook outbox, on every engine: events are written with the ledger
//! change only when someone listens; credits.low and credits.depleted fire once per crossing of
//! the available balance and re-arm when credits come back; a refused debit fires depleted once;
//! 50 concurrent debits across both levels fire each once; deliveries are claimed once and kept.

use std::time::Duration;

use hub_core::ledger::webhooks::{
    AlertSetting, Attempt, Channel, DeliveryFilter, EVENT_TYPES, Threshold, new_endpoint,
};
use hub_core::ledger::{Reserve, Settle};

use super::*;

async fn listen(store: &Arc<dyn Store>, events: &[&str]) -> String {
    let events: Vec<String> = events.iter().map(|e| (*e).to_owned()).collect();
    let made = new_endpoint("http://127.0.0.1:9/hook", &events).unwrap();
    store
        .insert_endpoint(&made, &made.created_by("cli"))
        .await
        .unwrap();
    made.endpoint.id
}

/// The types of `user`'s events delivered to webhooks, oldest first (after fanning out).
async fn fired(store: &Arc<dyn Store>, user: Uuid) -> Vec<String> {
    while store.fan_out(100).await.unwrap() > 0 {}
    let filter = DeliveryFilter {
        limit: 500,
        ..Default::default()
    };
    let mut all = store.list_deliveries(&filter).await.unwrap();
    all.retain(|d| d.user_id == Some(user) && d.channel == "webhook");
    all.reverse();
    all.into_iter().map(|d| d.event_type).collect()
}

async fn grant(store: &Arc<dyn Store>, user: Uuid, amount: i64) {
    let grant = Grant {
        user_id: user,
        amount,
        reason: "top-up".into(),
        request_id: None,
        terms: hub_core::ledger::grants::GrantTerms::default(),
    };
    assert!(matches!(
        store.grant(&grant, None).await.unwrap(),
        Idempotent::Fresh(GrantOutcome::Granted { .. })
    ));
}

#[tokio::test]
async fn nothing_is_written_when_nobody_listens() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let alice = user(&store, 100).await;
        fresh_debit(&store, alice, 100).await;
        assert_eq!(store.fan_out(100).await.unwrap(), 0, "{engine:?}: no event");
        listen(&store, &["payment.succeeded"]).await;
        grant(&store, alice, 10).await;
        fresh_debit(&store, alice, 10).await;
        assert_eq!(
            store.fan_out(100).await.unwrap(),
            0,
            "{engine:?}: none asked"
        );
    }
}

#[tokio::test]
async fn each_level_fires_once_per_crossing_and_rearms_when_credits_come_back() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        listen(&store, &EVENT_TYPES).await;
        let alice = user(&store, 100).await; // threshold: 20 % of 100
        for cost in [70, 15, 5, 10] {
            assert!(matches!(
                fresh_debit(&store, alice, cost).await,
                DebitOutcome::Debited { .. }
            ));
        }
        for _ in 0..3 {
            let refused = fresh_debit(&store, alice, 1).await;
            assert!(matches!(refused, DebitOutcome::Insufficient { .. }));
        }
        assert_eq!(
            fired(&store, alice).await,
            ["credits.granted", "credits.low", "credits.depleted"],
            "{engine:?}: 30 is above 20, 15 crosses it, 0 is depleted, refusals add nothing"
        );
        grant(&store, alice, 50).await; // threshold: 10
        let DebitOutcome::Debited { transaction } = fresh_debit(&store, alice, 45).await else {
            panic!("debited")
        };
        store
            .refund(&refund(&transaction.id, Some(45)), None)
            .await
            .unwrap();
        fresh_debit(&store, alice, 45).await;
        fresh_debit(&store, alice, 500).await; // refused: depleted, once
        fresh_debit(&store, alice, 500).await;
        assert_eq!(
            fired(&store, alice).await[3..],
            [
                "credits.granted",
                "credits.low",
                "credits.refunded",
                "credits.low",
                "credits.depleted"
            ],
            "{engine:?}"
        );
        assert_invariant(&store).await;
    }
}

#[tokio::test]
async fn holds_count_against_the_available_balance() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        listen(&store, &["credits.low", "credits.depleted"]).await;
        let bob = user(&store, 100).await;
        let reserve = Reserve {
            user_id: bob,
            service: ServiceName::parse("sora2").unwrap(),
            cost: 90,
            ttl_seconds: 60,
            metadata: None,
            request_id: None,
            placed_by: "test".into(),
            app_grant: None,
        };
        let Idempotent::Fresh(hub_core::ledger::ReserveOutcome::Held { hold, .. }) =
            store.reserve(&reserve, None).await.unwrap()
        else {
            panic!("held")
        };
        assert_eq!(fired(&store, bob).await, ["credits.low"], "{engine:?}");
        let release = Settle {
            reservation_id: hold.id.clone(),
            capture: None,
            request_id: None,
            owner_must_be: None,
            principal_must_be: None,
        };
        store.settle(&release).await.unwrap();
        fresh_debit(&store, bob, 85).await; // re-armed by the release: low again
        assert_eq!(
            fired(&store, bob).await,
            ["credits.low", "credits.low"],
            "{engine:?}"
        );
    }
}

#[tokio::test]
async fn concurrent_debits_fire_each_level_exactly_once() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        listen(&store, &["credits.low", "credits.depleted"]).await;
        let carol = user(&store, 50).await; // threshold 10
        let mut debits = tokio::task::JoinSet::new();
        for _ in 0..60 {
            let store = store.clone();
            debits.spawn(async move { store.debit(&debit(carol, 1), None).await.unwrap() });
        }
        while debits.join_next().await.is_some() {}
        assert_eq!(store.balance(carol).await.unwrap(), Some(0));
        assert_eq!(
            fired(&store, carol).await,
            ["credits.low", "credits.depleted"],
            "{engine:?}"
        );
        assert_invariant(&store).await;
    }
}

/// A refused debit fires credits.depleted while credits are left; saving the alert setting again
/// (or another threshold) must not re-arm it, or each save and refusal would fire it once more.
#[tokio::test]
async fn saving_the_alert_setting_does_not_fire_depleted_again() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        listen(&store, &["credits.depleted", "credits.low"]).await;
        let erin = user(&store, 100).await;
        fresh_debit(&store, erin, 500).await; // refused, 100 left: depleted
        assert_eq!(
            fired(&store, erin).await,
            ["credits.depleted"],
            "{engine:?}"
        );
        for threshold in [
            Threshold::Credits(5),
            Threshold::Percent(50),
            Threshold::Credits(5),
        ] {
            let setting = AlertSetting {
                email: false,
                threshold,
            };
            assert!(store.set_alert_setting(erin, &setting).await.unwrap());
            fresh_debit(&store, erin, 500).await; // refused again
        }
        assert_eq!(
            fired(&store, erin).await,
            ["credits.depleted"],
            "{engine:?}: saves re-arm nothing"
        );
        // Credits coming back re-arm it, as ever.
        grant(&store, erin, 10).await;
        fresh_debit(&store, erin, 500).await;
        assert_eq!(
            fired(&store, erin).await,
            ["credits.depleted", "credits.depleted"],
            "{engine:?}"
        );
        assert_invariant(&store).await;
    }
}

#[tokio::test]
async fn a_users_email_alert_uses_their_threshold_and_goes_to_their_address() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let dave = user(&store, 1000).await;
        let setting = AlertSetting {
            email: true,
            threshold: Threshold::Credits(300),
        };
        assert!(store.set_alert_setting(dave, &setting).await.unwrap());
        let state = store.alert_setting(dave).await.unwrap().unwrap();
        assert_eq!((state.setting, state.low_at), (setting, 300));
        fresh_debit(&store, dave, 600).await; // 400: above
        assert_eq!(store.fan_out(10).await.unwrap(), 0, "{engine:?}");
        fresh_debit(&store, dave, 100).await; // 300: at the threshold
        assert_eq!(store.fan_out(10).await.unwrap(), 1, "{engine:?}");
        let lease = Duration::from_secs(60);
        let claimed = store
            .claim_deliveries(Channel::Email, 10, lease)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "{engine:?}");
        let email = store.find_user(dave).await.unwrap().unwrap().email;
        assert_eq!(
            (claimed[0].target.as_str(), claimed[0].event_type.as_str()),
            (email.as_str(), "credits.low")
        );
        assert_eq!(claimed[0].data["available"], 300);
        assert!(
            store
                .claim_deliveries(Channel::Email, 10, lease)
                .await
                .unwrap()
                .is_empty(),
            "{engine:?}: leased to the first claimant"
        );
        let retry = Attempt {
            status: None,
            error: Some("smtp down".into()),
            retry: Some(Some(chrono::Utc::now() - chrono::Duration::seconds(1))),
        };
        store.record_attempt(claimed[0].id, &retry).await.unwrap();
        let again = store
            .claim_deliveries(Channel::Email, 10, lease)
            .await
            .unwrap();
        assert_eq!(again[0].attempt, 2, "{engine:?}");
        let done = Attempt {
            status: None,
            error: None,
            retry: None,
        };
        store.record_attempt(again[0].id, &done).await.unwrap();
        let filter = DeliveryFilter {
            limit: 10,
            ..Default::default()
        };
        let listed = store.list_deliveries(&filter).await.unwrap();
        assert_eq!(
            (listed[0].status.as_str(), listed[0].attempts),
            ("succeeded", 2)
        );
        let percent = AlertSetting {
            email: false,
            threshold: Threshold::Percent(50),
        };
        store.set_alert_setting(dave, &percent).await.unwrap();
        assert_eq!(
            store.alert_setting(dave).await.unwrap().unwrap().low_at,
            500
        );
    }
}
