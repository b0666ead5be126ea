//! The consent form without its CSRF token or from another browser, and the pages in Thai.

use super::*;

#[tokio::test]
async fn a_consent_form_without_its_csrf_token_or_from_another_browser_is_refused() {
    let (_google, hub) = hub().await;
    let (client_id, _) = operator_client(&hub, APP_CALLBACK, false, &["credits:read"]).await;
    let person = OAuthBrowser::new(&hub);
    let pkce = format!("&code_challenge={CHALLENGE}&code_challenge_method=S256");
    let page = person
        .get(&format!(
            "/oauth/authorize?{}",
            public_query(&client_id, &pkce)
        ))
        .await;
    let sign_in = page.text().await.unwrap();
    let consent = person.sign_in_with_google(&sign_in).await;
    assert_eq!(consent.status(), StatusCode::OK);
    let consent = consent.text().await.unwrap();
    assert!(
        consent.contains("Sora2 Video Generator") && consent.contains("127.0.0.1:9"),
        "the app's name and redirect host"
    );
    assert!(
        consent.contains("See your credit balance and history"),
        "the scopes in plain words"
    );

    let without = person
        .client
        .post(format!("{}/oauth/authorize", hub.gateway_url))
        .form(&[("decision", "allow")])
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), StatusCode::BAD_REQUEST);
    assert!(without.headers().get("location").is_none());
    let forged = person
        .client
        .post(format!("{}/oauth/authorize", hub.gateway_url))
        .form(&[("decision", "allow"), ("csrf_token", &"0".repeat(64))])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    // The real token from a browser not signed in as the user is refused too.
    let stranger = OAuthBrowser::new(&hub);
    let stolen = stranger.decide(&consent, "allow", None).await;
    assert_eq!(stolen.status(), StatusCode::BAD_REQUEST);

    // Deny goes back to the app with access_denied.
    let page = person
        .get(&format!(
            "/oauth/authorize?{}",
            public_query(&client_id, &pkce)
        ))
        .await;
    let consent = page.text().await.unwrap();
    let denied = person.decide(&consent, "deny", None).await;
    assert_eq!(denied.status(), StatusCode::SEE_OTHER);
    assert_eq!(redirected(&denied).query["error"], "access_denied");
    assert!(location(&denied).starts_with(APP_CALLBACK));
}

#[tokio::test]
async fn the_pages_speak_thai_to_a_thai_browser() {
    let (_google, hub) = hub().await;
    let (client_id, _) = operator_client(&hub, APP_CALLBACK, false, &["credits:read"]).await;
    let pkce = format!("&code_challenge={CHALLENGE}&code_challenge_method=S256");
    let page = hub
        .http
        .get(format!(
            "{}/oauth/authorize?{}",
            hub.gateway_url,
            public_query(&client_id, &pkce)
        ))
        .header("accept-language", "th-TH,th;q=0.9,en;q=0.5")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("lang=\"th\""), "{page}");
    assert!(
        page.contains("เข้าสู่ระบบ Smart AI Hub") && page.contains("เข้าสู่ระบบด้วย Google"),
        "{page}"
    );
}
