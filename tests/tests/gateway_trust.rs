//! Who may act for whom, decided at the gateway: an end user acts only as themselves, nobody
//! without a credential gets anything, forged internal headers and a direct call to core are
//! worthless.

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{Engine, SpawnedHub};
use reqwest::{Method, StatusCode};
use serde_json::json;

const SORA: &str = "sora2-video-generation";

#[tokio::test]
async fn nobody_acts_for_someone_else() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google).start().await;
    let (code, user_id) = hub.signed_in_user().await;
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
async fn a_revoked_service_key_stops_working_within_seconds() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .gateway(|config| {
            config.service_key_cache = std::time::Duration::from_secs(1);
        })
        .start()
        .await;
    let user = hub.user_with(100).await.to_string();
    let scopes = vec!["credits:check".to_owned()];
    let made = hub_core::service_keys::new_key("to-revoke", &scopes).unwrap();
    hub.store.insert_service_key(&made).await.unwrap();
    let headers = [
        ("x-api-key", made.key.as_str()),
        ("x-user-id", user.as_str()),
    ];
    let check = json!({ "service": SORA, "cost": 1 });
    let r = hub
        .call(
            Method::POST,
            "/api/mcp/v1/credits/check",
            &headers,
            Some(&check),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(hub.store.revoke_service_key(&made.record.id).await.unwrap());
    let revoked_at = std::time::Instant::now();
    loop {
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/check",
                &headers,
                Some(&check),
            )
            .await;
        if r.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            revoked_at.elapsed() < std::time::Duration::from_millis(1500),
            "a revoked key still works after the cache interval"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
