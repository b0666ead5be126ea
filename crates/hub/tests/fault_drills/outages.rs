//! Redis stopped and started, and PostgreSQL cut and restored, under a running hub: 503, never
//! 500, and recovery without a restart.

use super::*;

// The proxies run on this runtime while the `hub` command line blocks a thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_postgres_go_away_and_come_back_under_a_running_hub() {
    if !service_configured("HUB_TEST_DATABASE_URL", "PostgreSQL fault drill") {
        return;
    }
    let Some((redis, redis_url)) = ToggleProxy::in_front_of_test_redis("Redis fault drill").await
    else {
        return;
    };
    let db = TestDatabase::new(Engine::Postgres).await;
    let hub_storage::DatabaseConfig::Postgres { url, .. } = &db.config else {
        unreachable!()
    };
    let host = host_of(url);
    let server: SocketAddr = tokio::net::lookup_host(host)
        .await
        .expect("resolve PostgreSQL")
        .next()
        .expect("an address");
    let postgres = ToggleProxy::start(server).await;
    let through = url.replacen(host, &postgres.addr.to_string(), 1);
    let setup = Setup::new(Some(through), Some(redis_url));
    let (user, key) = user_and_key(&setup, 1_000);
    let mut hub = setup.up().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let gateway = setup.gateway.clone();
    let verify = || {
        let (http, gateway) = (http.clone(), gateway.clone());
        async move {
            http.get(format!("{gateway}/api/auth/verify-session"))
                .header(
                    "x-session-token",
                    "VERIFIED-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                )
                .send()
                .await
                .map_or(StatusCode::BAD_GATEWAY, |r| r.status())
        }
    };
    let mut n = 0;
    let mut spend = || {
        n += 1;
        let (http, gateway, key, user) = (http.clone(), gateway.clone(), key.clone(), user.clone());
        let n = n;
        async move {
            deduct(&http, &gateway, &key, &user, n)
                .await
                .map_or(StatusCode::BAD_GATEWAY, |(status, _)| status)
        }
    };
    // Both up: an unknown code is 401, a debit 200.
    assert_eq!(verify().await, StatusCode::UNAUTHORIZED);
    assert_eq!(spend().await, StatusCode::OK);

    // Redis goes away: verify-session says 503 within a second; credits keep working.
    redis.cut();
    let took = until(
        Duration::from_secs(5),
        StatusCode::SERVICE_UNAVAILABLE,
        verify,
    )
    .await;
    assert!(took < Duration::from_secs(1), "503 after {took:?}");
    for _ in 0..5 {
        assert_eq!(spend().await, StatusCode::OK, "credits without Redis");
    }
    // Redis comes back: recovery without a restart.
    redis.restore();
    until(Duration::from_secs(10), StatusCode::UNAUTHORIZED, verify).await;

    // PostgreSQL goes away: debits are 503, never 500.
    postgres.cut();
    until(
        Duration::from_secs(10),
        StatusCode::SERVICE_UNAVAILABLE,
        &mut spend,
    )
    .await;
    for _ in 0..3 {
        let status = spend().await;
        assert!(
            status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::GATEWAY_TIMEOUT,
            "{status}"
        );
    }
    // And comes back: debits work again without a restart.
    postgres.restore();
    until(Duration::from_secs(30), StatusCode::OK, &mut spend).await;
    assert!(
        hub.try_wait().expect("status").is_none(),
        "the hub never restarted"
    );
    hub.kill().expect("stop");
    let _ = hub.wait();

    let audit = setup
        .command()
        .args(["credits", "audit"])
        .env("DATABASE_URL", url)
        .output()
        .expect("hub credits audit");
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
}
