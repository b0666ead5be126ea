//! Deducting credits through the gateway only: the Sora2 journey (Google sign-in with the fake
//! provider → code from the success page → verify-session → check → deduct with a service key →
//! refund), the same journey in the GPT-callable form, and what a GPT key may never do.

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{Engine, SpawnedHub, engines};
use reqwest::{Method, StatusCode};
use serde_json::json;

const SORA: &str = "sora2-video-generation";

#[tokio::test]
async fn the_sora2_journey_through_the_gateway() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let (code, user_id) = hub.signed_in_user().await;
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
        assert_eq!(
            r.json,
            json!({ "user_id": user_id, "balance": 10, "held": 0, "available_balance": 10 })
        );
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
async fn the_gpt_callable_form_static_key_and_the_code_in_the_body() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let (code, user_id) = hub.signed_in_user().await;
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

#[tokio::test]
async fn a_gpt_naming_a_user_id_in_the_body_is_refused() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google).start().await;
    let (code, _) = hub.signed_in_user().await;
    let victim = hub.user_with(100).await.to_string();
    let bearer = format!("Bearer {}", hub.service_key(&["gpt"]).await);
    let gpt = [("authorization", bearer.as_str())];
    for body in [
        json!({ "service": SORA, "cost": 5, "user_id": victim }),
        json!({ "service": SORA, "cost": 5, "user_id": victim, "session_token": code }),
        json!({ "service": SORA, "cost": 5, "X-User-ID": victim, "session_token": code }),
    ] {
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/deduct",
                &gpt,
                Some(&body),
            )
            .await;
        assert!(
            r.status == StatusCode::FORBIDDEN || r.status == StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {} {:?}",
            r.status,
            r.json
        );
    }
    assert_eq!(
        hub.store.balance(victim.parse().unwrap()).await.unwrap(),
        Some(100),
        "the user named in the body kept every credit"
    );
}

#[tokio::test]
async fn an_idempotency_key_passes_through_the_gateway() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let user = hub.user_with(100).await.to_string();
        let key = hub.service_key(&["credits:deduct"]).await;
        let headers = [
            ("x-api-key", key.as_str()),
            ("x-user-id", user.as_str()),
            ("idempotency-key", "video-42"),
        ];
        let body = json!({ "service": SORA, "cost": 30 });
        let first = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/deduct",
                &headers,
                Some(&body),
            )
            .await;
        let again = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/deduct",
                &headers,
                Some(&body),
            )
            .await;
        assert_eq!(first.status, StatusCode::OK, "{engine:?} {:?}", first.json);
        assert_eq!(first.json, again.json, "the first answer, replayed");
        assert_eq!(
            again
                .headers
                .get("idempotent-replayed")
                .map(|v| v.to_str().unwrap()),
            Some("true")
        );
        assert_eq!(
            hub.store.balance(user.parse().unwrap()).await.unwrap(),
            Some(70),
            "charged once"
        );
    }
}
