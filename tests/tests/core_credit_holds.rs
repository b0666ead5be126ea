//! Credit holds through the gateway: reserve, capture what was used or release, each settled
//! once; an expired hold frees itself (410 afterwards); check and deduct see only what is
//! available.

use std::time::Duration;

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SpawnedHub, engines};
use reqwest::{Method, StatusCode};
use serde_json::json;

const RESERVE: &str = "/api/mcp/v1/credits/reserve";

#[tokio::test]
async fn reserve_then_capture_or_release_once() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let user = hub.user_with(100).await.to_string();
        let key = hub.service_key(&["credits:check", "credits:deduct"]).await;
        let as_service = [("x-api-key", key.as_str()), ("x-user-id", user.as_str())];

        let r = hub
            .call(
                Method::POST,
                RESERVE,
                &as_service,
                Some(&json!({ "service": "sora2", "cost": 30 })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{engine:?} {:?}", r.json);
        assert_eq!(r.json["held"], 30);
        assert_eq!(r.json["available_balance"], 70);
        assert!(r.json["expires_at"].is_string());
        let id = r.json["reservation_id"].as_str().unwrap().to_owned();

        // Check and deduct see 70.
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/check",
                &as_service,
                Some(&json!({ "service": "sora2", "cost": 71 })),
            )
            .await;
        assert_eq!(
            (r.status, r.json["balance"].clone()),
            (StatusCode::PAYMENT_REQUIRED, json!(70))
        );
        let r = hub
            .call(
                Method::GET,
                "/api/mcp/v1/credits/balance",
                &as_service,
                None,
            )
            .await;
        assert_eq!(
            r.json,
            json!({ "user_id": user, "balance": 100, "held": 30, "available_balance": 70 })
        );

        // Capture what was used; the rest is freed; once only.
        let capture = format!("/api/mcp/v1/credits/reservations/{id}/capture");
        let r = hub
            .call(
                Method::POST,
                &capture,
                &as_service,
                Some(&json!({ "amount": 12 })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
        assert_eq!(
            (
                r.json["status"].clone(),
                r.json["captured"].clone(),
                r.json["released"].clone()
            ),
            (json!("captured"), json!(12), json!(18))
        );
        assert_eq!(
            (
                r.json["new_balance"].clone(),
                r.json["available_balance"].clone()
            ),
            (json!(88), json!(88))
        );
        assert!(
            r.json["transaction_id"]
                .as_str()
                .unwrap()
                .starts_with("txn_")
        );
        let r = hub.call(Method::POST, &capture, &as_service, None).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert_eq!(r.json["error"]["code"], "already_settled");

        // Release gives it all back; once only.
        let r = hub
            .call(
                Method::POST,
                RESERVE,
                &as_service,
                Some(&json!({ "service": "sora2", "cost": 88 })),
            )
            .await;
        let id = r.json["reservation_id"].as_str().unwrap().to_owned();
        let r = hub
            .call(
                Method::POST,
                RESERVE,
                &as_service,
                Some(&json!({ "service": "sora2", "cost": 1 })),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::PAYMENT_REQUIRED,
            "nothing left to hold"
        );
        assert_eq!(r.json["available_balance"], 0);
        let release = format!("/api/mcp/v1/credits/reservations/{id}/release");
        let r = hub.call(Method::POST, &release, &as_service, None).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
        assert_eq!(
            (r.json["status"].clone(), r.json["released"].clone()),
            (json!("released"), json!(88))
        );
        let r = hub.call(Method::POST, &release, &as_service, None).await;
        assert_eq!(r.status, StatusCode::CONFLICT);

        // An expired hold: 410, its credits free again.
        let r = hub
            .call(
                Method::POST,
                RESERVE,
                &as_service,
                Some(&json!({ "service": "sora2", "cost": 88, "ttl_seconds": 1 })),
            )
            .await;
        let id = r.json["reservation_id"].as_str().unwrap().to_owned();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let r = hub
            .call(
                Method::POST,
                &format!("/api/mcp/v1/credits/reservations/{id}/capture"),
                &as_service,
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::GONE, "{engine:?} {:?}", r.json);
        let r = hub
            .call(
                Method::GET,
                "/api/mcp/v1/credits/balance",
                &as_service,
                None,
            )
            .await;
        assert_eq!(r.json["available_balance"], 88);

        // Bad input and someone else's hold.
        for (path, body) in [
            (
                RESERVE.to_owned(),
                json!({ "service": "sora2", "cost": 1, "ttl_seconds": 3601 }),
            ),
            (RESERVE.to_owned(), json!({ "service": "sora2", "cost": 0 })),
            (
                "/api/mcp/v1/credits/reservations/nope/release".to_owned(),
                json!({}),
            ),
        ] {
            let r = hub
                .call(Method::POST, &path, &as_service, Some(&body))
                .await;
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {body}: {:?}",
                r.json
            );
        }
        let other = hub.user_with(10).await.to_string();
        let r = hub
            .call(
                Method::POST,
                RESERVE,
                &as_service,
                Some(&json!({ "service": "sora2", "cost": 5 })),
            )
            .await;
        let mine = r.json["reservation_id"].as_str().unwrap().to_owned();
        let r = hub
            .call(
                Method::POST,
                &format!("/api/mcp/v1/credits/reservations/{mine}/capture"),
                &[("x-api-key", key.as_str()), ("x-user-id", other.as_str())],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "not another user's hold");
    }
}

#[tokio::test]
async fn a_gpt_holds_with_the_users_code() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let (code, _) = hub.signed_in_user().await;
        let bearer = format!("Bearer {}", hub.service_key(&["gpt"]).await);
        let gpt = [("authorization", bearer.as_str())];
        let r = hub
            .call(
                Method::POST,
                RESERVE,
                &gpt,
                Some(&json!({ "service": "sora2", "cost": 10, "session_token": code })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{engine:?} {:?}", r.json);
        let id = r.json["reservation_id"].as_str().unwrap().to_owned();
        let r = hub
            .call(
                Method::POST,
                &format!("/api/mcp/v1/credits/reservations/{id}/capture"),
                &gpt,
                Some(&json!({ "session_token": code })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
        assert_eq!(r.json["new_balance"], 0);
    }
}

/// A hold is settled only by the principal that placed it: not by another key acting for the
/// same user, not by the user themselves (who would otherwise release a paid tool's hold while
/// its work is under way), and an X-Hub-Via sent by a client is stripped at the gateway.
#[tokio::test]
async fn only_the_principal_that_placed_a_hold_settles_it() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let (code, user) = hub.signed_in_user().await;
        let key = hub.service_key(&["credits:check", "credits:deduct"]).await;
        let other = hub.service_key(&["credits:check", "credits:deduct"]).await;
        let as_key = [("x-api-key", key.as_str()), ("x-user-id", user.as_str())];
        let as_other = [("x-api-key", other.as_str()), ("x-user-id", user.as_str())];
        let as_user = [("x-session-token", code.as_str()), ("x-hub-via", "mcp")];

        let r = hub
            .call(
                Method::POST,
                RESERVE,
                &as_key,
                Some(&json!({ "service": "sora2", "cost": 5 })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{engine:?} {:?}", r.json);
        let id = r.json["reservation_id"].as_str().unwrap().to_owned();
        let release = format!("/api/mcp/v1/credits/reservations/{id}/release");
        for (who, headers) in [("another key", &as_other[..]), ("the user", &as_user[..])] {
            let r = hub.call(Method::POST, &release, headers, None).await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{engine:?}: {who}: {:?}",
                r.json
            );
        }
        let r = hub.call(Method::POST, &release, &as_key, None).await;
        assert_eq!(r.status, StatusCode::OK, "{engine:?}: {:?}", r.json);
    }
}

/// What schemathesis found the ledger refusing that the API document allows: a `null` capture
/// body, whole numbers written `5.0`; and state conflicts are 409, never 422, so that 422 always
/// means the request itself breaks a rule.
#[tokio::test]
async fn documented_shapes_are_accepted_and_state_conflicts_are_409() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let user = hub.user_with(100).await.to_string();
        let key = hub
            .service_key(&["credits:check", "credits:deduct", "credits:refund"])
            .await;
        let as_service = [("x-api-key", key.as_str()), ("x-user-id", user.as_str())];
        // `null` is no body: the whole hold is captured.
        let id = reserve(&hub, &as_service, json!(10.0)).await;
        let capture = format!("/api/mcp/v1/credits/reservations/{id}/capture");
        let r = hub
            .call(Method::POST, &capture, &as_service, Some(&json!(null)))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
        assert_eq!(r.json["captured"], 10);

        // More than held is a conflict with the hold, like a refund of more than remains.
        let id = reserve(&hub, &as_service, json!(5)).await;
        let capture = format!("/api/mcp/v1/credits/reservations/{id}/capture");
        let r = hub
            .call(
                Method::POST,
                &capture,
                &as_service,
                Some(&json!({ "amount": 6 })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.json);
        assert_eq!(r.json["error"]["code"], "exceeds_hold");
        let r = hub
            .call(
                Method::POST,
                &capture,
                &as_service,
                Some(&json!({ "amount": 2.5 })),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.json);

        // A grant is not a debit: refunding it conflicts with what it is.
        let r = hub
            .call(
                Method::GET,
                "/api/mcp/v1/credits/transactions",
                &as_service,
                None,
            )
            .await;
        let grant = r.json["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["kind"] == "grant")
            .expect("the starting credits' grant")["id"]
            .clone();
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/refund",
                &as_service,
                Some(&json!({ "transaction_id": grant, "reason": "test" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.json);
        assert_eq!(r.json["error"]["code"], "not_a_debit");
    }
}

async fn reserve(hub: &SpawnedHub, headers: &[(&str, &str)], cost: serde_json::Value) -> String {
    let r = hub
        .call(
            Method::POST,
            RESERVE,
            headers,
            Some(&json!({ "service": "sora2", "cost": cost })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    r.json["reservation_id"].as_str().unwrap().to_owned()
}
