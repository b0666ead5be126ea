//! The operator console in real Chromium, through the gateway: an admin signs in with email and
//! password, sees the dashboard's chart, finds a user, grants credits and sees the balance change,
//! disables the user (whose session code then fails at the gateway), and reads the audit entry.
//! Screenshots: `console-dashboard.png`, `console-users.png`, `console-user.png`,
//! `console-user-disabled.png`, `console-keys.png`, `console-audit.png`.

use std::time::Duration;

use fantoccini::{Client, Locator};
use hub_ledger::users::Role;
use hub_test_support::fake_google::{FakeAccount, FakeGoogle};
use hub_test_support::{Engine, OPERATOR_PASSWORD, SpawnedHub};
use reqwest::{Method, StatusCode};

use super::{open_browser, screenshot, start_driver};

async fn wait_for(browser: &Client, id: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
}

/// Waits until the browser is at a URL containing `part` (the page a form or link led to).
async fn wait_until_at(browser: &Client, part: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !browser.current_url().await.unwrap().as_str().contains(part) {
        assert!(std::time::Instant::now() < deadline, "never reached {part}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text_of(browser: &Client, id: &str) -> String {
    wait_for(browser, id).await.text().await.unwrap()
}

async fn fill(browser: &Client, id: &str, value: &str) {
    wait_for(browser, id).await.send_keys(value).await.unwrap();
}

async fn click(browser: &Client, id: &str) {
    wait_for(browser, id).await.click().await.unwrap();
}

/// The customer, with a session code as a GPT holds it and 4 credits spent on sora2.
async fn customer(hub: &SpawnedHub, google: &FakeGoogle) -> (String, String) {
    google.sign_in_as(FakeAccount {
        subject: "sub-customer".into(),
        email: "customer@example.com".into(),
        email_verified: true,
        name: "Customer".into(),
    });
    let (code, user) = hub.signed_in_user().await;
    let key = hub.service_key(&["credits:deduct"]).await;
    let bearer = format!("Bearer {key}");
    let spent = hub
        .call(
            Method::POST,
            "/api/mcp/v1/credits/deduct",
            &[
                ("authorization", bearer.as_str()),
                ("x-user-id", user.as_str()),
            ],
            Some(&serde_json::json!({ "service": "sora2", "cost": 4, "metadata": {} })),
        )
        .await;
    assert_eq!(spent.status, StatusCode::OK, "{:?}", spent.json);
    (code, user)
}

async fn verify(hub: &SpawnedHub, code: &str) -> StatusCode {
    let headers = [("x-session-token", code)];
    hub.call(Method::GET, "/api/auth/verify-session", &headers, None)
        .await
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_grants_credits_and_disables_a_user_in_the_console() {
    let Some((_driver, port)) = start_driver().await else {
        return;
    };
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google).start().await;
    let (code, user) = customer(&hub, &google).await;
    let (_, email, _) = hub.operator(Role::Admin).await;
    let profile = tempfile::tempdir().unwrap();
    let browser = open_browser(port, &profile).await;
    browser.set_window_size(1100, 900).await.unwrap();

    browser
        .goto(&format!("{}/console", hub.gateway_url))
        .await
        .unwrap();
    fill(&browser, "email", &email).await;
    fill(&browser, "password", OPERATOR_PASSWORD).await;
    click(&browser, "sign-in").await;
    wait_for(&browser, "usage-chart").await;
    assert_eq!(text_of(&browser, "active-users").await, "1");
    let bars = browser.find_all(Locator::Css("rect.bar")).await.unwrap();
    assert_eq!(bars.len(), 1, "today's sora2 spending");
    screenshot(&browser, "console-dashboard.png").await;

    browser
        .find(Locator::LinkText("Users"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    fill(&browser, "q", "customer@").await;
    click(&browser, "search").await;
    wait_until_at(&browser, "q=customer").await;
    wait_for(&browser, "users").await;
    screenshot(&browser, "console-users.png").await;
    browser
        .find(Locator::LinkText("customer@example.com"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until_at(&browser, &format!("/console/users/{user}")).await;
    assert_eq!(text_of(&browser, "balance").await, "6");
    fill(&browser, "grant-amount", "25").await;
    fill(&browser, "grant-reason", "welcome back").await;
    click(&browser, "grant").await;
    wait_until_at(&browser, "done=grant").await;
    assert_eq!(text_of(&browser, "balance").await, "31");
    screenshot(&browser, "console-user.png").await;

    assert_eq!(verify(&hub, &code).await, StatusCode::OK);
    click(&browser, "disable-confirm").await;
    click(&browser, "disable").await;
    wait_until_at(&browser, "done=disable").await;
    assert!(text_of(&browser, "standing").await.starts_with("disabled"));
    assert_eq!(verify(&hub, &code).await, StatusCode::UNAUTHORIZED);
    screenshot(&browser, "console-user-disabled.png").await;

    browser
        .find(Locator::LinkText("Service keys"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until_at(&browser, "/console/keys").await;
    wait_for(&browser, "create-form").await;
    screenshot(&browser, "console-keys.png").await;

    browser
        .find(Locator::LinkText("Audit log"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until_at(&browser, "/console/audit").await;
    let log = text_of(&browser, "audit").await;
    assert!(
        log.contains("user.disable") && log.contains("credits.grant"),
        "{log}"
    );
    assert!(log.contains(&format!("user:{user}")) && log.contains("welcome back"));
    screenshot(&browser, "console-audit.png").await;
    browser.close().await.unwrap();
}
