//! A GPT-Action-shaped confidential client end to end: authorize, both token exchanges, spending
//! with only the bearer token, refresh rotation with reuse detection, and disconnecting the app.

use super::*;

#[tokio::test]
async fn a_gpt_action_connects_with_a_confidential_client_and_spends_with_its_bearer_token() {
    for engine in engines() {
        gpt_action_flow(engine).await;
    }
}

/// The GPT's client as the operator registered it, and the browser of the person using it.
struct Gpt<'a> {
    hub: &'a SpawnedHub,
    client_id: String,
    secret: String,
    person: OAuthBrowser<'a>,
    query: String,
}

async fn gpt_action_flow(engine: Engine) {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(engine, &google).start().await;
    let (gpt, tokens) = connect(&hub).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    spends_with_the_bearer_token_only(&hub, &access).await;
    let second = consent_is_remembered(&gpt).await;
    refresh_rotates_and_a_reused_one_ends_its_family(&gpt, &tokens).await;
    disconnecting_stops_its_tokens(&gpt, engine, &access, &second).await;
}

/// Authorize and the first token exchange, "Default (POST request)": the secret in the body.
async fn connect(hub: &SpawnedHub) -> (Gpt<'_>, serde_json::Value) {
    let (client_id, secret) =
        operator_client(hub, GPT_CALLBACK, true, &["credits:read", "credits:spend"]).await;
    let secret = secret.expect("a confidential client's secret");
    let person = OAuthBrowser::new(hub);
    let query = format!(
        "response_type=code&client_id={client_id}&redirect_uri={}&state=st-1&scope=credits%3Aread%20credits%3Aspend",
        urlencode(GPT_CALLBACK)
    );
    let back = person.authorize(&query, None).await;
    assert!(back.location.starts_with(GPT_CALLBACK), "{back:?}");
    assert_eq!(back.query["state"], "st-1");
    assert_eq!(back.query["iss"], hub.gateway_url);
    let code = back.query["code"].clone();
    assert!(code.len() >= 32, "at least 128 random bits");

    let (status, tokens) = token(
        hub,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", GPT_CALLBACK),
            ("client_id", &client_id),
            ("client_secret", &secret),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "credits:read credits:spend");
    assert!(tokens["expires_in"].as_i64().unwrap() > 0);
    let gpt = Gpt {
        hub,
        client_id,
        secret,
        person,
        query,
    };
    (gpt, tokens)
}

/// Check and deduct with nothing but the bearer token; never a refund.
async fn spends_with_the_bearer_token_only(hub: &SpawnedHub, access: &str) {
    let check = with_bearer(
        hub,
        Method::POST,
        "/api/mcp/v1/credits/check",
        access,
        Some(&json!({"service": "sora2-video-generation", "cost": 1})),
    )
    .await;
    assert_eq!(check.status, StatusCode::OK, "{:?}", check.json);
    let before = check.json["balance"].as_i64().unwrap();
    let deduct = with_bearer(
        hub,
        Method::POST,
        "/api/mcp/v1/credits/deduct",
        access,
        Some(&json!({"service": "sora2-video-generation", "cost": 3})),
    )
    .await;
    assert_eq!(deduct.status, StatusCode::OK, "{:?}", deduct.json);
    assert_eq!(
        deduct.json["new_balance"].as_i64(),
        Some(before - 3),
        "{:?}",
        deduct.json
    );

    // An app's token never opens a refund, nor the admin API.
    let refund = with_bearer(
        hub,
        Method::POST,
        "/api/mcp/v1/credits/refund",
        access,
        Some(&json!({"transaction_id": "txn_x"})),
    )
    .await;
    assert_eq!(refund.status, StatusCode::FORBIDDEN);
}

/// Consent is remembered, and the "Basic authorization header" exchange works; a wrong secret
/// does not. The second pair of tokens.
async fn consent_is_remembered(gpt: &Gpt<'_>) -> serde_json::Value {
    let (hub, client_id, secret) = (gpt.hub, &gpt.client_id, &gpt.secret);
    // Consent is remembered: the next authorization goes straight back with a code, which the
    // "Basic authorization header" exchange redeems.
    let again = gpt.person.authorize(&gpt.query, None).await;
    let (status, second) = token(
        hub,
        &[
            ("grant_type", "authorization_code"),
            ("code", &again.query["code"]),
            ("redirect_uri", GPT_CALLBACK),
        ],
        Some((client_id, secret)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second}");

    // A wrong secret is invalid_client, 401.
    let (status, refused) = token(
        hub,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", second["refresh_token"].as_str().unwrap()),
        ],
        Some((client_id, "hub_cs_wrong")),
    )
    .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    second
}

/// Refresh rotates; the spent refresh token presented again revokes its family.
async fn refresh_rotates_and_a_reused_one_ends_its_family(
    gpt: &Gpt<'_>,
    tokens: &serde_json::Value,
) {
    let (hub, client_id, secret) = (gpt.hub, &gpt.client_id, &gpt.secret);
    let first_refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |token: String| {
        let (client_id, secret) = (client_id.clone(), secret.clone());
        async move {
            self::token(
                hub,
                &[("grant_type", "refresh_token"), ("refresh_token", &token)],
                Some((&client_id, &secret)),
            )
            .await
        }
    };
    let (status, rotated) = refresh(first_refresh.clone()).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let (status, reused) = refresh(first_refresh).await;
    assert_eq!(
        (status, reused["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, _) = refresh(rotated["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the family is revoked");
}

/// The user disconnects the app (with their own session code): its tokens stop at once.
async fn disconnecting_stops_its_tokens(
    gpt: &Gpt<'_>,
    engine: Engine,
    access: &str,
    second: &serde_json::Value,
) {
    let (hub, client_id, secret) = (gpt.hub, &gpt.client_id, &gpt.secret);
    let (session_code, _) = hub.signed_in_user().await;
    let apps = hub
        .call(
            Method::GET,
            "/api/auth/grants",
            &[("x-session-token", &session_code)],
            None,
        )
        .await;
    assert_eq!(apps.status, StatusCode::OK, "{:?}", apps.json);
    let app = &apps.json["apps"][0];
    assert_eq!(app["client_id"], client_id.as_str());
    assert_eq!(app["name"], "Sora2 Video Generator");
    assert_eq!(app["scopes"], json!(["credits:read", "credits:spend"]));
    assert!(app["last_used_at"].is_string());
    let grant = app["id"].as_str().unwrap();
    let gone = hub
        .call(
            Method::DELETE,
            &format!("/api/auth/grants/{grant}"),
            &[("x-session-token", &session_code)],
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let after = with_bearer(
        hub,
        Method::POST,
        "/api/mcp/v1/credits/check",
        access,
        Some(&json!({"service": "sora2-video-generation", "cost": 1})),
    )
    .await;
    assert_eq!(
        after.status,
        StatusCode::UNAUTHORIZED,
        "{engine:?}: a disconnected app's token stops"
    );
    let (status, _) = token(
        hub,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", second["refresh_token"].as_str().unwrap()),
        ],
        Some((client_id, secret)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "and its refresh tokens");
}
