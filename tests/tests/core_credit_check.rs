//! Checking credits through the gateway: with a service key for the user in X-User-ID, with the
//! user's own code in a header, and in the GPT-callable form (the code in the body).

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SpawnedHub, engines};
use reqwest::{Method, StatusCode};
use serde_json::json;

const SORA: &str = "sora2-video-generation";

/// A way to call check: its name, its headers, and the body before the cost.
type Form<'a> = (&'a str, Vec<(&'a str, &'a str)>, serde_json::Value);

#[tokio::test]
async fn check_answers_sufficient_or_402_in_every_form() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        // Google sign-in grants the new user 10 credits.
        let (code, user_id) = hub.signed_in_user().await;
        let server_key = hub.service_key(&["credits:check"]).await;
        let gpt_key = format!("Bearer {}", hub.service_key(&["gpt"]).await);

        let forms: [Form; 3] = [
            (
                "service key and X-User-ID",
                vec![
                    ("x-api-key", server_key.as_str()),
                    ("x-user-id", user_id.as_str()),
                ],
                json!({ "service": SORA }),
            ),
            (
                "the user's code in X-Session-Token",
                vec![("x-session-token", code.as_str())],
                json!({ "service": SORA }),
            ),
            (
                "a GPT key and the code in the body",
                vec![("authorization", gpt_key.as_str())],
                json!({ "service": SORA, "session_token": code }),
            ),
        ];
        for (form, headers, base) in &forms {
            let mut enough = base.clone();
            enough["cost"] = json!(10);
            let r = hub
                .call(
                    Method::POST,
                    "/api/mcp/v1/credits/check",
                    headers,
                    Some(&enough),
                )
                .await;
            assert_eq!(
                (r.status, r.json.clone()),
                (StatusCode::OK, json!({ "sufficient": true, "balance": 10 })),
                "{engine:?}, {form}"
            );
            let mut too_much = base.clone();
            too_much["cost"] = json!(11);
            let r = hub
                .call(
                    Method::POST,
                    "/api/mcp/v1/credits/check",
                    headers,
                    Some(&too_much),
                )
                .await;
            assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{engine:?}, {form}");
            assert_eq!(r.json["sufficient"], false);
            assert_eq!(r.json["balance"], 10);
            assert_eq!(r.json["error"]["code"], "insufficient_credits");
        }
        // A check never spends.
        assert_eq!(
            hub.store.balance(user_id.parse().unwrap()).await.unwrap(),
            Some(10)
        );
        // Bad input is a 4xx in the shared shape, through the gateway.
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/check",
                &[("x-session-token", code.as_str())],
                Some(&json!({ "service": SORA, "cost": -1 })),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.json);
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/check",
                &[
                    ("x-api-key", server_key.as_str()),
                    ("x-user-id", "not-a-uuid"),
                ],
                Some(&json!({ "service": SORA, "cost": 1 })),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.json);
    }
}
