//! The gateway as a reverse proxy: unknown paths, bodies and query strings, a service that is
//! down, oversized bodies (with and without a length), WebSocket pass-through, TLS, CORS, the
//! security headers, request ids and metrics.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{Engine, SpawnedHub, count, engines};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

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

/// A WebSocket upstream that echoes text frames, standing in for the MCP service.
async fn echo_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    if let Message::Text(text) = message {
                        let reply = format!("echo:{}", text.as_str());
                        if socket.send(Message::text(reply)).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    format!("http://{address}")
}

#[tokio::test]
async fn websockets_pass_through_to_the_mcp_service_for_known_callers_only() {
    let google = FakeGoogle::start().await;
    let upstream = echo_upstream().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .gateway(|config| {
            config.mcp_url = upstream;
            // A joined WebSocket outlives the wait for response headers.
            config.upstream_timeout = Duration::from_millis(500);
        })
        .start()
        .await;
    let key = hub.service_key(&["credits:check"]).await;
    let url = hub.gateway_url.replace("http://", "ws://") + "/api/mcp/ws";

    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-api-key", key.parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the upgrade passes through");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for n in 0..3 {
        socket
            .send(Message::text(format!("hello {n}")))
            .await
            .unwrap();
        let reply = socket.next().await.unwrap().unwrap();
        assert_eq!(reply, Message::text(format!("echo:hello {n}")));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    socket.send(Message::text("still here")).await.unwrap();
    let reply = socket.next().await.unwrap().unwrap();
    assert_eq!(
        reply,
        Message::text("echo:still here"),
        "no total timeout on an upgraded connection"
    );

    // Without a credential the upgrade is refused before it happens.
    let anonymous = url.as_str().into_client_request().unwrap();
    match tokio_tungstenite::connect_async(anonymous).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED)
        }
        other => panic!("an anonymous upgrade must be refused, got {other:?}"),
    }
}

/// The gateway as it runs in production: several serving threads, each with its own runtime,
/// beside the main runtime that holds the stores; concurrent callers on every engine spend
/// exactly what they have, and an upgrade still passes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_serving_threads_carry_the_same_traffic() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let upstream = echo_upstream().await;
        let hub = SpawnedHub::builder(engine, &google)
            .gateway(|config| {
                config.threads = 3;
                config.mcp_url = upstream;
                // 45 credit calls at once per caller, then one per 1.33 s, across all threads.
                config.limits.credits = hub_gateway::limits::PerMinute(45);
            })
            .start()
            .await;
        let user = hub.user_with(100).await.to_string();
        let key = hub.service_key(&["credits:check", "credits:deduct"]).await;
        let bearer = format!("Bearer {key}");
        let caller = [
            ("authorization", bearer.as_str()),
            ("x-user-id", user.as_str()),
        ];
        let body = json!({ "service": "sora2-video-generation", "cost": 3 });
        let replies = futures_util::future::join_all((0..40).map(|_| {
            hub.call(
                Method::POST,
                "/api/mcp/v1/credits/deduct",
                &caller,
                Some(&body),
            )
        }))
        .await;
        let paid = count(&replies, StatusCode::OK);
        let refused = count(&replies, StatusCode::PAYMENT_REQUIRED);
        assert_eq!((paid, refused), (33, 7), "{engine:?}");
        let r = hub
            .call(Method::GET, "/api/mcp/v1/credits/balance", &caller, None)
            .await;
        assert_eq!(r.json["balance"], 1, "{engine:?}: {:?}", r.json);
        // 41 calls so far; of 10 more, whichever threads serve them, the caller's one budget
        // lets through 4, and one more per 1.33 s this test has taken (three budgets of 45, one
        // per thread, would let all through): the threads share the limits.
        let replies = futures_util::future::join_all(
            (0..10).map(|_| hub.call(Method::GET, "/api/mcp/v1/credits/balance", &caller, None)),
        )
        .await;
        let limited = count(&replies, StatusCode::TOO_MANY_REQUESTS);
        assert!((3..=6).contains(&limited), "{engine:?}: {limited} limited");

        let url = hub.gateway_url.replace("http://", "ws://") + "/api/mcp/ws";
        let mut request = url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("x-api-key", key.parse().unwrap());
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        socket.send(Message::text("hello")).await.unwrap();
        let reply = socket.next().await.unwrap().unwrap();
        assert_eq!(reply, Message::text("echo:hello"), "{engine:?}");
    }
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
async fn tls_with_a_certificate_made_in_the_test() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();

    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .gateway(|config| {
            config.tls = Some(hub_gateway::TlsFiles {
                cert_path: cert_path.clone(),
                key_path: key_path.clone(),
            });
        })
        .start()
        .await;
    assert!(hub.gateway_url.starts_with("https://localhost:"));
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let user = hub.user_with(40).await;
    let key = hub.service_key(&["credits:check"]).await;
    let r = client
        .post(format!("{}/api/mcp/v1/credits/check", hub.gateway_url))
        .header("x-api-key", &key)
        .header("x-user-id", user.to_string())
        .json(&json!({ "service": "sora2", "cost": 30 }))
        .send()
        .await
        .expect("HTTPS to the gateway");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()
            .get("strict-transport-security")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some("max-age=31536000; includeSubDomains".to_owned())
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({ "sufficient": true, "balance": 40 }));

    // Plain HTTP to the TLS port gets no answer it could mistake for one.
    let plain = hub
        .gateway_url
        .replace("https://localhost", "http://127.0.0.1");
    let result = reqwest::Client::new()
        .get(format!("{plain}/health"))
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    assert!(
        result.is_err() || !result.unwrap().status().is_success(),
        "no plain HTTP on the TLS port"
    );
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
