//! The sora2 journey (check, deduct, refund) and unknown users.

use super::*;

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
