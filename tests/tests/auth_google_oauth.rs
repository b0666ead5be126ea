//! Google sign-in through the gateway, with the fake provider: the success page and its code,
//! and the ways a sign-in can be refused.

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{Engine, SpawnedHub, browser, hub_backends};
use reqwest::StatusCode;

#[tokio::test]
async fn signing_in_through_the_gateway_shows_a_code_that_verifies() {
    for backends in hub_backends() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(backends, &google).start().await;
        let page = hub
            .sign_in(&browser(), "session=conv-1&return_to=chatgpt")
            .await;
        assert_eq!(page.status, StatusCode::OK, "{backends:?}: {}", page.page);
        let header = |name: &str| {
            page.headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(header("cache-control").as_deref(), Some("no-store"));
        assert!(
            header("content-security-policy")
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
        assert!(page.page.contains("Login สำเร็จ"), "the Thai success page");
        let code = page.code().expect("a VERIFIED- code");
        assert_eq!(code.len(), "VERIFIED-".len() + 32);
        let r = hub
            .call(
                reqwest::Method::GET,
                "/api/auth/verify-session",
                &[("x-session-token", &code)],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_sign_in_is_refused_without_a_session_or_with_a_forged_state() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google).start().await;
    let client = browser();
    let r = client
        .get(format!("{}/auth/google", hub.gateway_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "no session parameter");
    let r = client
        .get(format!(
            "{}/auth/google?session=ok&return_to=https://evil.example",
            hub.gateway_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "a return_to off the allow-list"
    );
    let r = client
        .get(format!(
            "{}/auth/google/callback?state=forged&code=x",
            hub.gateway_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "a state that was never issued"
    );
    let page = r.text().await.unwrap();
    assert!(!page.contains("VERIFIED-"), "no code on a refusal");

    // Starting a sign-in redirects to the provider with state, nonce and PKCE.
    let r = client
        .get(format!("{}/auth/google?session=conv-2", hub.gateway_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    for part in [
        "state=",
        "nonce=",
        "code_challenge=",
        "code_challenge_method=S256",
    ] {
        assert!(location.contains(part), "{location} lacks {part}");
    }
}
