//! Requests at once: idempotency keys, concurrent deducts and refunds.

use super::*;

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
