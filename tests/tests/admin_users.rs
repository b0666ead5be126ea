//! Operators act on accounts through the gateway, on every engine: disabling a user stops
//! everything acting for them at once (their session codes and tokens end; a service key naming
//! them and their holds spend nothing, with `account_disabled`; they cannot sign in); enabling
//! lets them back in; deleting forgets the person and keeps the ledger. Every action is in the
//! audit log, written with the change; a role without the permission is refused by name.

use hub_ledger::users::Role;
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{OPERATOR_PASSWORD, Reply, SpawnedHub, engines};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

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

async fn with_key(hub: &SpawnedHub, key: &str, user: &str, path: &str, body: Value) -> Reply {
    hub.call(
        Method::POST,
        path,
        &[("x-api-key", key), ("x-user-id", user)],
        Some(&body),
    )
    .await
}

async fn login(hub: &SpawnedHub, email: &str) -> Reply {
    hub.call(
        Method::POST,
        "/api/auth/login",
        &[],
        Some(&json!({ "email": email, "password": OPERATOR_PASSWORD })),
    )
    .await
}

#[tokio::test]
async fn disabling_a_user_stops_their_codes_tokens_keys_and_holds() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let (admin_id, _, admin) = hub.operator(Role::Admin).await;
        let (code, google_user) = hub.signed_in_user().await;
        let (customer, email, token) = hub.operator(Role::User).await;
        let key = hub.service_key(&["credits:deduct", "credits:check"]).await;
        let who = customer.to_string();
        let grant = json!({ "user_id": customer, "amount": 100, "reason": "start" });
        let granted = as_bearer(
            &hub,
            &admin,
            Method::POST,
            "/api/admin/credits/grant",
            Some(&grant),
        )
        .await;
        assert_eq!(
            granted.status,
            StatusCode::OK,
            "{engine:?}: {:?}",
            granted.json
        );
        let hold = with_key(
            &hub,
            &key,
            &who,
            "/api/mcp/v1/credits/reserve",
            json!({ "service": "sora2", "cost": 30 }),
        )
        .await;
        assert_eq!(hold.status, StatusCode::OK, "{:?}", hold.json);
        let hold = hold.json["reservation_id"].as_str().unwrap().to_owned();

        for user in [google_user.as_str(), who.as_str()] {
            let path = format!("/api/admin/users/{user}/disable");
            let r = as_bearer(&hub, &admin, Method::POST, &path, None).await;
            assert_eq!(r.status, StatusCode::OK, "{engine:?}: {:?}", r.json);
            assert_eq!(r.json["changed"], true);
        }
        let verified = hub
            .call(
                Method::GET,
                "/api/auth/verify-session",
                &[("x-session-token", &code)],
                None,
            )
            .await;
        assert_eq!(
            verified.status,
            StatusCode::UNAUTHORIZED,
            "{engine:?}: the code ended"
        );
        let me = as_bearer(&hub, &token, Method::GET, "/api/auth/me", None).await;
        assert_eq!(
            me.status,
            StatusCode::UNAUTHORIZED,
            "{engine:?}: the token ended"
        );
        let spent = with_key(
            &hub,
            &key,
            &who,
            "/api/mcp/v1/credits/deduct",
            json!({ "service": "sora2", "cost": 1 }),
        )
        .await;
        assert_eq!(
            (spent.status, spent.json["error"]["code"].clone()),
            (StatusCode::FORBIDDEN, json!("account_disabled")),
            "{engine:?}: {:?}",
            spent.json
        );
        let capture = format!("/api/mcp/v1/credits/reservations/{hold}/capture");
        let captured = with_key(&hub, &key, &who, &capture, json!({})).await;
        assert_eq!(
            captured.status,
            StatusCode::FORBIDDEN,
            "{engine:?}: {:?}",
            captured.json
        );
        assert_eq!(captured.json["error"]["code"], "account_disabled");
        let refused = login(&hub, &email).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{engine:?}: {:?}",
            refused.json
        );
        assert_eq!(refused.json["error"]["code"], "account_disabled");
        let form = [
            ("email", email.as_str()),
            ("password", OPERATOR_PASSWORD),
            ("continue", "/account"),
        ];
        let page = hub
            .http
            .post(format!("{}/oauth/sign-in", hub.gateway_url))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert!(
            page.headers().get("set-cookie").is_none(),
            "{engine:?}: no browser session"
        );
        assert!(
            page.text().await.unwrap().contains("disabled"),
            "{engine:?}: the page says why"
        );
        assert_eq!(
            hub.store.balance(customer).await.unwrap(),
            Some(100),
            "{engine:?}"
        );

        let audit = format!("/api/admin/audit?target=user:{customer}");
        let log = as_bearer(&hub, &admin, Method::GET, &audit, None).await;
        assert_eq!(log.status, StatusCode::OK, "{engine:?}: {:?}", log.json);
        let entry = &log.json["entries"][0];
        assert_eq!(entry["action"], "user.disable");
        assert_eq!(entry["actor"], format!("user:{admin_id}"));
        assert_eq!(
            (entry["before"].clone(), entry["after"].clone()),
            (json!({ "disabled": false }), json!({ "disabled": true }))
        );
        assert!(
            entry["request_id"].as_str().is_some_and(|r| !r.is_empty()),
            "{entry}"
        );
        assert_eq!(log.json["entries"][1]["action"], "credits.grant");

        let path = format!("/api/admin/users/{customer}/enable");
        let r = as_bearer(&hub, &admin, Method::POST, &path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{engine:?}: {:?}", r.json);
        assert_eq!(
            login(&hub, &email).await.status,
            StatusCode::OK,
            "{engine:?}: back in"
        );
        let spent = with_key(
            &hub,
            &key,
            &who,
            "/api/mcp/v1/credits/deduct",
            json!({ "service": "sora2", "cost": 1 }),
        )
        .await;
        assert_eq!(spent.status, StatusCode::OK, "{engine:?}: {:?}", spent.json);
        let captured = with_key(&hub, &key, &who, &capture, json!({})).await;
        assert_eq!(
            captured.status,
            StatusCode::OK,
            "{engine:?}: the hold was kept: {:?}",
            captured.json
        );
        assert!(hub.store.audit().await.unwrap().discrepancies.is_empty());
    }
}

#[tokio::test]
async fn operators_lacking_the_permission_are_refused_by_name() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let (admin_id, _, admin) = hub.operator(Role::Admin).await;
        let (_, _, support) = hub.operator(Role::Support).await;
        let (_, _, finance) = hub.operator(Role::Finance).await;
        let (_, _, user) = hub.operator(Role::User).await;
        let customer = hub.user_with(50).await;
        let cases: [(&str, &str, Method, String, Option<Value>); 7] = [
            (
                &support,
                "users:manage",
                Method::POST,
                format!("/api/admin/users/{customer}/disable"),
                None,
            ),
            (
                &finance,
                "users:manage",
                Method::DELETE,
                format!("/api/admin/users/{customer}"),
                None,
            ),
            (
                &finance,
                "sessions:revoke",
                Method::DELETE,
                format!("/api/admin/users/{customer}/sessions"),
                None,
            ),
            (
                &user,
                "users:read",
                Method::GET,
                format!("/api/admin/users/{customer}"),
                None,
            ),
            (
                &support,
                "credits:grant",
                Method::POST,
                "/api/admin/credits/adjust".into(),
                Some(json!({ "user_id": customer, "amount": 5, "reason": "x" })),
            ),
            (
                &finance,
                "audit:read",
                Method::GET,
                "/api/admin/audit".into(),
                None,
            ),
            (
                &support,
                "audit:read",
                Method::GET,
                "/api/admin/audit?format=csv".into(),
                None,
            ),
        ];
        for (token, permission, method, path, body) in cases {
            let r = as_bearer(&hub, token, method.clone(), &path, body.as_ref()).await;
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{engine:?} {method} {path}: {:?}",
                r.json
            );
            let message = r.json["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(permission),
                "{engine:?} {path}: names {permission}: {message}"
            );
        }
        let own = as_bearer(
            &hub,
            &admin,
            Method::POST,
            &format!("/api/admin/users/{admin_id}/disable"),
            None,
        )
        .await;
        assert_eq!(
            own.status,
            StatusCode::CONFLICT,
            "{engine:?}: {:?}",
            own.json
        );
        let ended = as_bearer(
            &hub,
            &support,
            Method::DELETE,
            &format!("/api/admin/users/{customer}/sessions"),
            None,
        )
        .await;
        assert_eq!(
            ended.status,
            StatusCode::OK,
            "{engine:?}: support ends sessions: {:?}",
            ended.json
        );
        assert_eq!(hub.store.balance(customer).await.unwrap(), Some(50));
    }
}

#[tokio::test]
async fn deleting_a_user_forgets_the_person_and_keeps_the_ledger() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let (_, _, admin) = hub.operator(Role::Admin).await;
        let (customer, email, _) = hub.operator(Role::User).await;
        let key = hub.service_key(&["credits:deduct"]).await;
        hub.store
            .grant(
                &hub_ledger::Grant {
                    user_id: customer,
                    amount: 40,
                    reason: "start".into(),
                    request_id: None,
                    terms: Default::default(),
                },
                None,
            )
            .await
            .unwrap();
        let spent = with_key(
            &hub,
            &key,
            &customer.to_string(),
            "/api/mcp/v1/credits/deduct",
            json!({ "service": "sora2", "cost": 15 }),
        )
        .await;
        assert_eq!(spent.status, StatusCode::OK);

        let path = format!("/api/admin/users/{customer}");
        let deleted = as_bearer(&hub, &admin, Method::DELETE, &path, None).await;
        assert_eq!(
            deleted.status,
            StatusCode::OK,
            "{engine:?}: {:?}",
            deleted.json
        );
        let detail = as_bearer(&hub, &admin, Method::GET, &path, None).await;
        assert_eq!(detail.status, StatusCode::OK, "{:?}", detail.json);
        assert_ne!(detail.json["user"]["email"], email.as_str(), "{engine:?}");
        assert!(
            detail.json["user"]["email"]
                .as_str()
                .unwrap()
                .ends_with("@deleted.invalid")
        );
        assert_eq!(detail.json["user"]["name"], "Deleted user");
        assert_eq!(detail.json["sign_in_methods"], json!([]));
        assert_eq!(detail.json["roles"], json!([]));
        assert!(detail.json["deleted_at"].is_string());
        assert_eq!(detail.json["balance"], 25, "{engine:?}: the ledger stays");
        assert_eq!(
            detail.json["recent_transactions"].as_array().unwrap().len(),
            2
        );
        let found = as_bearer(
            &hub,
            &admin,
            Method::GET,
            &format!("/api/admin/users?q={email}"),
            None,
        )
        .await;
        assert_eq!(
            found.json["users"],
            json!([]),
            "{engine:?}: nobody finds the address"
        );
        assert_eq!(login(&hub, &email).await.status, StatusCode::UNAUTHORIZED);
        let enable = as_bearer(&hub, &admin, Method::POST, &format!("{path}/enable"), None).await;
        assert_eq!(
            enable.status,
            StatusCode::CONFLICT,
            "{engine:?}: {:?}",
            enable.json
        );
        assert_eq!(enable.json["error"]["code"], "account_deleted");
        let again = as_bearer(&hub, &admin, Method::DELETE, &path, None).await;
        assert_eq!(again.json["changed"], false, "{engine:?}");
        assert!(
            hub.store.audit().await.unwrap().discrepancies.is_empty(),
            "{engine:?}"
        );
    }
}

#[tokio::test]
async fn grants_refunds_and_adjustments_carry_their_reason_into_the_audit() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let (_, _, admin) = hub.operator(Role::Admin).await;
        let (support_id, _, support) = hub.operator(Role::Support).await;
        let (_, _, finance) = hub.operator(Role::Finance).await;
        let customer = hub.user_with(0).await;
        let key = hub.service_key(&["credits:deduct"]).await;
        let bearer = format!("Bearer {finance}");
        let adjust = json!({ "user_id": customer, "amount": 60, "reason": "migrated balance" });
        let headers = [
            ("authorization", bearer.as_str()),
            ("idempotency-key", "adjust-1"),
        ];
        let first = hub
            .call(
                Method::POST,
                "/api/admin/credits/adjust",
                &headers,
                Some(&adjust),
            )
            .await;
        assert_eq!(first.status, StatusCode::OK, "{engine:?}: {:?}", first.json);
        assert_eq!(first.json["kind"], "adjustment");
        let replay = hub
            .call(
                Method::POST,
                "/api/admin/credits/adjust",
                &headers,
                Some(&adjust),
            )
            .await;
        assert_eq!(
            replay.json["id"], first.json["id"],
            "{engine:?}: one adjustment per key"
        );
        let down = json!({ "user_id": customer, "amount": -1000, "reason": "too much" });
        let short = as_bearer(
            &hub,
            &finance,
            Method::POST,
            "/api/admin/credits/adjust",
            Some(&down),
        )
        .await;
        assert_eq!(
            short.status,
            StatusCode::PAYMENT_REQUIRED,
            "{engine:?}: {:?}",
            short.json
        );
        let zero = json!({ "user_id": customer, "amount": 0, "reason": "nothing" });
        let zero = as_bearer(
            &hub,
            &finance,
            Method::POST,
            "/api/admin/credits/adjust",
            Some(&zero),
        )
        .await;
        assert_eq!(zero.status, StatusCode::UNPROCESSABLE_ENTITY);

        let debit = with_key(
            &hub,
            &key,
            &customer.to_string(),
            "/api/mcp/v1/credits/deduct",
            json!({ "service": "sora2", "cost": 20 }),
        )
        .await;
        let refund = json!({ "transaction_id": debit.json["transaction_id"], "amount": 5, "reason": "video failed" });
        let refunded = as_bearer(
            &hub,
            &support,
            Method::POST,
            "/api/admin/credits/refund",
            Some(&refund),
        )
        .await;
        assert_eq!(
            refunded.status,
            StatusCode::OK,
            "{engine:?}: {:?}",
            refunded.json
        );
        assert_eq!(hub.store.balance(customer).await.unwrap(), Some(45));

        let log = as_bearer(&hub, &admin, Method::GET, "/api/admin/audit?limit=1", None).await;
        assert_eq!(log.status, StatusCode::OK, "{engine:?}: {:?}", log.json);
        let newest = &log.json["entries"][0];
        assert_eq!(
            (newest["action"].clone(), newest["reason"].clone()),
            (json!("credits.refund"), json!("video failed"))
        );
        assert_eq!(newest["actor"], format!("user:{support_id}"));
        assert_eq!(newest["after"]["transaction"]["amount"], 5);
        let cursor = log.json["next_cursor"].as_i64().expect("an older page");
        let older = as_bearer(
            &hub,
            &admin,
            Method::GET,
            &format!("/api/admin/audit?cursor={cursor}"),
            None,
        )
        .await;
        let older = older.json["entries"].as_array().unwrap().clone();
        assert_eq!(
            older.len(),
            1,
            "{engine:?}: refusals and replays are not actions: {older:?}"
        );
        assert_eq!(older[0]["action"], "credits.adjust");
        assert_eq!(older[0]["after"]["transaction"]["amount"], 60);
        let csv = hub
            .http
            .get(format!("{}/api/admin/audit?format=csv", hub.gateway_url))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(csv.status(), StatusCode::OK);
        assert!(
            csv.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let csv = csv.text().await.unwrap();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("seq,id,created_at,actor,action,target,before,after,reason,request_id")
        );
        assert!(
            csv.contains("\"credits.adjust\"") && csv.contains("\"migrated balance\""),
            "{csv}"
        );
    }
}
