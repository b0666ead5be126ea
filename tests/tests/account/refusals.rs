//! What the account page refuses: forms without the page's CSRF token or with another one (403,
//! nothing changes), a session of another user named by its id, posts from a signed-out browser,
//! and a sign-in that would continue anywhere but this hub's own pages.

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SpawnedHub, engines};
use reqwest::StatusCode;

use super::*;

#[tokio::test]
async fn forms_without_the_pages_token_or_for_another_user_change_nothing() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        google.sign_in_as(google_account("somchai@example.com", "Somchai"));
        let (code, _) = hub.signed_in_user().await;
        let id = session_id_of(&hub, &code).await;
        let person = Person::new(&hub);

        // Signed out: there is no page, so no token either.
        let signed_out = person
            .post("/account/sessions/revoke", &[("id", id.as_str())])
            .await;
        assert_eq!(signed_out.status(), StatusCode::FORBIDDEN);

        let page = person.sign_in_with_google().await;
        let token = csrf(&page);
        let mut wrong = token.clone();
        wrong.replace_range(..2, if token.starts_with("00") { "11" } else { "00" });
        for form in [
            vec![("id", id.as_str())],
            vec![("csrf_token", ""), ("id", id.as_str())],
            vec![("csrf_token", wrong.as_str()), ("id", id.as_str())],
            vec![("csrf_token", "zz"), ("id", id.as_str())],
        ] {
            let refused = person.post("/account/sessions/revoke", &form).await;
            assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{form:?}");
        }
        let everywhere = person
            .post(
                "/account/sessions/end-all",
                &[("csrf_token", wrong.as_str())],
            )
            .await;
        assert_eq!(everywhere.status(), StatusCode::FORBIDDEN);
        let out = person.post("/account/sign-out", &[]).await;
        assert_eq!(out.status(), StatusCode::FORBIDDEN);
        assert_eq!(verify(&hub, &code).await, StatusCode::OK, "nothing ended");
        assert_eq!(
            count(&person.page("/account").await, "class=\"session\""),
            2
        );

        // Another person's session, named by its id with this page's valid token.
        google.sign_in_as(google_account("other@example.com", "Other"));
        let (their_code, _) = hub.signed_in_user().await;
        let theirs = session_id_of(&hub, &their_code).await;
        let refused = person
            .post(
                "/account/sessions/revoke",
                &[("csrf_token", token.as_str()), ("id", theirs.as_str())],
            )
            .await;
        assert_eq!(refused.status(), StatusCode::NOT_FOUND);
        assert_eq!(verify(&hub, &their_code).await, StatusCode::OK);

        // Another person's page token does not work in this browser.
        let other = Person::new(&hub);
        let their_page = other.sign_in_with_google().await;
        let their_token = csrf(&their_page);
        assert_ne!(their_token, token);
        let refused = person
            .post(
                "/account/sessions/revoke",
                &[("csrf_token", their_token.as_str()), ("id", id.as_str())],
            )
            .await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(verify(&hub, &code).await, StatusCode::OK);
    }
}

#[tokio::test]
async fn email_and_password_sign_in_comes_back_to_the_page_and_nowhere_else() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
        let new = hub_ledger::users::NewUser::new(&email, "Nok", 50, hub_ledger::users::Role::User)
            .unwrap();
        let user = hub.store.create_user(&new).await.unwrap().unwrap().user;
        let hash = hub_auth::passwords::hash("correct horse battery".into())
            .await
            .unwrap();
        hub.store.set_password_hash(user.id, &hash).await.unwrap();
        let person = Person::new(&hub);
        let form = |to: &'static str| {
            [
                ("email", email.clone()),
                ("password", "correct horse battery".to_owned()),
                ("continue", to.to_owned()),
            ]
        };

        for elsewhere in [
            "https://evil.example/account",
            "//evil.example/account",
            "/accountx",
            "/account/../admin",
            "/\\evil.example",
        ] {
            let refused = person
                .post("/oauth/sign-in", &form_ref(&form(elsewhere)))
                .await;
            assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{elsewhere}");
            assert!(refused.headers().get("location").is_none());
        }
        let signed_in = person
            .post("/oauth/sign-in", &form_ref(&form("/account")))
            .await;
        assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&signed_in), "/account");
        let page = person.page("/account").await;
        assert!(
            page.contains("<strong id=\"balance\">50</strong>"),
            "{page}"
        );
        assert!(page.contains(&email));
        assert!(page.contains("id=\"no-usage\""), "nothing spent yet");
        history_pages(&person, user.id).await;
    }
}

/// 24 debits and the grant: 20 rows, then the older 5; filtered, 20 debits, then the older 4.
async fn history_pages(person: &Person<'_>, user_id: uuid::Uuid) {
    for _ in 0..24 {
        let debit = hub_ledger::Debit {
            user_id,
            service: hub_ledger::ServiceName::parse("sora2").unwrap(),
            cost: 1,
            metadata: None,
            request_id: None,
            app_grant: None,
        };
        person.hub.store.debit(&debit, None).await.unwrap();
    }
    for (first, rest) in [("/account", 5), ("/account?kind=debit", 4)] {
        let page = person.page(first).await;
        assert_eq!(count(&page, "class=\"entry\""), 20, "{first}");
        assert!(!page.contains("id=\"newest\""));
        let older = attribute(&page, "id=\"older\"", "href").expect("an older page");
        let page = person.page(&older).await;
        assert_eq!(count(&page, "class=\"entry\""), rest, "{older}");
        assert!(!page.contains("id=\"older\""), "the last page");
        assert!(page.contains("id=\"newest\""));
    }
}

fn form_ref<'a>(form: &'a [(&'static str, String); 3]) -> Vec<(&'static str, &'a str)> {
    form.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
