//! The usage report (`GET /api/admin/usage`), through the gateway on every engine: debits,
//! refunds and grants made through the API show up grouped by day, service and user, with totals
//! that match; finance and a service key with `usage:read` read it, support and a plain user are
//! refused with the permission named; bad ranges are 422.

use chrono::{Days, Utc};
use hub_ledger::users::Role;
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{Reply, SpawnedHub, engines};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::roles::operator;

const SERVICE: &str = "sora2-video-generation";

async fn as_bearer(
    hub: &SpawnedHub,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Reply {
    let bearer = format!("Bearer {token}");
    hub.call(method, path, &[("authorization", &bearer)], body)
        .await
}

/// A debit of `cost` for `user` by a service key; the transaction id.
async fn deduct(hub: &SpawnedHub, key: &str, user: Uuid, cost: i64) -> String {
    let user = user.to_string();
    let reply = hub
        .call(
            Method::POST,
            "/api/mcp/v1/credits/deduct",
            &[("x-api-key", key), ("x-user-id", &user)],
            Some(&json!({ "service": SERVICE, "cost": cost })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json);
    reply.json["transaction_id"].as_str().unwrap().to_owned()
}

/// Yesterday to tomorrow (UTC), so that a run across midnight still finds today's rows.
fn around_today() -> String {
    let today = Utc::now().date_naive();
    let from = today.checked_sub_days(Days::new(1)).unwrap();
    let to = today.checked_add_days(Days::new(1)).unwrap();
    format!("from={from}&to={to}")
}

fn figures(row: &Value) -> [i64; 5] {
    ["spent", "refunded", "granted", "adjusted", "calls"].map(|f| row[f].as_i64().unwrap())
}

#[tokio::test]
async fn debits_refunds_and_grants_show_up_in_every_grouping() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let (_, finance) = operator(&hub, Role::Finance).await;
        let (alice, bob) = (hub.user_with(0).await, hub.user_with(0).await);
        for (user, amount) in [(alice, 100), (bob, 50)] {
            let grant = as_bearer(
                &hub,
                &finance,
                Method::POST,
                "/api/admin/credits/grant",
                Some(&json!({ "user_id": user, "amount": amount, "reason": "trial" })),
            )
            .await;
            assert_eq!(grant.status, StatusCode::OK, "{engine:?}: {:?}", grant.json);
        }
        let key = hub.service_key(&["credits:deduct"]).await;
        let first = deduct(&hub, &key, alice, 30).await;
        deduct(&hub, &key, alice, 20).await;
        deduct(&hub, &key, bob, 5).await;
        let refund = as_bearer(
            &hub,
            &finance,
            Method::POST,
            "/api/mcp/v1/credits/refund",
            Some(&json!({ "transaction_id": first, "amount": 10, "reason": "video failed" })),
        )
        .await;
        assert_eq!(
            refund.status,
            StatusCode::OK,
            "{engine:?}: {:?}",
            refund.json
        );

        let range = around_today();
        let expected_totals = json!({
            "spent": 55, "refunded": 10, "granted": 150, "adjusted": 0, "calls": 3
        });
        let by_day = as_bearer(
            &hub,
            &finance,
            Method::GET,
            &format!("/api/admin/usage?{range}"),
            None,
        )
        .await;
        assert_eq!(
            by_day.status,
            StatusCode::OK,
            "{engine:?}: {:?}",
            by_day.json
        );
        assert_eq!(by_day.json["group_by"], "day");
        assert_eq!(by_day.json["totals"], expected_totals, "{engine:?}");
        let days = by_day.json["rows"].as_array().unwrap();
        assert_eq!(days.len(), 3, "every day of the range: {days:?}");
        let today = Utc::now().date_naive().to_string();
        let summed = days
            .iter()
            .map(figures)
            .fold([0; 5], |a, r| std::array::from_fn(|i| a[i] + r[i]));
        assert_eq!(summed, [55, 10, 150, 0, 3], "{engine:?}: {days:?}");
        assert!(days.iter().any(|d| d["key"] == today.as_str()));

        let path = format!("/api/admin/usage?{range}&group_by=service");
        let by_service = as_bearer(&hub, &finance, Method::GET, &path, None).await;
        assert_eq!(by_service.json["totals"], expected_totals, "{engine:?}");
        let rows = by_service.json["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "{engine:?}: {rows:?}");
        assert_eq!(rows[0]["key"], SERVICE, "biggest spend first");
        assert_eq!(figures(&rows[0]), [55, 10, 0, 0, 3]);
        assert_eq!(rows[1]["key"], "", "grants have no service");
        assert_eq!(figures(&rows[1]), [0, 0, 150, 0, 0]);

        let path = format!("/api/admin/usage?{range}&group_by=user&limit=1");
        let by_user = as_bearer(&hub, &finance, Method::GET, &path, None).await;
        assert_eq!(
            by_user.status,
            StatusCode::OK,
            "{engine:?}: {:?}",
            by_user.json
        );
        assert_eq!(by_user.json["truncated"], true);
        assert_eq!(
            by_user.json["totals"], expected_totals,
            "totals whatever the limit"
        );
        let rows = by_user.json["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["key"], alice.to_string());
        assert_eq!(figures(&rows[0]), [50, 10, 100, 0, 2], "{engine:?}");
        let path = format!("/api/admin/usage?{range}&group_by=user");
        let by_user = as_bearer(&hub, &finance, Method::GET, &path, None).await;
        assert_eq!(by_user.json["truncated"], false);
        assert_eq!(by_user.json["rows"][1]["key"], bob.to_string());
        assert_eq!(figures(&by_user.json["rows"][1]), [5, 0, 50, 0, 1]);
    }
}

#[tokio::test]
async fn only_callers_with_usage_read_see_usage() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let (_, finance) = operator(&hub, Role::Finance).await;
        let (_, admin) = operator(&hub, Role::Admin).await;
        let (_, support) = operator(&hub, Role::Support).await;
        let (_, user) = operator(&hub, Role::User).await;
        for (token, status) in [
            (&finance, StatusCode::OK),
            (&admin, StatusCode::OK),
            (&support, StatusCode::FORBIDDEN),
            (&user, StatusCode::FORBIDDEN),
        ] {
            let reply = as_bearer(&hub, token, Method::GET, "/api/admin/usage", None).await;
            assert_eq!(reply.status, status, "{engine:?}: {:?}", reply.json);
            if status == StatusCode::FORBIDDEN {
                let message = reply.json["error"]["message"].as_str().unwrap();
                assert!(message.contains("usage:read"), "{message}");
            } else {
                assert_eq!(
                    reply.json["rows"].as_array().unwrap().len(),
                    30,
                    "the last 30 days"
                );
            }
        }
        let key = hub.service_key(&["usage:read"]).await;
        let by_key = as_bearer(
            &hub,
            &key,
            Method::GET,
            "/api/admin/usage?group_by=service",
            None,
        )
        .await;
        assert_eq!(
            by_key.status,
            StatusCode::OK,
            "{engine:?}: {:?}",
            by_key.json
        );
        let other_key = hub.service_key(&["users:read"]).await;
        let refused = as_bearer(&hub, &other_key, Method::GET, "/api/admin/usage", None).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn bad_ranges_are_refused() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(engines()[0], &google).start().await;
    let (_, finance) = operator(&hub, Role::Finance).await;
    for query in [
        "from=2025-02-01&to=2025-01-31",
        "from=2024-01-01&to=2025-01-01",
        "from=2025-02-30",
        "from=yesterday",
        "group_by=week",
        "limit=0",
        "limit=1001",
        "user=me",
    ] {
        let path = format!("/api/admin/usage?{query}");
        let reply = as_bearer(&hub, &finance, Method::GET, &path, None).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {:?}",
            reply.json
        );
        assert!(
            reply.json["error"]["code"].is_string(),
            "{query}: {:?}",
            reply.json
        );
    }
    let whole_year = "/api/admin/usage?from=2024-01-01&to=2024-12-31&group_by=user";
    let reply = as_bearer(&hub, &finance, Method::GET, whole_year, None).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "366 days of a leap year: {:?}",
        reply.json
    );
}
