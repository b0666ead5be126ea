//! CORS, the security headers, request ids and metrics, through the router and on the direct path.

use super::*;

#[tokio::test]
async fn cors_security_headers_request_ids_and_metrics() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .gateway(|config| {
            config.cors_allowed_origins = vec!["https://app.example.com".to_owned()];
        })
        .start()
        .await;
    let url = format!("{}/api/mcp/v1/credits/check", hub.gateway_url);
    let preflight = |origin: &'static str| {
        hub.http
            .request(Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "x-session-token, content-type",
            )
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(
        header(&allowed, "access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );
    assert_eq!(
        header(&allowed, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    let refused = preflight("https://evil.example.com").await.unwrap();
    assert_eq!(header(&refused, "access-control-allow-origin"), None);

    headers_ids_and_metrics(&hub, "through the router (CORS configured)").await;
}

/// Without CORS, the gateway's server hands forwarded requests to the proxy directly: the same
/// security headers, request ids, error shape and metrics as through the router's layers.
#[tokio::test]
async fn security_headers_request_ids_and_metrics_on_the_direct_path() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google).start().await;
    headers_ids_and_metrics(&hub, "the direct path").await;
    let r = hub
        .call(Method::GET, "/.well-known/jwks.json", &[], None)
        .await;
    assert!(
        r.headers.get("x-request-id").is_some(),
        "a forwarded request gets an id when none is sent"
    );
    // The gateway's own routes keep their methods.
    let r = hub.call(Method::POST, "/health", &[], None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.json["error"]["request_id"].is_string(), "{:?}", r.json);
}

async fn headers_ids_and_metrics(hub: &hub_test_support::SpawnedHub, what: &str) {
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    // Security headers on the API, and a request id kept from the client or made.
    let r = hub
        .http
        .get(format!("{}/api/mcp/v1/credits/balance", hub.gateway_url))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
    assert_eq!(
        header(&r, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(header(&r, "x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(
        header(&r, "strict-transport-security"),
        None,
        "not over plain HTTP"
    );
    assert_eq!(header(&r, "x-request-id").as_deref(), Some("trace-me-123"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], "trace-me-123");
    let r = hub.call(Method::GET, "/health", &[], None).await;
    assert!(
        r.headers.get("x-request-id").is_some(),
        "one is made when none is sent"
    );

    // Metrics: requests by route class and status, and upstream latency (rate-limit rejections
    // are counted in rate_limits.rs).
    let r = hub
        .call(Method::GET, "/.well-known/jwks.json", &[], None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = hub
        .http
        .get(format!("{}/metrics", hub.gateway_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(
        text.contains(r#"hub_http_requests_total{service="gateway",route="credits",method="GET",status="401"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"hub_upstream_response_seconds_count{service="gateway",upstream="auth"} 1"#
        ),
        "{text}"
    );
}
