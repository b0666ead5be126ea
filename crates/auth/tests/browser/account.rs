//! The account page in real Chromium: a person who gave a GPT a code signs in to `/account` with
//! Google, sees their balance and the usage chart (an SVG with bars), signs the GPT's code out
//! with the page's button, and sees the page in Thai. Screenshots: `account.png`,
//! `account-th.png`.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use hub_ledger::{Debit, ServiceName};
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SessionBackend, browser, spawn_auth};
use reqwest::{Method, StatusCode};

use super::{open_browser_as, screenshot, start_driver};

/// Signs in from `/account` with the Google button; the account page it comes back to.
async fn sign_in_to_account(browser: &fantoccini::Client, base_url: &str) {
    browser.goto(&format!("{base_url}/account")).await.unwrap();
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("google"))
        .await
        .expect("the sign-in page")
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("usage-chart"))
        .await
        .expect("the account page, with its chart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_sees_their_usage_and_signs_a_code_out_on_the_account_page() {
    let Some((_driver, port)) = start_driver().await else {
        return;
    };
    let google = FakeGoogle::start().await;
    let auth = spawn_auth(SessionBackend::Sqlite, Some(&google)).await;
    // The code a GPT holds, and what the person spent with it.
    let signed_in = auth
        .sign_in(&browser(), "session=conv-1&return_to=chatgpt")
        .await;
    let code = signed_in.code().expect("a code");
    let verified = auth.verify(&code).await;
    let user_id = verified.json["user"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for (service, cost) in [("sora2", 4), ("sora2", 2), ("chat", 1)] {
        let debit = Debit {
            user_id,
            service: ServiceName::parse(service).unwrap(),
            cost,
            metadata: None,
            request_id: None,
            app_grant: None,
        };
        auth.users.debit(&debit, None).await.unwrap();
    }
    let sessions = auth
        .with_code(Method::GET, "/api/auth/sessions", &code)
        .await;
    let code_session = sessions.json["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let profile = tempfile::tempdir().unwrap();
    let browser = open_browser_as(port, &profile, "en-US", (900, 1800)).await;
    sign_in_to_account(&browser, &auth.base_url).await;
    let balance = browser.find(Locator::Id("balance")).await.unwrap();
    assert_eq!(balance.text().await.unwrap(), "3", "10 at sign-up, 7 spent");
    let bars = browser
        .find_all(Locator::Css("#usage-chart rect.bar"))
        .await
        .unwrap();
    assert_eq!(bars.len(), 2, "today: sora2 and chat, stacked");
    let height: f64 = bars[0]
        .attr("height")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert!(height > 0.0);
    let sessions = browser.find_all(Locator::Css("tr.session")).await.unwrap();
    assert_eq!(sessions.len(), 2, "the GPT's code and this browser");
    screenshot(&browser, "account.png").await;

    browser
        .find(Locator::Id(&format!("end-{code_session}")))
        .await
        .expect("the code's sign-out button")
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !browser
        .find_all(Locator::Css("tr.session"))
        .await
        .is_ok_and(|rows| rows.len() == 1)
    {
        assert!(Instant::now() < deadline, "the page shows one session left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(auth.verify(&code).await.status, StatusCode::UNAUTHORIZED);
    browser.close().await.unwrap();

    let thai_profile = tempfile::tempdir().unwrap();
    let thai = open_browser_as(port, &thai_profile, "th", (900, 1800)).await;
    sign_in_to_account(&thai, &auth.base_url).await;
    let heading = thai.find(Locator::Css("h1")).await.unwrap();
    assert_eq!(heading.text().await.unwrap(), "บัญชีของคุณ");
    screenshot(&thai, "account-th.png").await;
    thai.close().await.unwrap();
}
