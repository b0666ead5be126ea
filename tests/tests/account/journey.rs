//! A person's way through their account page: signed out, signed in with Google and back, the
//! credits, the history and its filters, the chart, signing a code out, disconnecting an app,
//! signing out everywhere.

use hub_ledger::oauth::NewGrant;
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SpawnedHub, engines};
use reqwest::StatusCode;

use super::*;

#[tokio::test]
async fn a_person_signs_in_to_their_account_page_and_manages_it() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        google.sign_in_as(google_account("malee@example.com", "Malee"));
        // A code for a GPT first: it is one of the sessions the page lists.
        let (code, user_id) = hub.signed_in_user().await;
        let key = hub.service_key(&["credits:deduct"]).await;
        spend(&hub, &key, &user_id, "sora2", 3).await;
        spend(&hub, &key, &user_id, "sora2", 2).await;
        spend(&hub, &key, &user_id, "chat", 1).await;

        let person = Person::new(&hub);
        let page = person.sign_in_with_google().await;
        shows_credits_history_and_chart(&page);
        filters_the_history(&person).await;
        signs_a_code_out(&person, &code).await;
        disconnects_an_app(&person, &user_id).await;
        signs_out_everywhere(&person).await;
    }
}

fn shows_credits_history_and_chart(page: &str) {
    assert!(
        page.contains("Your account") && page.contains("Malee"),
        "{page}"
    );
    // 10 credits at sign-up, 6 spent.
    assert!(page.contains("<strong id=\"balance\">4</strong>"), "{page}");
    assert!(page.contains("<strong id=\"held\">0</strong>"), "{page}");
    assert!(
        page.contains("<strong id=\"available\">4</strong>"),
        "{page}"
    );
    assert_eq!(
        count(page, "class=\"entry\""),
        4,
        "three debits and the grant"
    );
    assert!(page.contains(">-3<") && page.contains(">+10<"), "{page}");
    assert!(page.contains("<svg id=\"usage-chart\""), "{page}");
    assert_eq!(
        count(page, "<rect class=\"bar\""),
        2,
        "today: sora2 and chat"
    );
    assert!(
        page.contains("sora2: 5") && page.contains("chat: 1"),
        "the legend"
    );
    assert_eq!(
        count(page, "class=\"session\""),
        2,
        "the code and this browser"
    );
    assert!(page.contains("This browser"), "{page}");
    assert!(!page.contains("Connected apps"), "no apps yet");
}

async fn filters_the_history(person: &Person<'_>) {
    let debits = person.page("/account?kind=debit").await;
    assert_eq!(count(&debits, "class=\"entry\""), 3);
    assert!(debits.contains("<option value=\"debit\" selected>"));
    let chat = person.page("/account?kind=debit&service=chat").await;
    assert_eq!(count(&chat, "class=\"entry\""), 1);
    let grants = person.page("/account?kind=grant&service=sora2").await;
    assert!(grants.contains("id=\"no-history\""), "nothing matches both");
    let nonsense = person.page("/account?kind=drop+table&cursor=%27").await;
    assert_eq!(
        count(&nonsense, "class=\"entry\""),
        4,
        "ignored, not an error"
    );
}

async fn signs_a_code_out(person: &Person<'_>, code: &str) {
    let hub = person.hub;
    let page = person.page("/account").await;
    let token = csrf(&page);
    let id = session_id_of(hub, code).await;
    assert!(page.contains(&format!("data-session=\"{id}\"")), "{page}");

    let ended = person
        .post(
            "/account/sessions/revoke",
            &[("csrf_token", token.as_str()), ("id", id.as_str())],
        )
        .await;
    assert_eq!(ended.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&ended), "/account");
    assert_eq!(verify(hub, code).await, StatusCode::UNAUTHORIZED);
    let page = person.page("/account").await;
    assert_eq!(count(&page, "class=\"session\""), 1, "this browser only");
}

async fn disconnects_an_app(person: &Person<'_>, user_id: &str) {
    let hub = person.hub;
    let grant = hub
        .store
        .upsert_grant(&NewGrant {
            user_id: user_id.parse().unwrap(),
            client_id: "oc_test".into(),
            client_name: "Claude".into(),
            scopes: vec!["credits:read".into()],
            daily_cap: Some(25),
        })
        .await
        .unwrap();
    let page = person.page("/account").await;
    assert!(
        page.contains("Connected apps") && page.contains("Claude"),
        "{page}"
    );
    assert!(page.contains("See your credit balance and history"));
    let token = csrf(&page);
    let gone = person
        .post(
            "/account/apps/disconnect",
            &[("csrf_token", token.as_str()), ("id", grant.id.as_str())],
        )
        .await;
    assert_eq!(gone.status(), StatusCode::SEE_OTHER);
    assert!(hub.store.find_grant(&grant.id).await.unwrap().is_none());
    assert!(!person.page("/account").await.contains("Claude"));
}

async fn signs_out_everywhere(person: &Person<'_>) {
    let page = person.page("/account").await;
    let token = csrf(&page);
    let ended = person
        .post(
            "/account/sessions/end-all",
            &[("csrf_token", token.as_str())],
        )
        .await;
    assert_eq!(ended.status(), StatusCode::SEE_OTHER);
    let cookie = ended
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    let again = person.page("/account").await;
    assert!(
        again.contains("action=\"/oauth/sign-in\""),
        "signed out: {again}"
    );
}

#[tokio::test]
async fn the_page_is_in_thai_for_a_thai_browser_and_signs_itself_out() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let mut person = Person::new(&hub);
        person.lang = "th-TH,th;q=0.9,en;q=0.5";
        let sign_in = person.page("/account").await;
        assert!(sign_in.contains("lang=\"th\"") && sign_in.contains("เข้าสู่ระบบ"));
        let page = person.sign_in_with_google().await;
        assert!(
            page.contains("บัญชีของคุณ") && page.contains("ยอดเครดิต"),
            "{page}"
        );
        assert!(page.contains("ออกจากระบบทุกที่"));

        let response = person.get("/account").await;
        let policy = response
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        for directive in [
            "default-src 'none'",
            "script-src 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(directive), "{policy}");
        }
        assert_eq!(response.headers()["cache-control"], "no-store");

        let token = csrf(&page);
        let out = person
            .post("/account/sign-out", &[("csrf_token", token.as_str())])
            .await;
        assert_eq!(out.status(), StatusCode::SEE_OTHER);
        let again = person.page("/account").await;
        assert!(again.contains("action=\"/oauth/sign-in\""), "signed out");

        // HTML pages, not API operations.
        let document = hub
            .call(reqwest::Method::GET, "/openapi.json", &[], None)
            .await;
        let paths = document.json["paths"].as_object().expect("paths");
        assert!(
            !paths.keys().any(|p| p.starts_with("/account")),
            "{paths:?}"
        );
    }
}
