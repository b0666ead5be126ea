//! Public clients must use PKCE with S256.

use super::*;

#[tokio::test]
async fn public_clients_must_use_pkce_with_s256() {
    let (_google, hub) = hub().await;
    let (status, client) = register(
        &hub,
        json!({"client_name": "Claude", "redirect_uris": [APP_CALLBACK], "token_endpoint_auth_method": "none"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    // A dynamically registered client is public: it may not ask for a secret.
    let (status, refused) = register(
        &hub,
        json!({"redirect_uris": [APP_CALLBACK], "token_endpoint_auth_method": "client_secret_basic"}),
    )
    .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_client_metadata"))
    );
    let (status, refused) =
        register(&hub, json!({"redirect_uris": ["http://evil.example/cb"]})).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_redirect_uri"))
    );

    let person = OAuthBrowser::new(&hub);
    for (extra, why) in [
        ("", "no challenge"),
        (
            &format!("&code_challenge={VERIFIER}&code_challenge_method=plain")[..],
            "plain",
        ),
        (
            &format!("&code_challenge={CHALLENGE}")[..],
            "no method (plain by default)",
        ),
    ] {
        let page = person
            .get(&format!(
                "/oauth/authorize?{}",
                public_query(&client_id, extra)
            ))
            .await;
        assert_eq!(page.status(), StatusCode::SEE_OTHER, "{why}");
        let back = redirected(&page);
        assert_eq!(back.query["error"], "invalid_request", "{why}");
        assert_eq!(back.query["state"], "s1");
        assert_eq!(back.query["iss"], hub.gateway_url);
    }

    // With S256, a wrong or missing verifier is refused (and spends the code).
    let pkce = format!("&code_challenge={CHALLENGE}&code_challenge_method=S256");
    for verifier in [None, Some("x".repeat(43))] {
        let back = person
            .authorize(&public_query(&client_id, &pkce), None)
            .await;
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", back.query["code"].clone()),
            ("client_id", client_id.clone()),
        ];
        if let Some(v) = &verifier {
            form.push(("code_verifier", v.clone()));
        }
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, refused) = token(&hub, &form, None).await;
        assert_eq!(
            (status, refused["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant")),
            "{verifier:?}"
        );
    }
    let back = person
        .authorize(&public_query(&client_id, &pkce), None)
        .await;
    let (status, tokens) = token(
        &hub,
        &[
            ("grant_type", "authorization_code"),
            ("code", &back.query["code"]),
            ("client_id", &client_id),
            ("code_verifier", VERIFIER),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
}
