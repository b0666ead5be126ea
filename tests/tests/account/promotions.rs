//! The account page shows promotional grants with what is left and when they end, on every engine.

use hub_ledger::grants::GrantTerms;
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SpawnedHub, engines};

use super::*;

#[tokio::test]
async fn the_account_page_lists_promotional_grants_with_their_end_dates() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        google.sign_in_as(google_account("dao@example.com", "Dao"));
        let person = Person::new(&hub);
        let page = person.sign_in_with_google().await;
        assert!(!page.contains("id=\"promotions\""), "none yet: {page}");
        let user_id = hub
            .store
            .find_user_by_email("dao@example.com")
            .await
            .unwrap()
            .expect("signed up")
            .id;
        let ends = chrono::Utc::now() + chrono::Duration::days(30);
        let grant = hub_ledger::Grant {
            user_id,
            amount: 200,
            reason: "launch promo".into(),
            request_id: None,
            terms: GrantTerms {
                expires_at: Some(ends),
                priority: 10,
            },
        };
        hub.store.grant(&grant, None).await.unwrap();
        spend(
            &hub,
            &hub.service_key(&["credits:deduct"]).await,
            &user_id.to_string(),
            "sora2",
            30,
        )
        .await;

        let page = person.page("/account").await;
        assert_eq!(count(&page, "class=\"promotion\""), 1, "{engine:?}: {page}");
        assert!(page.contains("<strong>170</strong> of 200"), "{page}");
        assert!(
            page.contains(&ends.format("%Y-%m-%d %H:%M UTC").to_string()),
            "{page}"
        );
        // 10 at sign-up stay whole: the promotion is spent first.
        assert!(
            page.contains("<strong id=\"balance\">180</strong>"),
            "{page}"
        );
    }
}
