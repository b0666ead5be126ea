//! Authorization codes: used once, by their own client, and not too late.

use super::*;

#[tokio::test]
async fn a_code_works_once_for_its_own_client_and_a_second_use_ends_its_tokens() {
    let (_google, hub) = hub().await;
    let (mine, _) = operator_client(&hub, APP_CALLBACK, false, &["credits:read"]).await;
    let (other, _) = operator_client(&hub, APP_CALLBACK, false, &["credits:read"]).await;
    let person = OAuthBrowser::new(&hub);
    let (code, tokens) = public_tokens(&hub, &person, &mine, "").await;
    let access = tokens["access_token"].as_str().unwrap();
    let balance = with_bearer(
        &hub,
        Method::GET,
        "/api/mcp/v1/credits/balance",
        access,
        None,
    )
    .await;
    assert_eq!(balance.status, StatusCode::OK, "{:?}", balance.json);

    let again = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("client_id", mine.as_str()),
        ("code_verifier", VERIFIER),
    ];
    let (status, refused) = token(&hub, &again, None).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let balance = with_bearer(
        &hub,
        Method::GET,
        "/api/mcp/v1/credits/balance",
        access,
        None,
    )
    .await;
    assert_eq!(
        balance.status,
        StatusCode::UNAUTHORIZED,
        "the first use's access token stops"
    );
    let (status, _) = token(
        &hub,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", &mine),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "and its refresh token");

    // Another client cannot redeem this client's code.
    let (code, _) = {
        let pkce = format!("&code_challenge={CHALLENGE}&code_challenge_method=S256");
        let back = person.authorize(&public_query(&mine, &pkce), None).await;
        (back.query["code"].clone(), ())
    };
    let (status, refused) = token(
        &hub,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &other),
            ("code_verifier", VERIFIER),
        ],
        None,
    )
    .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let google = FakeGoogle::start().await;
    let auth = spawn_auth(SessionBackend::Sqlite, Some(&google)).await;
    let client = hub_ledger::oauth::new_client(
        "App",
        &[APP_CALLBACK.to_owned()],
        false,
        &[],
        hub_ledger::oauth::Registration::Operator,
    )
    .unwrap();
    auth.users.insert_oauth_client(&client).await.unwrap();
    let browser = hub_test_support::browser();
    let query = format!(
        "response_type=code&client_id={}&redirect_uri={}&code_challenge={CHALLENGE}&code_challenge_method=S256",
        client.record.id,
        urlencode(APP_CALLBACK)
    );
    // Sign in with Google straight at the auth service, and consent.
    let get = |path: String| {
        let browser = browser.clone();
        let base = auth.base_url.clone();
        async move {
            let url = if path.starts_with("http") {
                path
            } else {
                format!("{base}{path}")
            };
            browser.get(url).send().await.unwrap()
        }
    };
    let page = get(format!("/oauth/authorize?{query}"))
        .await
        .text()
        .await
        .unwrap();
    let start = crate::oauth_flow::attribute(&page, "id=\"google\"", "href").unwrap();
    let to_google = get(start).await;
    let at_google = get(location(&to_google)).await;
    let callback = get(location(&at_google)).await;
    let consent = get(location(&callback)).await.text().await.unwrap();
    let csrf = crate::oauth_flow::attribute(&consent, "name=\"csrf_token\"", "value").unwrap();
    let decided = browser
        .post(format!("{}/oauth/authorize", auth.base_url))
        .form(&[("csrf_token", csrf.as_str()), ("decision", "allow")])
        .send()
        .await
        .unwrap();
    let code = redirected(&decided).query["code"].clone();
    auth.clock.advance(chrono::Duration::seconds(61));
    let response = auth
        .http
        .post(format!("{}/oauth/token", auth.base_url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", client.record.id.as_str()),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
}
