//! Where requests go: unknown paths, bodies and query strings, a service that is down, oversized
//! bodies (with and without a length), a head that never ends, and the mailed links' pages.

use super::*;

#[tokio::test]
async fn unknown_paths_big_bodies_and_a_service_that_is_down() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google).start().await;
    let r = hub.call(Method::GET, "/nothing/here", &[], None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json["error"]["code"], "not_found");
    assert!(r.json["error"]["request_id"].as_str().is_some());

    let key = hub.service_key(&["credits:check"]).await;
    // A hub whose MCP service is down.
    let down = SpawnedHub::builder(Engine::Sqlite, &google)
        .gateway(|config| {
            config.mcp_url = "http://127.0.0.1:9".into();
        })
        .start()
        .await;
    let down_key = down.service_key(&["credits:check"]).await;
    let started = Instant::now();
    let r = down
        .call(
            Method::POST,
            "/mcp",
            &[("x-api-key", &down_key)],
            Some(&json!({ "jsonrpc": "2.0" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{:?}", r.json);
    assert_eq!(r.json["error"]["code"], "upstream_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "quickly, never a hang"
    );
    let r = down.call(Method::GET, "/ready", &[], None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.json);
    assert_eq!(r.json["mcp"], "unavailable");
    assert_eq!(r.json["core"], "ready");

    let big = Value::String("x".repeat(2 * 1024 * 1024));
    let r = hub
        .call(
            Method::POST,
            "/api/mcp/v1/credits/check",
            &[("x-api-key", &key)],
            Some(&big),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);

    let r = hub.call(Method::GET, "/health", &[], None).await;
    assert_eq!(r.json["status"], "ok");
    let r = hub.call(Method::GET, "/ready", &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    let r = hub
        .call(Method::GET, "/.well-known/jwks.json", &[], None)
        .await;
    assert_eq!(
        r.json["keys"][0]["kty"], "OKP",
        "auth's public keys through the gateway"
    );
    let r = hub
        .call(
            Method::GET,
            "/api/auth/verify-session",
            &[("x-session-token", "VERIFIED-nope")],
            None,
        )
        .await;
    assert_eq!(
        r.json["error"]["code"], "invalid_session",
        "verify-session answers for itself"
    );
}

/// A client that never finishes a request's head loses its connection once the header read
/// timeout passes (slow-header attacks); a prompt client is served as ever.
#[tokio::test]
async fn a_request_head_that_never_ends_loses_the_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .gateway(|config| {
            config.header_read_timeout = Duration::from_millis(300);
        })
        .start()
        .await;
    let address = hub.gateway_url.trim_start_matches("http://");
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: hub\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "the gateway closes the connection");
    assert!(started.elapsed() >= Duration::from_millis(250));
    let r = hub.call(Method::GET, "/health", &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_streamed_body_past_the_limit_is_413() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google).start().await;
    let key = hub.service_key(&["credits:check"]).await;
    let chunks = (0..40).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024]));
    for path in ["/api/mcp/v1/credits/check", "/api/auth/register"] {
        let chunks = (0..40).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024]));
        let r = hub
            .http
            .post(format!("{}{path}", hub.gateway_url))
            .header("x-api-key", &key)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
    }
    drop(chunks);
}

#[tokio::test]
async fn the_pages_and_operations_of_mailed_links_are_reached_through_the_gateway() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google).start().await;
    let http = reqwest::Client::new();
    let token = "A".repeat(43);
    for (page, field) in [
        ("/auth/verify-email", "Verify my email"),
        ("/auth/reset-password", "type=\"password\""),
    ] {
        let r = http
            .get(format!("{}{page}?token={token}", hub.gateway_url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{page}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("form-action 'self'"), "{page}: {csp}");
        let html = r.text().await.unwrap();
        assert!(html.contains(field), "{page}: {html}");
        assert!(
            html.contains(&format!("action=\"{page}\"")),
            "{page}: {html}"
        );
        // The form posts back through the gateway too; an unknown token is refused on a page.
        let r = http
            .post(format!("{}{page}", hub.gateway_url))
            .form(&[("token", token.as_str()), ("password", "long enough")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{page}");
        assert!(r.text().await.unwrap().contains("Link not valid"));
    }
    let r = http
        .post(format!("{}/api/auth/password/forgot", hub.gateway_url))
        .json(&json!({ "email": "someone@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = http
        .post(format!("{}/api/auth/email/verify", hub.gateway_url))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_link");
}
