//! How requests arrive: WebSocket pass-through, several serving threads, and TLS.

use super::*;

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
