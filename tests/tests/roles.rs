//! Roles that mean something, through the gateway on every engine: an operator with the
//! `finance` role grants credits with their own access token; `support` and a plain user may not,
//! and taking the role away takes the permission with it.

use hub_ledger::users::{NewUser, Role};
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SpawnedHub, engines};
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

/// A user with `role` and a password, signed in: their id and access token.
async fn operator(hub: &SpawnedHub, role: Role) -> (Uuid, String) {
    let email = format!("{}@example.com", Uuid::new_v4().simple());
    let new = NewUser::new(&email, "Operator", 0, role).unwrap();
    let id = hub.store.create_user(&new).await.unwrap().unwrap().user.id;
    let hash = hub_auth::passwords::hash("a long enough password".into())
        .await
        .unwrap();
    assert!(hub.store.set_password_hash(id, &hash).await.unwrap());
    let login = hub
        .call(
            Method::POST,
            "/api/auth/login",
            &[],
            Some(&json!({ "email": email, "password": "a long enough password" })),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{:?}", login.json);
    (id, login.json["access_token"].as_str().unwrap().to_owned())
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
