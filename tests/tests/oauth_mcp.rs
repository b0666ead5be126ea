//! An MCP client connects the way ChatGPT apps and Claude connectors do, with a client library
//! nobody on the team wrote (rmcp's `auth`): the 401 challenge at `/mcp`, RFC 9728 and RFC 8414
//! discovery, then dynamic registration or a Client ID Metadata Document as the client id, PKCE
//! (S256) and the `resource` parameter; the person signs in and consents in the browser; then
//! tools over Streamable HTTP and over the WebSocket, ending in a billed `generate_video`.

use std::sync::Arc;

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::fake_openai::FakeOpenAi;
use hub_test_support::{Engine, SpawnedHub};
use reqwest::StatusCode;
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{
    AuthClient, AuthorizationManager, AuthorizationRequest, AuthorizationSession,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;

use crate::mcp_tools::{Client, balance, call, open_socket, over_socket};
use crate::oauth_flow::OAuthBrowser;

const REDIRECT: &str = "http://127.0.0.1:1/callback";

/// How the client makes itself known.
enum Registering {
    Dynamic,
    MetadataDocument(String),
}

/// Authorizes an rmcp client at the hub's MCP server, the person consenting in `person`.
async fn authorize(
    hub: &SpawnedHub,
    person: &OAuthBrowser<'_>,
    registering: Registering,
) -> AuthorizationManager {
    let mcp = format!("{}/mcp", hub.gateway_url);
    let challenge = hub.http.post(&mcp).json(&json!({})).send().await.unwrap();
    assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED);
    let challenge = challenge.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut manager = AuthorizationManager::new_allowing_private_addresses(mcp.as_str())
        .await
        .unwrap();
    let resolution = manager
        .resolve_metadata_from_challenge(Some(&challenge))
        .await
        .unwrap();
    assert!(resolution.source.is_discovered(), "{:?}", resolution.source);
    manager.set_metadata(resolution.metadata);
    let mut request = AuthorizationRequest::new(REDIRECT)
        .with_client_name("An MCP client")
        .with_scopes(["mcp:tools"]);
    if let Registering::MetadataDocument(url) = registering {
        request = request.with_client_metadata_url(url);
    }
    let session = AuthorizationSession::new(manager, request)
        .await
        .map_err(|(_, e)| e)
        .unwrap();
    let url = session.get_authorization_url().to_owned();
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    assert!(url.contains("resource="), "{url}");
    let back = person.authorize_at(&url, None).await;
    session.handle_callback_url(&back.location).await.unwrap();
    session.auth_manager
}

async fn over_http(hub: &SpawnedHub, manager: AuthorizationManager) -> Client {
    let transport = StreamableHttpClientTransport::with_client(
        AuthClient::new(reqwest13::Client::new(), manager),
        StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", hub.gateway_url)),
    );
    ().serve(transport).await.unwrap()
}

async fn over_websocket(hub: &SpawnedHub, manager: &AuthorizationManager) -> Client {
    let token = manager.get_access_token().await.unwrap();
    let bearer = format!("Bearer {token}");
    over_socket(open_socket(hub, &[("authorization", &bearer)]).await).await
}

/// A billed video over `client`, for the user `user` who starts with 100 credits.
async fn billed_video(hub: &SpawnedHub, client: &Client, user: &str, before: i64) {
    let (error, body) = call(client, "get_balance", json!({})).await;
    assert!(!error, "{body}");
    assert_eq!(body["available_balance"], before);
    let (error, body) = call(
        client,
        "generate_video",
        json!({ "prompt": "a cat surfing" }),
    )
    .await;
    assert!(!error, "{body}");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["credits_charged"], 30);
    assert_eq!(
        balance(hub, user).await,
        json!({ "balance": before - 30, "held": 0 })
    );
}

/// The user the fake Google signs in, with `credits` added.
async fn google_user_with(hub: &SpawnedHub, credits: i64) -> String {
    let user = hub
        .store
        .find_user_by_email("somchai@example.com")
        .await
        .unwrap()
        .expect("the person signed in");
    hub.store
        .grant(
            &hub_ledger::Grant {
                user_id: user.id,
                amount: credits,
                reason: "test".into(),
                request_id: None,
                terms: Default::default(),
            },
            None,
        )
        .await
        .unwrap();
    user.id.to_string()
}

#[tokio::test]
async fn an_mcp_client_registers_dynamically_and_calls_paid_tools_over_both_transports() {
    let google = FakeGoogle::start().await;
    let openai = FakeOpenAi::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .openai(&openai)
        .start()
        .await;
    let person = OAuthBrowser::new(&hub);
    let manager = authorize(&hub, &person, Registering::Dynamic).await;
    let user = google_user_with(&hub, 90).await;
    let websocket = over_websocket(&hub, &manager).await;
    billed_video(&hub, &websocket, &user, 100).await;
    websocket.cancel().await.unwrap();
    let http = over_http(&hub, manager).await;
    billed_video(&hub, &http, &user, 70).await;
    http.cancel().await.unwrap();
}

/// Serves `document` at `https://localhost:PORT/client.json`, with a certificate of its own.
async fn metadata_document_server(
    document: impl Fn(&str) -> serde_json::Value + Send + 'static,
) -> (String, tokio::task::JoinHandle<()>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!(
        "https://localhost:{}/client.json",
        listener.local_addr().unwrap().port()
    );
    let body = document(&url).to_string();
    let app = axum::Router::new().route(
        "/client.json",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config)),
    )
    .unwrap();
    let task = tokio::spawn(async move {
        let _ = server.serve(app.into_make_service()).await;
    });
    (url, task)
}

#[tokio::test]
async fn an_mcp_client_identified_by_its_metadata_document_calls_paid_tools() {
    let (url, _server) = metadata_document_server(|url| {
        json!({
            "client_id": url,
            "client_name": "Metadata Client",
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        })
    })
    .await;
    let google = FakeGoogle::start().await;
    let openai = FakeOpenAi::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .openai(&openai)
        .auth(|config| config.oauth.allow_insecure_client_metadata = true)
        .start()
        .await;
    let person = OAuthBrowser::new(&hub);
    let manager = authorize(&hub, &person, Registering::MetadataDocument(url.clone())).await;
    let user = google_user_with(&hub, 90).await;
    let http = over_http(&hub, manager).await;
    billed_video(&hub, &http, &user, 100).await;
    http.cancel().await.unwrap();
    // The user sees the app under its document's name and URL.
    let grants = hub.store.list_grants(user.parse().unwrap()).await.unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].client_id, url);
    assert_eq!(grants[0].client_name, "Metadata Client");
}
