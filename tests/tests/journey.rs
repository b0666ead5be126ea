//! The Sora2 journey through the gateway only, with everything started by test-support:
//! Google sign-in (fake provider) → code from the success page → verify-session → check →
//! deduct with a service key → refund; and the trust rules on the way.

use std::time::{Duration, Instant};

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{Engine, SpawnedHub, browser, engines, spawn_hub};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const SORA: &str = "sora2-video-generation";

async fn signed_in_user(hub: &SpawnedHub) -> (String, String) {
    let page = hub
        .sign_in(&browser(), "session=conv-9&return_to=chatgpt")
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.page);
    let code = page.code().expect("a code on the success page");
    let r = hub
        .call(
            Method::GET,
            "/api/auth/verify-session",
            &[("x-session-token", &code)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    (code, r.json["user"]["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn the_sora2_journey_through_the_gateway() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = spawn_hub(engine, &google).await;
        let (code, user_id) = signed_in_user(&hub).await;
        let key = hub
            .service_key(&["credits:check", "credits:deduct", "credits:refund"])
            .await;
        let bearer = format!("Bearer {key}");
        let as_gpt = [
            ("authorization", bearer.as_str()),
            ("x-user-id", user_id.as_str()),
        ];

        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/check",
                &as_gpt,
                Some(&json!({ "service": SORA, "cost": 10 })),
            )
            .await;
        assert_eq!(
            (r.status, r.json.clone()),
            (StatusCode::OK, json!({ "sufficient": true, "balance": 10 })),
            "{engine:?}"
        );

        let body = json!({ "service": SORA, "cost": 10, "metadata": { "prompt": "ช้างเต้นรำ" } });
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/deduct",
                &as_gpt,
                Some(&body),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
        assert_eq!(r.json["new_balance"], 0);
        let spent = r.json["transaction_id"].as_str().unwrap().to_owned();
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/deduct",
                &as_gpt,
                Some(&body),
            )
            .await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);

        let refund = json!({ "transaction_id": spent, "reason": "the video failed" });
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/refund",
                &as_gpt,
                Some(&refund),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
        assert_eq!(r.json["new_balance"], 10);

        // The user with their own code: their balance and history, body and query intact.
        let me = [("x-session-token", code.as_str())];
        let r = hub
            .call(Method::GET, "/api/mcp/v1/credits/balance", &me, None)
            .await;
        assert_eq!(r.json, json!({ "user_id": user_id, "balance": 10 }));
        let r = hub
            .call(
                Method::GET,
                "/api/mcp/v1/credits/transactions?limit=2",
                &me,
                None,
            )
            .await;
        let page = r.json["transactions"].as_array().unwrap();
        assert_eq!(page.len(), 2, "the query string arrived");
        assert_eq!(
            page[1]["metadata"]["prompt"], "ช้างเต้นรำ",
            "the body arrived intact"
        );
        let cursor = r.json["next_cursor"].as_str().unwrap();
        let r = hub
            .call(
                Method::GET,
                &format!("/api/mcp/v1/credits/transactions?limit=5&cursor={cursor}"),
                &me,
                None,
            )
            .await;
        assert_eq!(
            r.json["transactions"].as_array().unwrap().len(),
            1,
            "{engine:?}: the grant"
        );
    }
}

#[tokio::test]
async fn nobody_acts_for_someone_else() {
    let google = FakeGoogle::start().await;
    let hub = spawn_hub(Engine::Sqlite, &google).await;
    let (code, user_id) = signed_in_user(&hub).await;
    let victim =
        hub_core::users::NewUser::new("victim@example.com", "V", 100, hub_core::users::Role::User)
            .unwrap();
    let victim = hub
        .store
        .create_user(&victim)
        .await
        .unwrap()
        .unwrap()
        .user
        .id
        .to_string();
    let deduct = json!({ "service": SORA, "cost": 1 });

    // An end user naming someone else.
    let r = hub
        .call(
            Method::POST,
            "/api/mcp/v1/credits/deduct",
            &[("x-session-token", &code), ("x-user-id", &victim)],
            Some(&deduct),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.json);
    // Nobody, with a user id and forged internal headers.
    let forged = [
        ("x-user-id", victim.as_str()),
        ("x-hub-internal", "forged-forged-forged-forged-forged"),
        ("x-hub-caller", "system"),
    ];
    let r = hub
        .call(
            Method::POST,
            "/api/mcp/v1/credits/deduct",
            &forged,
            Some(&deduct),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.json);
    // A key without the scope; a revoked key; a made-up key.
    let reader = hub.service_key(&["credits:check"]).await;
    let r = hub
        .call(
            Method::POST,
            "/api/mcp/v1/credits/deduct",
            &[("x-api-key", &reader), ("x-user-id", &victim)],
            Some(&deduct),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = hub
        .call(
            Method::POST,
            "/api/mcp/v1/credits/deduct",
            &[("x-api-key", "hub_sk_made_up"), ("x-user-id", &victim)],
            Some(&deduct),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // An end user cannot refund, grant, or use a made-up code.
    let grant = json!({ "user_id": user_id, "amount": 1000, "reason": "me" });
    let r = hub
        .call(
            Method::POST,
            "/api/admin/credits/grant",
            &[("x-session-token", &code)],
            Some(&grant),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let fake_code = format!("VERIFIED-{}", "A".repeat(32));
    let r = hub
        .call(
            Method::POST,
            "/api/mcp/v1/credits/deduct",
            &[("x-session-token", &fake_code)],
            Some(&deduct),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Straight to core, skipping the gateway, an X-User-ID gets nothing.
    let r = hub
        .http
        .post(format!("{}/api/mcp/v1/credits/deduct", hub.core_url))
        .header("x-user-id", &victim)
        .json(&deduct)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        hub.store.balance(victim.parse().unwrap()).await.unwrap(),
        Some(100),
        "the victim kept every credit"
    );
}

#[tokio::test]
async fn unknown_paths_big_bodies_and_a_service_that_is_down() {
    let google = FakeGoogle::start().await;
    let hub = spawn_hub(Engine::Sqlite, &google).await;
    let r = hub.call(Method::GET, "/nothing/here", &[], None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json["error"]["code"], "not_found");
    assert!(r.json["error"]["request_id"].as_str().is_some());

    let key = hub.service_key(&["credits:check"]).await;
    let started = Instant::now();
    let r = hub
        .call(
            Method::POST,
            "/mcp",
            &[("x-api-key", &key)],
            Some(&json!({ "jsonrpc": "2.0" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{:?}", r.json);
    assert_eq!(r.json["error"]["code"], "upstream_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "quickly, never a hang"
    );

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

#[tokio::test]
async fn the_gpt_callable_form_static_key_and_the_code_in_the_body() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = spawn_hub(engine, &google).await;
        let (code, user_id) = signed_in_user(&hub).await;
        let gpt_key = hub.service_key(&["gpt"]).await;
        let bearer = format!("Bearer {gpt_key}");
        let gpt = [("authorization", bearer.as_str())];

        let r = hub
            .call(
                Method::POST,
                "/api/auth/verify-session",
                &gpt,
                Some(&json!({ "session_token": code })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{engine:?} {:?}", r.json);
        assert_eq!(r.json["user"]["id"], user_id.as_str());
        let r = hub
            .call(
                Method::POST,
                "/api/auth/verify-session",
                &gpt,
                Some(&json!({ "session_token": "VERIFIED-guess" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);

        let check = json!({ "service": SORA, "cost": 10, "session_token": code });
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/check",
                &gpt,
                Some(&check),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
        assert_eq!(r.json["balance"], 10);
        let deduct = json!({ "service": SORA, "cost": 10, "metadata": { "video": "v1" }, "session_token": code });
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/deduct",
                &gpt,
                Some(&deduct),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
        assert_eq!(r.json["new_balance"], 0);

        // The GPT key never picks the user: not by X-User-ID, and a code acts only as its own user.
        let victim = hub_core::users::NewUser::new(
            "other@example.com",
            "O",
            100,
            hub_core::users::Role::User,
        )
        .unwrap();
        let victim = hub
            .store
            .create_user(&victim)
            .await
            .unwrap()
            .unwrap()
            .user
            .id
            .to_string();
        let named = [
            ("authorization", bearer.as_str()),
            ("x-user-id", victim.as_str()),
        ];
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/deduct",
                &named,
                Some(&json!({ "service": SORA, "cost": 1 })),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.json);
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/deduct",
                &named,
                Some(&deduct),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "a code naming someone else"
        );
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/check",
                &gpt,
                Some(&json!({ "service": SORA, "cost": 1 })),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "a GPT key without a code acts for nobody"
        );
        assert_eq!(
            hub.store.balance(victim.parse().unwrap()).await.unwrap(),
            Some(100)
        );
    }
}
