//! Every 402 names what refused it, through the gateway on every engine: the balance itself, or
//! the credits live holds set aside; with the numbers that decided it.

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SpawnedHub, engines};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_402_says_whether_the_balance_or_a_hold_refused_it() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let user = hub.user_with(50).await.to_string();
        let key = hub.service_key(&["credits:check", "credits:deduct"]).await;
        let headers = [("x-api-key", key.as_str()), ("x-user-id", user.as_str())];
        let spend = |path: &'static str, cost: i64| {
            let body = json!({ "service": "sora2", "cost": cost });
            let hub = &hub;
            let headers = &headers;
            async move { hub.call(Method::POST, path, headers, Some(&body)).await }
        };
        let hold = spend("/api/mcp/v1/credits/reserve", 40).await;
        assert_eq!(hold.status, StatusCode::OK, "{engine:?}: {:?}", hold.json);

        for path in [
            "/api/mcp/v1/credits/deduct",
            "/api/mcp/v1/credits/check",
            "/api/mcp/v1/credits/reserve",
        ] {
            let held = spend(path, 20).await;
            assert_eq!(
                held.status,
                StatusCode::PAYMENT_REQUIRED,
                "{engine:?} {path}"
            );
            assert_eq!(
                (
                    held.json["limit"].clone(),
                    held.json["balance"].clone(),
                    held.json["held"].clone(),
                    held.json["cost"].clone()
                ),
                (json!("held"), json!(10), json!(40), json!(20)),
                "{engine:?} {path}: {:?}",
                held.json
            );
            assert!(
                held.json["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("held")
            );
            let short = spend(path, 60).await;
            assert_eq!(short.status, StatusCode::PAYMENT_REQUIRED);
            assert_eq!(
                short.json["limit"], "balance",
                "{engine:?} {path}: {:?}",
                short.json
            );
        }
        assert_eq!(
            hub.store.balance(user.parse().unwrap()).await.unwrap(),
            Some(50)
        );
    }
}
