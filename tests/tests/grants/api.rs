//! The admin API's grant with `expires_at` and `priority`, and `GET /api/mcp/v1/credits/grants`.

use hub_test_support::{As, spawn_core};
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::*;

const GRANT: &str = "/api/admin/credits/grant";
const GRANTS: &str = "/api/mcp/v1/credits/grants";

#[tokio::test]
async fn an_expiring_grant_is_listed_and_replayed_once_per_key() {
    for engine in engines() {
        let core = spawn_core(engine).await;
        let user = core.user_with(10).await;
        let ends = (chrono::Utc::now() + Duration::days(30))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let body = json!({ "user_id": user, "amount": 500, "reason": "launch promo",
                           "expires_at": ends, "priority": 10 });
        let key = [("idempotency-key", "promo-1")];
        let first = core
            .call(Method::POST, GRANT, &As::System(None), Some(&body), &key)
            .await;
        assert_eq!(first.status, StatusCode::OK, "{engine:?}: {:?}", first.json);
        let again = core
            .call(Method::POST, GRANT, &As::System(None), Some(&body), &key)
            .await;
        assert_eq!(again.json, first.json);
        assert_eq!(again.headers["idempotent-replayed"], "true");
        let mut other = body.clone();
        other["priority"] = json!(11);
        let reused = core
            .call(Method::POST, GRANT, &As::System(None), Some(&other), &key)
            .await;
        assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reused.json["error"]["code"], "idempotency_key_reused");

        let reader = As::Service {
            scopes: "credits:check",
            user: Some(user),
        };
        let listed = core.get(GRANTS, &reader).await;
        assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.json);
        let grants = listed.json["grants"].as_array().unwrap();
        assert_eq!(grants.len(), 1, "{engine:?}: granted once");
        assert_eq!(grants[0]["remaining"], 500);
        assert_eq!(grants[0]["priority"], 10);
        assert_eq!(grants[0]["transaction_id"], first.json["id"]);
        let listed_end = grants[0]["expires_at"].as_str().unwrap();
        let at = chrono::DateTime::parse_from_rfc3339(listed_end).unwrap();
        assert_eq!(at, chrono::DateTime::parse_from_rfc3339(&ends).unwrap());
        assert_eq!(core.store.balance(user).await.unwrap(), Some(510));
    }
}

/// A user reads only their own grants, whoever they name; a key without `credits:check` reads none.
#[tokio::test]
async fn nobody_reads_another_users_grants() {
    for engine in engines() {
        let core = spawn_core(engine).await;
        let (alice, bob) = (core.user_with(0).await, core.user_with(0).await);
        let body = json!({ "user_id": bob, "amount": 40, "reason": "promo", "priority": 5 });
        let granted = core.post(GRANT, &As::System(None), body).await;
        assert_eq!(granted.status, StatusCode::OK, "{:?}", granted.json);
        let bob_id = bob.to_string();
        let naming_bob = [("x-user-id", bob_id.as_str())];
        let as_alice = core
            .call(Method::GET, GRANTS, &As::User(alice), None, &naming_bob)
            .await;
        assert_eq!(as_alice.status, StatusCode::OK, "{engine:?}");
        assert_eq!(as_alice.json["user_id"], alice.to_string());
        assert_eq!(as_alice.json["grants"], json!([]), "{engine:?}: not Bob's");
        let spender = As::Service {
            scopes: "credits:deduct",
            user: Some(bob),
        };
        let refused = core.get(GRANTS, &spender).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{engine:?}");
        assert!(refused.json.get("grants").is_none());
    }
}

#[tokio::test]
async fn a_bad_end_date_or_priority_is_refused_and_grants_nothing() {
    for engine in engines() {
        let core = spawn_core(engine).await;
        let user = core.user_with(10).await;
        let past = (chrono::Utc::now() - Duration::minutes(1)).to_rfc3339();
        for (field, value, code) in [
            ("expires_at", json!(past), Some("invalid_expires_at")),
            ("expires_at", json!("next tuesday"), None),
            (
                "expires_at",
                json!("9999-12-31T00:00:00Z"),
                Some("invalid_expires_at"),
            ),
            ("priority", json!(101), Some("invalid_priority")),
            ("priority", json!(-1), Some("invalid_priority")),
            ("priority", json!(2.5), None),
        ] {
            let mut body = json!({ "user_id": user, "amount": 5, "reason": "promo" });
            body[field] = value.clone();
            let r = core.post(GRANT, &As::System(None), body).await;
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{engine:?}: {field} {value}: {:?}",
                r.json
            );
            if let Some(code) = code {
                assert_eq!(r.json["error"]["code"], code);
            }
        }
        assert_eq!(core.store.balance(user).await.unwrap(), Some(10));
        assert!(core.store.grants(user).await.unwrap().unwrap().is_empty());
    }
}
