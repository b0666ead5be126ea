//! Operators manage service keys through the gateway, on every engine: the key is shown once,
//! works at once, is listed with its last use and never again in full, and stops when revoked;
//! each change is in the audit log; only `keys:manage` may do any of it.

use hub_ledger::users::Role;
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{Reply, SpawnedHub, engines};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

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

async fn check_with(hub: &SpawnedHub, key: &str, user: &str) -> StatusCode {
    let headers = [("x-api-key", key), ("x-user-id", user)];
    let body = json!({ "service": "sora2", "cost": 1 });
    hub.call(
        Method::POST,
        "/api/mcp/v1/credits/check",
        &headers,
        Some(&body),
    )
    .await
    .status
}

#[tokio::test]
async fn an_admin_makes_lists_and_revokes_a_service_key() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google)
            .gateway(|config| config.service_key_cache = Duration::from_secs(1))
            .start()
            .await;
        let (admin_id, _, admin) = hub.operator(Role::Admin).await;
        let (_, _, finance) = hub.operator(Role::Finance).await;
        let user = hub.user_with(10).await.to_string();
        let body =
            json!({ "name": "sora2 backend", "scopes": ["credits:check", "credits:deduct"] });
        let made = as_bearer(
            &hub,
            &admin,
            Method::POST,
            "/api/admin/service-keys",
            Some(&body),
        )
        .await;
        assert_eq!(
            made.status,
            StatusCode::CREATED,
            "{engine:?}: {:?}",
            made.json
        );
        let key = made.json["key"].as_str().unwrap().to_owned();
        let id = made.json["id"].as_str().unwrap().to_owned();
        assert!(key.starts_with("hub_sk_"));
        assert_eq!(
            check_with(&hub, &key, &user).await,
            StatusCode::OK,
            "{engine:?}"
        );

        let deadline = Instant::now() + Duration::from_secs(5);
        let listed = loop {
            let list = as_bearer(&hub, &admin, Method::GET, "/api/admin/service-keys", None).await;
            assert_eq!(list.status, StatusCode::OK, "{:?}", list.json);
            let mine = list.json["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["id"] == id.as_str())
                .cloned()
                .unwrap();
            if mine["last_used_at"].is_string() || Instant::now() > deadline {
                break mine;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(
            listed["last_used_at"].is_string(),
            "{engine:?}: its use is noted: {listed}"
        );
        assert!(
            listed.get("key").is_none() && !listed.to_string().contains(&key),
            "never shown again"
        );

        let refused = as_bearer(
            &hub,
            &finance,
            Method::POST,
            "/api/admin/service-keys",
            Some(&body),
        )
        .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{engine:?}");
        assert!(
            refused.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("keys:manage")
        );
        let refused = as_bearer(
            &hub,
            &finance,
            Method::DELETE,
            &format!("/api/admin/service-keys/{id}"),
            None,
        )
        .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let bad = json!({ "name": "x", "scopes": ["credits:everything"] });
        let bad = as_bearer(
            &hub,
            &admin,
            Method::POST,
            "/api/admin/service-keys",
            Some(&bad),
        )
        .await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

        let path = format!("/api/admin/service-keys/{id}");
        let revoked = as_bearer(&hub, &admin, Method::DELETE, &path, None).await;
        assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{engine:?}");
        let again = as_bearer(&hub, &admin, Method::DELETE, &path, None).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);
        let stopped = Instant::now() + Duration::from_secs(5);
        while check_with(&hub, &key, &user).await != StatusCode::UNAUTHORIZED {
            assert!(
                Instant::now() < stopped,
                "{engine:?}: the revoked key still works"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let audit = as_bearer(
            &hub,
            &admin,
            Method::GET,
            &format!("/api/admin/audit?target=key:{id}"),
            None,
        )
        .await;
        let actions: Vec<_> = audit.json["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].clone())
            .collect();
        assert_eq!(
            actions,
            [json!("key.revoke"), json!("key.create")],
            "{engine:?}"
        );
        assert_eq!(
            audit.json["entries"][1]["actor"],
            format!("user:{admin_id}")
        );
        assert!(
            !audit.json.to_string().contains(&key),
            "the key is not in the audit log"
        );
    }
}
