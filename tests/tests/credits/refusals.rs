//! What is refused: bad input (a clear 4xx that changes nothing) and callers the gateway does
//! not vouch for.

use super::*;

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    for engine in engines() {
        let core = spawn_core(engine).await;
        let user = core.user_with(100).await;
        let gpt = As::Service {
            scopes: GPT,
            user: Some(user),
        };
        let big = "x".repeat(17 * 1024);
        let cases: Vec<(Value, u16, &str)> = vec![
            (
                json!({ "service": "sora2", "cost": -1 }),
                422,
                "invalid_amount",
            ),
            (
                json!({ "service": "sora2", "cost": 0 }),
                422,
                "invalid_amount",
            ),
            (
                json!({ "service": "sora2", "cost": 1.5 }),
                422,
                "invalid_field",
            ),
            (
                json!({ "service": "sora2", "cost": "30" }),
                422,
                "invalid_field",
            ),
            (
                json!({ "service": "sora2", "cost": 1_000_000_000_001i64 }),
                422,
                "invalid_amount",
            ),
            (
                json!({ "service": "sora2", "cost": 1e20 }),
                422,
                "invalid_field",
            ),
            (json!({ "service": "", "cost": 1 }), 422, "invalid_service"),
            (
                json!({ "service": "Sora2 Video", "cost": 1 }),
                422,
                "invalid_service",
            ),
            (
                json!({ "service": "s".repeat(65), "cost": 1 }),
                422,
                "invalid_service",
            ),
            (json!({ "cost": 1 }), 422, "invalid_field"),
            (
                json!({ "service": "sora2", "cost": 1, "metadata": "text" }),
                422,
                "invalid_field",
            ),
            (
                json!({ "service": "sora2", "cost": 1, "surprise": true }),
                422,
                "invalid_field",
            ),
            (
                json!({ "service": "sora2", "cost": 1, "metadata": { "p": big } }),
                413,
                "metadata_too_large",
            ),
        ];
        for (body, status, code) in cases {
            let r = core.post(DEDUCT, &gpt, body.clone()).await;
            assert_eq!(r.status.as_u16(), status, "{engine:?} {body}: {:?}", r.json);
            assert_eq!(r.json["error"]["code"], code, "{body}");
            assert!(!r.json["error"]["message"].as_str().unwrap().is_empty());
        }
        let raw = |body: &'static str| {
            core.http
                .post(format!("{}{DEDUCT}", core.base_url))
                .header("x-hub-internal", &core.token)
                .header("x-hub-caller", "system")
                .header("x-user-id", user.to_string())
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        let r = raw("{\"service\": \"sora2\", ").await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "malformed_json");

        let huge =
            json!({ "service": "sora2", "cost": 1, "metadata": { "p": "y".repeat(70 * 1024) } });
        let r = core.post(DEDUCT, &gpt, huge).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(r.json["error"]["code"], "payload_too_large");

        for bad in ["42", "not-a-uuid", ""] {
            let r = core
                .call(
                    Method::POST,
                    DEDUCT,
                    &As::Nobody,
                    Some(&sora(1)),
                    &[
                        ("x-hub-internal", &core.token),
                        ("x-hub-caller", "system"),
                        ("x-user-id", bad),
                    ],
                )
                .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "X-User-ID {bad:?}");
            assert_eq!(r.json["error"]["code"], "invalid_user_id");
        }
        let r = core
            .post(
                CHECK,
                &As::System(None),
                json!({ "service": "s", "cost": 1 }),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "a missing X-User-ID");

        let refunds: Vec<(Value, &str)> = vec![
            (
                json!({ "transaction_id": "txn_\u{0}", "reason": "x" }),
                "invalid_transaction_id",
            ),
            (
                json!({ "transaction_id": "x".repeat(65), "reason": "x" }),
                "invalid_transaction_id",
            ),
            (
                json!({ "transaction_id": "txn_1", "reason": "bad\u{0}reason" }),
                "invalid_reason",
            ),
            (
                json!({ "transaction_id": "txn_1", "reason": "" }),
                "invalid_reason",
            ),
            (
                json!({ "transaction_id": "txn_1", "reason": "x", "amount": 0 }),
                "invalid_amount",
            ),
        ];
        for (body, code) in refunds {
            let r = core.post(REFUND, &As::System(None), body.clone()).await;
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{engine:?} {body}: {:?}",
                r.json
            );
            assert_eq!(r.json["error"]["code"], code, "{body}");
        }

        let r = core.get(&format!("{HISTORY}?limit=0"), &gpt).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        let r = core.get(&format!("{HISTORY}?limit=abc"), &gpt).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        let r = core
            .call(
                Method::POST,
                DEDUCT,
                &gpt,
                Some(&sora(1)),
                &[("idempotency-key", &"k".repeat(256))],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.json["error"]["code"], "invalid_idempotency_key");

        let r = core
            .call(Method::PUT, DEDUCT, &gpt, Some(&sora(1)), &[])
            .await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.json["error"]["code"], "method_not_allowed");
        let r = core.get("/api/mcp/v1/credits/nothing-here", &gpt).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.json["error"]["code"], "not_found");

        assert_eq!(
            balance(&core, user).await,
            100,
            "{engine:?}: nothing changed"
        );
        assert_eq!(
            core.store
                .transactions(user, 10, None)
                .await
                .unwrap()
                .unwrap()
                .transactions
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn only_callers_the_gateway_vouches_for_are_served() {
    for engine in engines() {
        let core = spawn_core(engine).await;
        let alice = core.user_with(100).await;
        let bob = core.user_with(100).await;

        let r = core.post(DEDUCT, &As::Nobody, sora(1)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{engine:?}");
        assert_eq!(r.json["error"]["code"], "unauthenticated");
        let r = core
            .call(
                Method::POST,
                DEDUCT,
                &As::Nobody,
                Some(&sora(1)),
                &[
                    ("x-hub-internal", "guessed-guessed-guessed-guessed-guessed"),
                    ("x-hub-caller", "system"),
                    ("x-user-id", &alice.to_string()),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = core
            .call(
                Method::POST,
                DEDUCT,
                &As::Nobody,
                Some(&sora(1)),
                &[
                    ("x-hub-internal", &core.token),
                    ("x-user-id", &alice.to_string()),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "no caller kind");

        // A service key without the scope.
        let reader = As::Service {
            scopes: "credits:check",
            user: Some(alice),
        };
        assert_eq!(
            core.post(CHECK, &reader, json!({ "service": "s", "cost": 1 }))
                .await
                .status,
            StatusCode::OK
        );
        let r = core.post(DEDUCT, &reader, sora(1)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.json["error"]["code"], "forbidden");

        // An end user spends their own credits, never refunds them, never grants.
        let r = core.post(DEDUCT, &As::User(alice), sora(30)).await;
        assert_eq!(r.status, StatusCode::OK);
        let spent = r.json["transaction_id"].as_str().unwrap().to_owned();
        let r = core
            .post(
                REFUND,
                &As::User(alice),
                json!({ "transaction_id": spent, "reason": "please" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = core
            .post(
                GRANT,
                &As::User(alice),
                json!({ "user_id": alice, "amount": 5, "reason": "me" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        // A key that acts for Bob does not refund Alice's debit.
        let for_bob = As::Service {
            scopes: "credits:refund",
            user: Some(bob),
        };
        let r = core
            .post(
                REFUND,
                &for_bob,
                json!({ "transaction_id": spent, "reason": "x" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);

        // An admin grants, and refunds others' debits but not their own.
        core.store
            .assign_role(bob, hub_core::users::Role::Admin)
            .await
            .unwrap();
        let r = core
            .post(
                GRANT,
                &As::User(bob),
                json!({ "user_id": alice, "amount": 5, "reason": "welcome" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
        assert_eq!(r.json["kind"], "grant");
        assert_eq!(r.json["balance_after"], 75);
        let r = core
            .post(
                REFUND,
                &As::User(bob),
                json!({ "transaction_id": spent, "reason": "goodwill" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let r = core.post(DEDUCT, &As::User(bob), sora(10)).await;
        let own = r.json["transaction_id"].as_str().unwrap().to_owned();
        let r = core
            .post(
                REFUND,
                &As::User(bob),
                json!({ "transaction_id": own, "reason": "mine" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        assert_eq!(balance(&core, alice).await, 105);
        let r = core
            .post(
                GRANT,
                &As::System(None),
                json!({ "user_id": Uuid::now_v7(), "amount": 5, "reason": "x" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_invariant(&core).await;
    }
}
