//! Every admin operation against every operator role, through the gateway on every engine: a
//! role without the operation's permission gets 403 naming it, and the account does not change;
//! a role with it gets past the check. Roles: support (users:read, credits:refund,
//! sessions:revoke), finance (users:read, credits:grant, credits:refund, usage:read), user (none).

use hub_ledger::users::Role;
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SpawnedHub, engines};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// One admin operation and the permission it needs.
struct Operation {
    method: Method,
    path: String,
    body: Option<Value>,
    permission: &'static str,
}

fn operations(customer: Uuid) -> Vec<Operation> {
    let op = |method: Method, path: String, body: Option<Value>, permission| Operation {
        method,
        path,
        body,
        permission,
    };
    let user = format!("/api/admin/users/{customer}");
    vec![
        op(
            Method::GET,
            "/api/admin/users?q=x".into(),
            None,
            "users:read",
        ),
        op(Method::GET, user.clone(), None, "users:read"),
        op(
            Method::POST,
            format!("{user}/disable"),
            None,
            "users:manage",
        ),
        op(Method::POST, format!("{user}/enable"), None, "users:manage"),
        op(Method::DELETE, user.clone(), None, "users:manage"),
        op(
            Method::DELETE,
            format!("{user}/sessions"),
            None,
            "sessions:revoke",
        ),
        op(
            Method::POST,
            "/api/admin/credits/grant".into(),
            Some(json!({ "user_id": customer, "amount": 5, "reason": "r" })),
            "credits:grant",
        ),
        op(
            Method::POST,
            "/api/admin/credits/adjust".into(),
            Some(json!({ "user_id": customer, "amount": 5, "reason": "r" })),
            "credits:grant",
        ),
        op(
            Method::POST,
            "/api/admin/credits/refund".into(),
            Some(json!({ "transaction_id": "txn_none", "reason": "r" })),
            "credits:refund",
        ),
        op(
            Method::GET,
            "/api/admin/service-keys".into(),
            None,
            "keys:manage",
        ),
        op(
            Method::POST,
            "/api/admin/service-keys".into(),
            Some(json!({ "name": "k", "scopes": ["credits:check"] })),
            "keys:manage",
        ),
        op(
            Method::DELETE,
            "/api/admin/service-keys/sk_none".into(),
            None,
            "keys:manage",
        ),
        op(
            Method::POST,
            "/api/admin/credits/grant".into(),
            Some(json!({ "user_id": customer, "amount": 5, "reason": "promo",
                         "expires_at": "2099-01-01T00:00:00Z", "priority": 10 })),
            "credits:grant",
        ),
        op(
            Method::GET,
            "/api/admin/webhooks/deliveries".into(),
            None,
            "keys:manage",
        ),
        op(Method::GET, "/api/admin/audit".into(), None, "audit:read"),
        op(Method::GET, "/api/admin/usage".into(), None, "usage:read"),
    ]
}

#[tokio::test]
async fn each_role_is_refused_every_operation_it_lacks_by_name() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let customer = hub.user_with(50).await;
        for role in [Role::Support, Role::Finance, Role::User] {
            let (id, _, token) = hub.operator(role).await;
            let held = hub.store.permissions(id).await.unwrap();
            let bearer = format!("Bearer {token}");
            for operation in operations(customer) {
                let r = hub
                    .call(
                        operation.method.clone(),
                        &operation.path,
                        &[("authorization", &bearer)],
                        operation.body.as_ref(),
                    )
                    .await;
                let what = format!(
                    "{engine:?} {} {} {}",
                    role.as_str(),
                    operation.method,
                    operation.path
                );
                if held.iter().any(|p| p == operation.permission) {
                    assert_ne!(
                        r.status,
                        StatusCode::FORBIDDEN,
                        "{what}: allowed: {:?}",
                        r.json
                    );
                    assert!(!r.status.is_server_error(), "{what}: {:?}", r.json);
                } else {
                    assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {:?}", r.json);
                    let message = r.json["error"]["message"].as_str().unwrap_or_default();
                    assert!(
                        message.contains(operation.permission),
                        "{what}: names {}: {message}",
                        operation.permission
                    );
                }
            }
        }
        let detail = hub.store.account_state(customer).await.unwrap().unwrap();
        assert!(
            detail.disabled_at.is_none() && detail.deleted_at.is_none(),
            "{engine:?}: untouched"
        );
        let balance = hub.store.balance(customer).await.unwrap();
        assert_eq!(
            balance,
            Some(65),
            "{engine:?}: only finance's grant, promotional grant and adjustment of 5 each"
        );
    }
}
