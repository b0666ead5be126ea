//! The credit endpoints through HTTP, as the gateway and the GPT use them, on every engine.

mod concurrency;
mod journey;
mod refusals;

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
