//! The hub killed with SIGKILL in the middle of concurrent deducts and started again: every debit
//! that answered 200 is in the ledger, and `hub credits audit` is clean.

use super::*;

#[tokio::test]
async fn killed_mid_deducts_nothing_answered_is_lost() {
    for engine in engines() {
        let (setup, config, _db) = match engine {
            Engine::Sqlite => {
                let setup = Setup::new(None, None);
                // The same file the process opens, read after it died.
                let config = hub_storage::DatabaseConfig::Sqlite {
                    path: setup.dir.path().join("hub.db"),
                };
                (setup, config, None)
            }
            Engine::Postgres => {
                let db = TestDatabase::new(Engine::Postgres).await;
                let hub_storage::DatabaseConfig::Postgres { url, .. } = &db.config else {
                    unreachable!()
                };
                let redis = std::env::var("HUB_TEST_REDIS_URL").expect("HUB_TEST_REDIS_URL");
                let setup = Setup::new(Some(url.clone()), Some(redis));
                (setup, db.config.clone(), Some(db))
            }
        };
        let (user, key) = user_and_key(&setup, 10_000);
        let mut hub = setup.up().await;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..400 {
            let (http, gateway, key, user) = (
                http.clone(),
                setup.gateway.clone(),
                key.clone(),
                user.clone(),
            );
            calls.spawn(async move { deduct(&http, &gateway, &key, &user, n).await });
        }
        // Kill it once some debits have answered, while the rest are in flight.
        let mut answered = Vec::new();
        let mut others = 0;
        while let Some(result) = calls.join_next().await {
            match result.expect("task") {
                Ok((StatusCode::OK, body)) => answered.push(body),
                _ => others += 1,
            }
            if answered.len() == 50 {
                hub.kill().expect("SIGKILL");
                let _ = hub.wait();
            }
        }
        assert!(
            answered.len() >= 50,
            "{engine:?}: {} answered",
            answered.len()
        );
        assert!(others > 0, "{engine:?}: the kill came before the last call");

        // Started again on the same storage: every answered debit is there.
        let mut hub = setup.up().await;
        let database = hub_storage::Database::connect(&config)
            .await
            .expect("open the database");
        let ids = ledger_ids(&database, &user).await;
        for body in &answered {
            let id = body["transaction_id"].as_str().expect("transaction_id");
            assert!(
                ids.iter().any(|i| i == id),
                "{engine:?}: {id} was answered but is lost"
            );
        }
        let audit = setup
            .command()
            .args(["credits", "audit"])
            .output()
            .expect("hub credits audit");
        assert!(
            audit.status.success(),
            "{engine:?}: audit: {}",
            String::from_utf8_lossy(&audit.stdout)
        );
        // And it serves again: a retried key answers as before or is done now.
        let (status, _) = deduct(&http, &setup.gateway, &key, &user, 10_000)
            .await
            .expect("deduct after the restart");
        assert_eq!(status, StatusCode::OK, "{engine:?}");
        hub.kill().expect("stop");
        let _ = hub.wait();
    }
}
