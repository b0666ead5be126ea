//! The services keep nothing of their own between requests, so they scale out: two gateways and
//! two core services, each with its own connection pool and caches, share one PostgreSQL and one
//! Redis. Deducts spread over both gateways are counted exactly, one caller's rate limit is one
//! budget whichever gateway they reach, and a revoked key stops on both.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hub_config::SecretString;
use hub_gateway::limits::PerMinute;
use hub_test_support::{
    Engine, SessionBackend, TestDatabase, engines, random_token, session_backends, user_with,
};
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::oneshot;

/// Each caller's budget on the credit endpoints, on every gateway.
const CREDITS_PER_MINUTE: u64 = 600;

/// A core service and a gateway in front of it, as the standalone `core` and `gateway` binaries
/// start them (`Deps::open` and `App::build` from their configuration: own pool, own caches), sharing `db` and
/// Redis under `prefix`. Stops when the returned sender is dropped.
async fn replica(
    db: &TestDatabase,
    token: &str,
    redis: &str,
    prefix: &str,
) -> (String, Vec<oneshot::Sender<()>>) {
    let stopper = || {
        let (tx, rx) = oneshot::channel::<()>();
        (tx, async move {
            let _ = rx.await;
        })
    };
    // Small pools: the other tests share this PostgreSQL (and its 100 connections) meanwhile.
    let database = match &db.config {
        hub_storage::DatabaseConfig::Postgres { url, .. } => {
            hub_storage::DatabaseConfig::Postgres {
                url: url.clone(),
                max_connections: 4,
            }
        }
        other => other.clone(),
    };
    let core_config = hub_core::Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        database: database.clone(),
        internal_token: SecretString::from(token.to_owned()),
        payments: Default::default(),
        webhooks: Default::default(),
    };
    let deps = hub_core::Deps::open(&core_config)
        .await
        .expect("its database");
    let core = hub_core::App::build(core_config, deps)
        .await
        .expect("a core replica");
    let core_url = format!("http://{}", core.address());
    let (stop_core, until) = stopper();
    tokio::spawn(core.run_until(until));

    let nothing = "http://127.0.0.1:9".to_owned();
    let config = hub_gateway::Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        redis_url: Some(redis.to_owned()),
        redis_prefix: prefix.to_owned(),
        limits: hub_gateway::Limits {
            credits: PerMinute(CREDITS_PER_MINUTE),
            ..hub_gateway::Limits::default()
        },
        ..hub_gateway::Config::defaults_for(
            nothing.clone(),
            core_url,
            nothing,
            SecretString::from(token.to_owned()),
            database,
        )
    };
    let key_cache = config.service_key_cache;
    assert_eq!(key_cache, Duration::from_secs(5), "the documented default");
    let deps = hub_gateway::Deps::open(&config)
        .await
        .expect("its database");
    let gateway = hub_gateway::App::build(config, deps)
        .await
        .expect("a gateway replica");
    let url = format!("http://{}", gateway.address());
    let (stop_gateway, until) = stopper();
    tokio::spawn(gateway.run_until(until));
    (url, vec![stop_core, stop_gateway])
}

#[tokio::test]
async fn two_gateways_and_two_cores_share_the_ledger_the_limits_and_revocations() {
    if !engines().contains(&Engine::Postgres)
        || !session_backends().contains(&SessionBackend::Redis)
    {
        return;
    }
    let db = TestDatabase::new(Engine::Postgres).await;
    let store = db.store();
    let token = random_token();
    let redis = std::env::var("HUB_TEST_REDIS_URL").expect("HUB_TEST_REDIS_URL");
    let prefix = format!("hub-test-{}:", uuid::Uuid::new_v4().simple());
    let (a, _stop_a) = replica(&db, &token, &redis, &prefix).await;
    let (b, _stop_b) = replica(&db, &token, &redis, &prefix).await;
    let gateways = [a, b];

    let scopes = ["credits:check".to_owned(), "credits:deduct".to_owned()];
    let key = hub_core::service_keys::new_key("replicas", &scopes).unwrap();
    store.insert_service_key(&key).await.unwrap();
    let http = reqwest::Client::new();
    let deduct = |gateway: &str, user: uuid::Uuid| {
        http.post(format!("{gateway}/api/mcp/v1/credits/deduct"))
            .bearer_auth(&key.key)
            .header("x-user-id", user.to_string())
            .json(&json!({ "service": "sora2", "cost": 1 }))
            .send()
    };
    let balance = |gateway: &str, user: uuid::Uuid| {
        http.get(format!("{gateway}/api/mcp/v1/credits/balance"))
            .bearer_auth(&key.key)
            .header("x-user-id", user.to_string())
            .send()
    };

    // 500 concurrent deducts of 1 credit against 400, half through each gateway: exactly 400.
    let spender = user_with(&store, 400).await;
    let answers = join_all((0..500).map(|i| deduct(&gateways[i % 2], spender))).await;
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for answer in answers {
        *by_status
            .entry(answer.expect("the gateway answers").status().as_u16())
            .or_default() += 1;
    }
    assert_eq!(
        by_status,
        [(200, 400), (402, 100)].into_iter().collect(),
        "400 deducts succeed, 100 find the balance spent"
    );
    let holdings = store.holdings(spender).await.unwrap().unwrap();
    assert_eq!((holdings.balance, holdings.held), (0, 0));

    // One caller's budget, whichever gateway they reach: 720 calls spread over both allow the
    // minute's 600 (plus what the seconds spent refill), not 600 on each.
    let reader = user_with(&store, 1).await;
    let started = Instant::now();
    let mut allowed = [0u64; 2];
    let mut limited = [0u64; 2];
    for round in 0..(720 / 30) {
        let answers = join_all((0..30).map(|i| balance(&gateways[i % 2], reader))).await;
        for (i, answer) in answers.into_iter().enumerate() {
            match answer.expect("the gateway answers").status() {
                StatusCode::OK => allowed[i % 2] += 1,
                StatusCode::TOO_MANY_REQUESTS => limited[i % 2] += 1,
                other => panic!("round {round}: {other}"),
            }
        }
    }
    // GCRA refills one request every 60 s / 600 = 100 ms.
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap();
    let refilled = elapsed_ms * CREDITS_PER_MINUTE / 60_000 + 2;
    let total = allowed[0] + allowed[1];
    assert!(
        (CREDITS_PER_MINUTE..=CREDITS_PER_MINUTE + refilled).contains(&total),
        "{allowed:?} allowed, {limited:?} limited: one budget of {CREDITS_PER_MINUTE} (+{refilled})"
    );
    assert!(
        limited[0] > 0 && limited[1] > 0,
        "both gateways refuse: {limited:?}"
    );

    // A revoked key stops on both, within the key cache's 5 seconds.
    let fresh = user_with(&store, 10).await;
    for gateway in &gateways {
        assert_eq!(
            balance(gateway, fresh).await.unwrap().status(),
            StatusCode::OK
        );
    }
    assert!(store.revoke_service_key(&key.record.id).await.unwrap());
    let revoked = Instant::now();
    for gateway in &gateways {
        loop {
            let status = balance(gateway, fresh).await.unwrap().status();
            if status == StatusCode::UNAUTHORIZED {
                break;
            }
            assert_eq!(status, StatusCode::OK);
            assert!(
                revoked.elapsed() < Duration::from_secs(7),
                "{gateway} still takes a key revoked {:?} ago",
                revoked.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // And nothing it sends afterwards is taken, on either.
    for gateway in &gateways {
        assert_eq!(
            deduct(gateway, fresh).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let holdings = store.holdings(fresh).await.unwrap().unwrap();
    assert_eq!(holdings.balance, 10);
}
