//! The discovery documents and the MCP challenge that start it all, the error page (never a
//! redirect) for a bad client or redirect URI, and metadata-document client ids on private addresses.

use super::*;

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
