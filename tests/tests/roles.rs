//! Roles that mean something, through the gateway on every engine: an operator with the
//! `finance` role grants credits with their own access token; `support` and a plain user may not,
//! and taking the role away takes the permission with it. `support` finds users and sees their
//! accounts (`/api/admin/users`); a plain user may not.

use hub_ledger::users::{NewUser, Role};
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SpawnedHub, engines};
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

/// A user with `role` and a password, signed in: their id and access token.
pub(crate) async fn operator(hub: &SpawnedHub, role: Role) -> (Uuid, String) {
    let (id, _, token) = hub.operator(role).await;
    (id, token)
}

async fn grant(hub: &SpawnedHub, token: &str, user: Uuid) -> StatusCode {
    let bearer = format!("Bearer {token}");
    hub.call(
        Method::POST,
        "/api/admin/credits/grant",
        &[("authorization", &bearer)],
        Some(&json!({ "user_id": user, "amount": 25, "reason": "goodwill" })),
    )
    .await
    .status
}

#[tokio::test]
async fn finance_grants_support_and_users_may_not() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let customer = hub.user_with(0).await;
        let (finance_id, finance) = operator(&hub, Role::Finance).await;
        let (_, support) = operator(&hub, Role::Support).await;
        let (_, user) = operator(&hub, Role::User).await;
        assert_eq!(
            grant(&hub, &finance, customer).await,
            StatusCode::OK,
            "{engine:?}"
        );
        assert_eq!(hub.store.balance(customer).await.unwrap(), Some(25));
        assert_eq!(
            grant(&hub, &support, customer).await,
            StatusCode::FORBIDDEN,
            "{engine:?}"
        );
        assert_eq!(
            grant(&hub, &user, customer).await,
            StatusCode::FORBIDDEN,
            "{engine:?}"
        );
        let permissions = hub.store.permissions(finance_id).await.unwrap();
        for p in [
            "credits:grant",
            "credits:refund",
            "usage:read",
            "users:read",
        ] {
            assert!(permissions.iter().any(|q| q == p), "{p} in {permissions:?}");
        }
        assert!(
            hub.store
                .revoke_role(finance_id, Role::Finance)
                .await
                .unwrap()
        );
        assert_eq!(
            grant(&hub, &finance, customer).await,
            StatusCode::FORBIDDEN,
            "{engine:?}: permissions are read on every operation, not from the token"
        );
        assert_eq!(hub.store.balance(customer).await.unwrap(), Some(25));
    }
}

async fn get(hub: &SpawnedHub, token: &str, path: &str) -> hub_test_support::Reply {
    let bearer = format!("Bearer {token}");
    hub.call(Method::GET, path, &[("authorization", &bearer)], None)
        .await
}

#[tokio::test]
async fn support_finds_users_and_sees_their_accounts() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let (_, support) = operator(&hub, Role::Support).await;
        let (_, user) = operator(&hub, Role::User).await;
        let tag = Uuid::new_v4().simple().to_string()[..8].to_owned();
        let mut ids = Vec::new();
        for n in 0..3 {
            let email = format!("{tag}-{n}@example.com");
            let new = NewUser::new(&email, &format!("Somchai {n}"), 40, Role::User).unwrap();
            ids.push(hub.store.create_user(&new).await.unwrap().unwrap().user.id);
        }
        let found = get(&hub, &support, &format!("/api/admin/users?q={tag}")).await;
        assert_eq!(found.status, StatusCode::OK, "{engine:?}: {:?}", found.json);
        let emails: Vec<_> = found.json["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["email"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            emails,
            [2, 1, 0].map(|n| format!("{tag}-{n}@example.com")),
            "newest first"
        );
        // Wildcards in the query are only text.
        let none = get(&hub, &support, "/api/admin/users?q=%25_%25").await;
        assert_eq!(none.json["users"], json!([]), "{engine:?}");
        let by_id = get(&hub, &support, &format!("/api/admin/users?q={}", ids[1])).await;
        assert_eq!(by_id.json["users"][0]["id"], ids[1].to_string());

        let detail = get(&hub, &support, &format!("/api/admin/users/{}", ids[0])).await;
        assert_eq!(detail.status, StatusCode::OK, "{:?}", detail.json);
        assert_eq!(detail.json["balance"], 40);
        assert_eq!(detail.json["roles"], json!(["user"]));
        assert_eq!(detail.json["recent_transactions"][0]["kind"], "grant");
        let unknown = get(
            &hub,
            &support,
            &format!("/api/admin/users/{}", Uuid::new_v4()),
        )
        .await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);

        let refused = get(&hub, &user, &format!("/api/admin/users?q={tag}")).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{engine:?}");
        let refused = get(&hub, &user, &format!("/api/admin/users/{}", ids[0])).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let key = hub.service_key(&["users:read"]).await;
        let by_key = get(&hub, &key, &format!("/api/admin/users?q={tag}")).await;
        assert_eq!(
            by_key.status,
            StatusCode::OK,
            "a service key with users:read"
        );
    }
}
