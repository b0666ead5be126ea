//! Tokens open only their own resource and only their scopes.

use super::*;

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
