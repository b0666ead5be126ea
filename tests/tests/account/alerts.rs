//! The low-balance alert on the account page, on every engine: a person sets an email alert at a
//! threshold of their own (with the page's CSRF token; without it, nothing changes), spends past
//! it, and gets one email (Thai and English) through a real SMTP server; a bad threshold is 422.

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::smtp::SmtpServer;
use hub_test_support::{SpawnedHub, engines};

use super::*;

#[tokio::test]
async fn a_person_sets_an_email_alert_and_gets_one_mail_when_credits_run_low() {
    let smtp = SmtpServer::start();
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let url = smtp.url.clone();
        let hub = SpawnedHub::builder(engine, &google)
            .auth(move |config| config.mail.smtp_url = Some(url.into()))
            .start()
            .await;
        let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
        google.sign_in_as(google_account(&email, "Somchai"));
        let person = Person::new(&hub);
        let page = person.sign_in_with_google().await;
        // 10 credits at sign-up; the default threshold is 20 % of that.
        assert!(
            page.contains("<strong id=\"alert-threshold\">2</strong>"),
            "{page}"
        );
        assert!(page.contains("value=\"default\" checked"), "{page}");

        let form = [("email", "on"), ("mode", "credits"), ("value", "5")];
        let r = person.post("/account/alerts", &form).await;
        assert_eq!(
            r.status(),
            StatusCode::FORBIDDEN,
            "{engine:?}: no CSRF token"
        );
        assert!(
            person
                .page("/account")
                .await
                .contains("id=\"alert-threshold\">2<")
        );

        let token = csrf(&page);
        let bad = [
            ("csrf_token", token.as_str()),
            ("mode", "percent"),
            ("value", "150"),
        ];
        let r = person.post("/account/alerts", &bad).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{engine:?}");
        let mut good = vec![("csrf_token", token.as_str())];
        good.extend(form);
        let r = person.post("/account/alerts", &good).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{engine:?}");
        let page = person.page("/account").await;
        assert!(page.contains("id=\"alert-threshold\">5<"), "{page}");
        assert!(page.contains("id=\"alert-email\" checked"), "{page}");

        let (_, user_id) = hub.signed_in_user().await;
        let key = hub.service_key(&["credits:deduct"]).await;
        spend(&hub, &key, &user_id, "sora2", 4).await; // 6: above
        spend(&hub, &key, &user_id, "sora2", 2).await; // 4: low
        spend(&hub, &key, &user_id, "sora2", 1).await; // 3: still low, no second mail
        let mails = smtp.wait_for(&email, 1).await;
        assert!(mails[0].subject.contains("running low"), "{:?}", mails[0]);
        assert!(mails[0].body.contains("4 credits") && mails[0].body.contains("4 เครดิต"));
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        assert_eq!(smtp.wait_for(&email, 1).await.len(), 1, "{engine:?}: once");
    }
}
