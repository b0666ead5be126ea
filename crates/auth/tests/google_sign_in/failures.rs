//! Failed sign-ins: the error page that changes nothing, single-use states bound to their browser,
//! bad sign-in links, and a missing client id.

use super::*;

#[tokio::test]
async fn every_failed_sign_in_gets_an_error_page_and_changes_nothing() {
    let google = FakeGoogle::start().await;
    let auth = spawn_auth(SessionBackend::Sqlite, Some(&google)).await;
    let cases = [
        (
            "consent denied",
            Misbehaviour {
                deny_consent: true,
                ..Default::default()
            },
        ),
        (
            "wrong nonce",
            Misbehaviour {
                wrong_nonce: true,
                ..Default::default()
            },
        ),
        (
            "wrong audience",
            Misbehaviour {
                wrong_audience: true,
                ..Default::default()
            },
        ),
        (
            "expired ID token",
            Misbehaviour {
                expired: true,
                ..Default::default()
            },
        ),
        (
            "PKCE mismatch",
            Misbehaviour {
                pkce_mismatch: true,
                ..Default::default()
            },
        ),
        (
            "signed by another key",
            Misbehaviour {
                foreign_key: true,
                ..Default::default()
            },
        ),
    ];
    for (case, misbehaviour) in cases {
        let page = failure(&auth, &google, misbehaviour).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{case}: {}",
            page.page
        );
        assert!(page.code().is_none(), "{case}: no code");
        assert!(
            page.page
                .contains("href=\"/auth/google?session=conv-42.abc_DEF&amp;return_to=chatgpt\"")
                || page
                    .page
                    .contains("/auth/google?session=conv-42.abc_DEF&#38;return_to=chatgpt"),
            "{case}: a link to try again: {}",
            page.page
        );
        assert_eq!(page.headers["cache-control"], "no-store");
    }
    google.sign_in_as(FakeAccount {
        subject: "unverified".into(),
        email: "nobody@example.com".into(),
        email_verified: false,
        name: "Nobody".into(),
    });
    let page = auth.sign_in(&browser(), START).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "unverified email");
    assert!(page.page.contains("not verified"));
    assert_eq!(
        user_count(&auth).await,
        0,
        "no user was created by any failure"
    );
}

#[tokio::test]
async fn a_state_is_single_use_bound_to_its_browser_and_expires() {
    let google = FakeGoogle::start().await;
    let auth = spawn_auth(SessionBackend::Sqlite, Some(&google)).await;

    // Reused: the callback URL replayed after a successful sign-in.
    let alice = browser();
    let first = auth.sign_in(&alice, START).await;
    assert_eq!(first.status, StatusCode::OK);
    let replay = alice
        .get(first.callback.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST, "state reused");

    // From another browser: a callback link planted in someone else's browser.
    let provider_url = auth.start_sign_in(&alice, START).await;
    let at_provider = alice.get(&provider_url).send().await.unwrap();
    let callback = at_provider.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let mallory = browser();
    let planted = mallory.get(&callback).send().await.unwrap();
    assert_eq!(
        planted.status(),
        StatusCode::BAD_REQUEST,
        "state from another browser"
    );
    assert!(planted.text().await.unwrap().contains("another browser"));
    let after = alice.get(&callback).send().await.unwrap();
    assert_eq!(
        after.status(),
        StatusCode::BAD_REQUEST,
        "and the state is spent"
    );

    // Missing state, and an expired one.
    let r = alice
        .get(format!("{}/auth/google/callback?code=abc", auth.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "state missing");
    let provider_url = auth.start_sign_in(&alice, START).await;
    let at_provider = alice.get(&provider_url).send().await.unwrap();
    let callback = at_provider.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    auth.clock.advance(chrono::Duration::minutes(10));
    let late = alice.get(&callback).send().await.unwrap();
    assert_eq!(
        late.status(),
        StatusCode::BAD_REQUEST,
        "state expired after 10 minutes"
    );
    assert_eq!(
        user_count(&auth).await,
        1,
        "only the first sign-in made a user"
    );
}

#[tokio::test]
async fn bad_sign_in_links_are_400_and_never_redirect() {
    let google = FakeGoogle::start().await;
    let auth = spawn_auth(SessionBackend::Sqlite, Some(&google)).await;
    let long = "a".repeat(129);
    for query in [
        "".to_owned(),
        "session=".to_owned(),
        format!("session={long}"),
        "session=has%20space".to_owned(),
        "session=%3Cscript%3E".to_owned(),
        "session=ok&return_to=https%3A%2F%2Fevil.example".to_owned(),
        "session=ok&return_to=somewhere".to_owned(),
    ] {
        let r = browser()
            .get(format!("{}/auth/google?{query}", auth.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(r.headers().get("location").is_none());
        let page = r.text().await.unwrap();
        assert!(
            !page.contains("<script>"),
            "{query}: nothing reflected unescaped"
        );
    }
}

#[tokio::test]
async fn without_a_client_id_google_sign_in_says_what_to_set() {
    let auth = spawn_auth(SessionBackend::Sqlite, None).await;
    let r = browser()
        .get(format!("{}/auth/google?{START}", auth.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let page = r.text().await.unwrap();
    for variable in [
        "GOOGLE_CLIENT_ID",
        "GOOGLE_CLIENT_SECRET",
        "GOOGLE_CALLBACK_URL",
    ] {
        assert!(page.contains(variable), "{variable}");
    }
}
