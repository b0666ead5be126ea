//! Callers under abuse: anonymous work limited by address before a body is read, failed
//! credentials refused before any lookup, made-up keys remembered as unknown, and a shared address
//! that cannot lock out ChatGPT's users.

use super::*;

#[tokio::test]
async fn an_address_without_credentials_is_limited_before_its_body_is_read() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .gateway(|config| {
            config.limits.default = PerMinute(2);
        })
        .start()
        .await;
    for _ in 0..2 {
        let r = hub
            .call(
                Method::POST,
                "/api/auth/login",
                &[],
                Some(&json!({ "email": "nobody@example.com", "password": "wrong password" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.json);
    }
    // The third announces a body and never sends it: it is refused at once, not read.
    let mut stream = TcpStream::connect(address(&hub)).await.unwrap();
    stream
        .write_all(b"POST /api/auth/login HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    assert!(head.to_lowercase().contains("retry-after:"), "{head}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn failed_credentials_from_one_address_are_refused_before_any_lookup() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .gateway(|config| {
            config.limits.verify_failures = PerMinute(3);
        })
        .start()
        .await;
    let check = json!({ "service": "sora2", "cost": 1 });
    for i in 0..3 {
        let junk = format!("hub_sk_made_up_{i}");
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/check",
                &[("x-api-key", &junk)],
                Some(&check),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.json);
    }
    assert_eq!(counter(&hub, KEY_LOOKUPS).await, 3);
    let junk_code = format!("VERIFIED-{}", "A".repeat(32));
    let junk_jwt = "Bearer eyJhbGciOiJFZERTQSIsImtpZCI6Im5vcGUifQ.e30.c2ln".to_owned();
    let junk_key = "Bearer hub_sk_made_up_again".to_owned();
    let attempts: [(&str, &str); 4] = [
        ("x-api-key", "hub_sk_made_up_9"),
        ("x-session-token", &junk_code),
        ("authorization", &junk_jwt),
        ("authorization", &junk_key),
    ];
    for (name, value) in attempts {
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/check",
                &[(name, value)],
                Some(&check),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{name}: {:?}",
            r.json
        );
        assert!(r.headers.contains_key("retry-after"), "{name}");
        assert_eq!(r.json["error"]["code"], "rate_limited");
    }
    assert_eq!(counter(&hub, KEY_LOOKUPS).await, 3, "no key was read");
    assert_eq!(
        counter(&hub, SESSION_LOOKUPS).await,
        0,
        "no session was read"
    );
}

#[tokio::test]
async fn a_made_up_key_is_remembered_as_unknown() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google).start().await;
    let check = json!({ "service": "sora2", "cost": 1 });
    for _ in 0..5 {
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/check",
                &[("authorization", "Bearer hub_sk_made_up")],
                Some(&check),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.json);
    }
    assert_eq!(
        counter(&hub, KEY_LOOKUPS).await,
        1,
        "the database was asked once"
    );
}

#[tokio::test]
async fn one_abuser_behind_a_shared_address_does_not_lock_out_chatgpt_users() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .gateway(|config| {
            config.limits.verify_failures = PerMinute(3);
        })
        .start()
        .await;
    let (code, _) = hub.signed_in_user().await;
    let gpt = format!("Bearer {}", hub.service_key(&["gpt"]).await);
    let gpt_headers = [("authorization", gpt.as_str())];
    let verify = |token: &str| json!({ "session_token": token });
    let r = hub
        .call(
            Method::POST,
            "/api/auth/verify-session",
            &gpt_headers,
            Some(&verify(&code)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);

    // Someone else at the same address (OpenAI's, for every GPT) guesses codes until refused.
    for i in 0..3 {
        let guess = format!("VERIFIED-{i:032}");
        let r = hub
            .call(
                Method::GET,
                "/api/auth/verify-session",
                &[("x-session-token", &guess)],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let guess = format!("VERIFIED-{:032}", 7);
    let r = hub
        .call(
            Method::GET,
            "/api/auth/verify-session",
            &[("x-session-token", &guess)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);

    // The GPT's users go on: its failures are counted by its key.
    let r = hub
        .call(
            Method::POST,
            "/api/auth/verify-session",
            &gpt_headers,
            Some(&verify(&code)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    let r = hub
        .call(
            Method::POST,
            "/api/mcp/v1/credits/check",
            &gpt_headers,
            Some(&json!({ "service": "sora2", "cost": 1, "session_token": code })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);

    // And the key has a budget of its own.
    for i in 0..3 {
        let guess = format!("VERIFIED-{i:032}");
        let r = hub
            .call(
                Method::POST,
                "/api/auth/verify-session",
                &gpt_headers,
                Some(&verify(&guess)),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.json);
    }
    let r = hub
        .call(
            Method::POST,
            "/api/auth/verify-session",
            &gpt_headers,
            Some(&verify(&code)),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}
