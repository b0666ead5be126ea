//! The credit endpoints through HTTP, as the gateway and the GPT use them, on every engine.

use futures_util::future::join_all;
use hub_test_support::{As, SpawnedCore, count, engines, spawn_core};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

const CHECK: &str = "/api/mcp/v1/credits/check";
const DEDUCT: &str = "/api/mcp/v1/credits/deduct";
const REFUND: &str = "/api/mcp/v1/credits/refund";
const BALANCE: &str = "/api/mcp/v1/credits/balance";
const HISTORY: &str = "/api/mcp/v1/credits/transactions";
const GRANT: &str = "/api/admin/credits/grant";

const GPT: &str = "credits:check credits:deduct";

fn sora(cost: i64) -> Value {
    json!({ "service": "sora2-video-generation", "cost": cost, "metadata": { "prompt": "a cat on a skateboard" } })
}

async fn balance(core: &SpawnedCore, user: Uuid) -> i64 {
    core.store.balance(user).await.unwrap().unwrap()
}

async fn assert_invariant(core: &SpawnedCore) {
    let report = core.store.audit().await.unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
}

#[tokio::test]
async fn the_sora2_journey_checks_deducts_and_refunds() {
    for engine in engines() {
        let core = spawn_core(engine).await;
        let user = core.user_with(100).await;
        let gpt = As::Service {
            scopes: "credits:check credits:deduct credits:refund",
            user: Some(user),
        };

        let r = core
            .post(
                CHECK,
                &gpt,
                json!({ "service": "sora2-video-generation", "cost": 30 }),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{engine:?} {:?}", r.json);
        assert_eq!(r.json, json!({ "sufficient": true, "balance": 100 }));

        let mut statuses = Vec::new();
        let mut last = Value::Null;
        for _ in 0..4 {
            let r = core.post(DEDUCT, &gpt, sora(30)).await;
            statuses.push(r.status.as_u16());
            if r.status == StatusCode::OK {
                last = r.json;
            } else {
                assert_eq!(r.json["balance"], 10);
                assert_eq!(r.json["error"]["code"], "insufficient_credits");
                assert!(
                    r.json["error"]["request_id"]
                        .as_str()
                        .is_some_and(|id| !id.is_empty())
                );
                assert_eq!(
                    r.headers["x-request-id"].to_str().unwrap(),
                    r.json["error"]["request_id"]
                );
            }
        }
        assert_eq!(statuses, [200, 200, 200, 402]);
        assert_eq!(last["status"], "ok");
        assert_eq!(last["new_balance"], 10);
        let spent = last["transaction_id"].as_str().unwrap().to_owned();

        let r = core
            .post(
                CHECK,
                &gpt,
                json!({ "service": "sora2-video-generation", "cost": 30 }),
            )
            .await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(r.json["sufficient"], false);
        assert_eq!(r.json["balance"], 10);
        assert_eq!(r.json["error"]["code"], "insufficient_credits");

        let r = core
            .post(
                REFUND,
                &gpt,
                json!({ "transaction_id": spent, "reason": "video failed" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
        assert_eq!(r.json["new_balance"], 40);
        assert_eq!(r.json["refunded"], 30);
        assert_eq!(r.json["refund_of"], spent.as_str());

        let r = core
            .post(
                REFUND,
                &gpt,
                json!({ "transaction_id": spent, "reason": "again" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert_eq!(r.json["error"]["code"], "already_refunded");

        let r = core.get(BALANCE, &gpt).await;
        assert_eq!(
            r.json,
            json!({ "user_id": user, "balance": 40, "held": 0, "available_balance": 40 })
        );

        let r = core.get(&format!("{HISTORY}?limit=2"), &gpt).await;
        assert_eq!(r.status, StatusCode::OK);
        let page = r.json["transactions"].as_array().unwrap();
        assert_eq!(page[0]["kind"], "refund");
        assert_eq!(page[1]["kind"], "debit");
        assert_eq!(page[1]["amount"], -30);
        assert_eq!(page[1]["balance_before"], 40);
        assert_eq!(page[1]["balance_after"], 10);
        assert_eq!(page[1]["metadata"]["prompt"], "a cat on a skateboard");
        assert!(page[1]["created_at"].as_str().is_some());
        let cursor = r.json["next_cursor"].as_str().unwrap();
        let r = core
            .get(&format!("{HISTORY}?limit=200&cursor={cursor}"), &gpt)
            .await;
        let kinds: Vec<_> = r.json["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["kind"].clone())
            .collect();
        assert_eq!(kinds, [json!("debit"), json!("debit"), json!("grant")]);
        assert_eq!(r.json["next_cursor"], Value::Null);
        assert_invariant(&core).await;
    }
}

#[tokio::test]
async fn unknown_users_are_404_everywhere() {
    for engine in engines() {
        let core = spawn_core(engine).await;
        let ghost = As::Service {
            scopes: GPT,
            user: Some(Uuid::now_v7()),
        };
        for (path, body) in [
            (CHECK, json!({ "service": "s", "cost": 1 })),
            (DEDUCT, sora(1)),
        ] {
            let r = core.post(path, &ghost, body).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{engine:?} {path}");
            assert_eq!(r.json["error"]["code"], "unknown_user");
        }
        assert_eq!(
            core.get(BALANCE, &ghost).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            core.get(HISTORY, &ghost).await.status,
            StatusCode::NOT_FOUND
        );
        let r = core
            .post(
                REFUND,
                &As::System(None),
                json!({ "transaction_id": "txn_missing", "reason": "x" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.json["error"]["code"], "unknown_transaction");
    }
}

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

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer() {
    for engine in engines() {
        let core = spawn_core(engine).await;
        let user = core.user_with(100).await;
        let gpt = As::Service {
            scopes: GPT,
            user: Some(user),
        };
        let key = [("idempotency-key", "video-123")];
        let first = core
            .call(Method::POST, DEDUCT, &gpt, Some(&sora(30)), &key)
            .await;
        assert_eq!(first.status, StatusCode::OK, "{engine:?}");
        let again = core
            .call(Method::POST, DEDUCT, &gpt, Some(&sora(30)), &key)
            .await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.json, first.json);
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert_eq!(balance(&core, user).await, 70);

        let other = core
            .call(Method::POST, DEDUCT, &gpt, Some(&sora(31)), &key)
            .await;
        assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(other.json["error"]["code"], "idempotency_key_reused");
        assert_eq!(balance(&core, user).await, 70);

        // The same key for another user of the same service key is another key.
        let someone = core.user_with(100).await;
        let for_someone = As::Service {
            scopes: GPT,
            user: Some(someone),
        };
        let r = core
            .call(Method::POST, DEDUCT, &for_someone, Some(&sora(30)), &key)
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_ne!(r.json["transaction_id"], first.json["transaction_id"]);

        // A refusal is replayed as a refusal, even once the balance would cover it.
        let key2 = [("idempotency-key", "video-124")];
        let r = core
            .call(Method::POST, DEDUCT, &gpt, Some(&sora(1000)), &key2)
            .await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
        core.post(
            GRANT,
            &As::System(None),
            json!({ "user_id": user, "amount": 1000, "reason": "top-up" }),
        )
        .await;
        let r = core
            .call(Method::POST, DEDUCT, &gpt, Some(&sora(1000)), &key2)
            .await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(r.json["balance"], 70);
        assert_invariant(&core).await;
    }
}

async fn count_debits(core: &SpawnedCore, user: Uuid) -> usize {
    let page = core
        .store
        .transactions(user, 200, None)
        .await
        .unwrap()
        .unwrap();
    page.transactions
        .iter()
        .filter(|t| t.kind == hub_core::ledger::TransactionKind::Debit)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_concurrent_deducts_never_overdraw() {
    for engine in engines() {
        let core = spawn_core(engine).await;
        let user = core.user_with(3000).await;
        let gpt = As::Service {
            scopes: GPT,
            user: Some(user),
        };
        let requests = (0..500).map(|_| core.post(DEDUCT, &gpt, sora(30)));
        let replies = join_all(requests).await;
        let ok = count(&replies, StatusCode::OK);
        let short = count(&replies, StatusCode::PAYMENT_REQUIRED);
        assert_eq!((ok, short), (100, 400), "{engine:?}");
        assert_eq!(balance(&core, user).await, 0);
        assert_eq!(count_debits(&core, user).await, 100);
        let mut balances: Vec<i64> = replies
            .iter()
            .filter(|r| r.status == StatusCode::OK)
            .map(|r| r.json["new_balance"].as_i64().unwrap())
            .collect();
        balances.sort_unstable();
        assert_eq!(
            balances,
            (0..100).map(|i| i * 30).collect::<Vec<_>>(),
            "each balance seen once"
        );
        assert_invariant(&core).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_identical_requests_in_flight_are_charged_once() {
    for engine in engines() {
        let core = spawn_core(engine).await;
        let user = core.user_with(3000).await;
        let gpt = As::Service {
            scopes: GPT,
            user: Some(user),
        };
        let body = sora(30);
        let requests = (0..50).map(|_| {
            core.call(
                Method::POST,
                DEDUCT,
                &gpt,
                Some(&body),
                &[("idempotency-key", "same-video")],
            )
        });
        let replies = join_all(requests).await;
        assert!(
            replies.iter().all(|r| r.status == StatusCode::OK),
            "{engine:?}"
        );
        let first = &replies[0].json["transaction_id"];
        assert!(replies.iter().all(|r| &r.json["transaction_id"] == first));
        assert_eq!(
            replies
                .iter()
                .filter(|r| !r.headers.contains_key("idempotent-replayed"))
                .count(),
            1,
            "one fresh answer, the rest replays"
        );
        assert_eq!(count_debits(&core, user).await, 1);
        assert_eq!(balance(&core, user).await, 2970);
        assert_invariant(&core).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refunds_never_return_more_than_the_debit() {
    for engine in engines() {
        let core = spawn_core(engine).await;
        let user = core.user_with(100).await;
        let gpt = As::Service {
            scopes: "credits:deduct credits:refund",
            user: Some(user),
        };
        let spent = core.post(DEDUCT, &gpt, sora(30)).await.json["transaction_id"]
            .as_str()
            .unwrap()
            .to_owned();

        let partial = (0..20).map(|_| {
            core.post(
                REFUND,
                &gpt,
                json!({ "transaction_id": spent, "amount": 4, "reason": "partial" }),
            )
        });
        let replies = join_all(partial).await;
        let ok = count(&replies, StatusCode::OK);
        assert_eq!(ok, 7, "{engine:?}: 7 × 4 = 28 of 30");
        assert!(
            replies
                .iter()
                .all(|r| r.status == StatusCode::OK || r.status == StatusCode::CONFLICT)
        );

        let rest = (0..20).map(|_| {
            core.post(
                REFUND,
                &gpt,
                json!({ "transaction_id": spent, "reason": "rest" }),
            )
        });
        let replies = join_all(rest).await;
        assert_eq!(count(&replies, StatusCode::OK), 1);
        assert_eq!(
            balance(&core, user).await,
            100,
            "refunded exactly the 30 spent"
        );
        assert_invariant(&core).await;
    }
}

#[tokio::test]
async fn health_and_readiness() {
    for engine in engines() {
        let core = spawn_core(engine).await;
        let r = core.get("/health", &As::Nobody).await;
        assert_eq!(
            (r.status, r.json["status"].clone()),
            (StatusCode::OK, json!("ok"))
        );
        let r = core.get("/ready", &As::Nobody).await;
        assert_eq!(
            (r.status, r.json["status"].clone()),
            (StatusCode::OK, json!("ready")),
            "{engine:?}"
        );
        let user = core.user_with(10).await;
        core.db.database.close().await;
        let r = core.get("/ready", &As::Nobody).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{engine:?}");
        let r = core
            .post(
                CHECK,
                &As::System(Some(user)),
                json!({ "service": "s", "cost": 1 }),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{engine:?}: {:?}",
            r.json
        );
        assert_eq!(r.json["error"]["code"], "unavailable");
        assert_eq!(r.headers["retry-after"], "1");
    }
}
