//! What the authorization server and the resource servers refuse, each with the answer a client
//! sees: bad redirects (an error page, never a redirect), PKCE, codes used twice, by another
//! client or too late, tokens at the wrong resource or beyond their scopes, a consent form
//! without its CSRF token, and metadata-document client ids on private addresses. Also the
//! discovery documents and the MCP challenge that start it all.

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SessionBackend, SpawnedHub, spawn_auth};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::oauth_flow::{
    GPT_CALLBACK, OAuthBrowser, location, operator_client, redirected, token, urlencode,
    with_bearer,
};

const APP_CALLBACK: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

async fn hub() -> (FakeGoogle, SpawnedHub) {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(hub_test_support::Engine::Sqlite, &google)
        .start()
        .await;
    (google, hub)
}

async fn register(hub: &SpawnedHub, body: Value) -> (StatusCode, Value) {
    let response = hub
        .http
        .post(format!("{}/oauth/register", hub.gateway_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        response.status(),
        response.json().await.unwrap_or(Value::Null),
    )
}

fn public_query(client_id: &str, extra: &str) -> String {
    format!(
        "response_type=code&client_id={}&redirect_uri={}&state=s1{extra}",
        urlencode(client_id),
        urlencode(APP_CALLBACK)
    )
}

#[tokio::test]
async fn discovery_starts_at_the_mcp_servers_challenge() {
    let (_google, hub) = hub().await;
    let mcp = hub.call(Method::POST, "/mcp", &[], Some(&json!({}))).await;
    assert_eq!(mcp.status, StatusCode::UNAUTHORIZED);
    let challenge = mcp.headers["www-authenticate"].to_str().unwrap();
    let metadata_url = format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        hub.gateway_url
    );
    assert!(
        challenge.starts_with(&format!("Bearer resource_metadata=\"{metadata_url}\"")),
        "{challenge}"
    );
    let ws = hub.call(Method::GET, "/api/mcp/ws", &[], None).await;
    assert_eq!(ws.status, StatusCode::UNAUTHORIZED);
    assert!(ws.headers.contains_key("www-authenticate"));

    let resource = hub
        .call(
            Method::GET,
            "/.well-known/oauth-protected-resource/mcp",
            &[],
            None,
        )
        .await;
    assert_eq!(
        resource.json["resource"],
        format!("{}/mcp", hub.gateway_url)
    );
    assert_eq!(
        resource.json["authorization_servers"],
        json!([hub.gateway_url])
    );
    assert_eq!(resource.json["scopes_supported"], json!(["mcp:tools"]));
    let api = hub
        .call(
            Method::GET,
            "/.well-known/oauth-protected-resource",
            &[],
            None,
        )
        .await;
    assert_eq!(api.json["resource"], hub.gateway_url.as_str());
    assert_eq!(
        api.json["scopes_supported"],
        json!(["credits:read", "credits:spend"])
    );

    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let server = hub.call(Method::GET, path, &[], None).await;
        assert_eq!(server.status, StatusCode::OK, "{path}");
        let doc = &server.json;
        assert_eq!(doc["issuer"], hub.gateway_url.as_str());
        assert_eq!(
            doc["authorization_endpoint"],
            format!("{}/oauth/authorize", hub.gateway_url)
        );
        assert_eq!(
            doc["token_endpoint"],
            format!("{}/oauth/token", hub.gateway_url)
        );
        assert_eq!(
            doc["registration_endpoint"],
            format!("{}/oauth/register", hub.gateway_url)
        );
        assert_eq!(doc["response_types_supported"], json!(["code"]));
        assert_eq!(
            doc["grant_types_supported"],
            json!(["authorization_code", "refresh_token"])
        );
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            json!(["none", "client_secret_basic", "client_secret_post"])
        );
        assert_eq!(doc["client_id_metadata_document_supported"], true);
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        assert_eq!(
            doc["scopes_supported"],
            json!(["credits:read", "credits:spend", "mcp:tools"])
        );
    }
}

#[tokio::test]
async fn a_bad_client_or_redirect_uri_gets_an_error_page_and_never_a_redirect() {
    let (_google, hub) = hub().await;
    let (client_id, _) = operator_client(&hub, GPT_CALLBACK, true, &["credits:read"]).await;
    let person = OAuthBrowser::new(&hub);
    for query in [
        format!(
            "response_type=code&client_id={client_id}&redirect_uri={}",
            urlencode("https://evil.example/cb")
        ),
        format!(
            "response_type=code&client_id={client_id}&redirect_uri={}",
            urlencode(&format!("{GPT_CALLBACK}/more"))
        ),
        format!(
            "response_type=code&client_id=oc_unknown&redirect_uri={}",
            urlencode(GPT_CALLBACK)
        ),
        "response_type=code&redirect_uri=https%3A%2F%2Fevil.example%2Fcb".to_owned(),
    ] {
        let page = person.get(&format!("/oauth/authorize?{query}")).await;
        assert_eq!(page.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(page.headers().get("location").is_none(), "{query}");
        assert!(
            page.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
}

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

/// A public client's code for `scope` and `resource`, and the tokens it redeems for.
async fn public_tokens(
    hub: &SpawnedHub,
    person: &OAuthBrowser<'_>,
    client_id: &str,
    extra: &str,
) -> (String, Value) {
    let pkce = format!("&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}");
    let back = person
        .authorize(&public_query(client_id, &pkce), None)
        .await;
    let code = back
        .query
        .get("code")
        .unwrap_or_else(|| panic!("{back:?}"))
        .clone();
    let (status, tokens) = token(
        hub,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", client_id),
            ("code_verifier", VERIFIER),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    (code, tokens)
}

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
async fn tokens_open_only_their_resource_and_their_scopes() {
    let (_google, hub) = hub().await;
    let (client_id, _) =
        operator_client(&hub, APP_CALLBACK, false, &["credits:read", "mcp:tools"]).await;
    let person = OAuthBrowser::new(&hub);
    // Beyond the client's scopes: refused at the authorization.
    let pkce =
        format!("&code_challenge={CHALLENGE}&code_challenge_method=S256&scope=credits%3Aspend");
    let page = person
        .get(&format!(
            "/oauth/authorize?{}",
            public_query(&client_id, &pkce)
        ))
        .await;
    assert_eq!(redirected(&page).query["error"], "invalid_scope");
    // A resource the hub does not serve.
    let pkce = format!(
        "&code_challenge={CHALLENGE}&code_challenge_method=S256&resource={}",
        urlencode("https://elsewhere.example/mcp")
    );
    let page = person
        .get(&format!(
            "/oauth/authorize?{}",
            public_query(&client_id, &pkce)
        ))
        .await;
    assert_eq!(redirected(&page).query["error"], "invalid_target");

    // A read-only token for the REST API: it reads, it may not spend, and it is not for /mcp.
    let (_, api) = public_tokens(&hub, &person, &client_id, "&scope=credits%3Aread").await;
    let api = api["access_token"].as_str().unwrap();
    let read = with_bearer(&hub, Method::GET, "/api/mcp/v1/credits/balance", api, None).await;
    assert_eq!(read.status, StatusCode::OK);
    let spend = with_bearer(
        &hub,
        Method::POST,
        "/api/mcp/v1/credits/deduct",
        api,
        Some(&json!({"service": "sora2-video-generation", "cost": 1})),
    )
    .await;
    assert_eq!(spend.status, StatusCode::FORBIDDEN);
    assert_eq!(spend.json["error"]["code"], "insufficient_scope");
    let challenge = spend.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"credits:spend\""),
        "{challenge}"
    );
    let at_mcp = with_bearer(&hub, Method::POST, "/mcp", api, Some(&json!({}))).await;
    assert_eq!(
        at_mcp.status,
        StatusCode::UNAUTHORIZED,
        "a REST API token at /mcp"
    );

    // A token for the MCP server is not one for the REST API.
    let mcp_resource = format!(
        "&scope=mcp%3Atools&resource={}",
        urlencode(&format!("{}/mcp", hub.gateway_url))
    );
    let (_, mcp) = public_tokens(&hub, &person, &client_id, &mcp_resource).await;
    let mcp = mcp["access_token"].as_str().unwrap();
    let at_api = with_bearer(&hub, Method::GET, "/api/mcp/v1/credits/balance", mcp, None).await;
    assert_eq!(
        at_api.status,
        StatusCode::UNAUTHORIZED,
        "an MCP token at the REST API"
    );
    assert!(
        at_api.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("oauth-protected-resource")
    );
}

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
async fn a_metadata_document_client_id_on_a_private_address_is_not_fetched() {
    let (_google, hub) = hub().await;
    let person = OAuthBrowser::new(&hub);
    for client_id in [
        "https://127.0.0.1:1/client.json",
        "https://10.0.0.1/client.json",
        "https://localhost/client.json",
        "http://app.example/client.json",
    ] {
        let query = format!(
            "response_type=code&client_id={}&redirect_uri={}&code_challenge={CHALLENGE}&code_challenge_method=S256",
            urlencode(client_id),
            urlencode(APP_CALLBACK)
        );
        let page = person.get(&format!("/oauth/authorize?{query}")).await;
        assert_eq!(page.status(), StatusCode::BAD_REQUEST, "{client_id}");
        assert!(page.headers().get("location").is_none());
    }
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
