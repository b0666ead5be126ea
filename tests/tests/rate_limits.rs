//! Rate limits at the gateway: per address only where there is no caller, per caller (and per
//! user a key acts for) where there is one; failed verifications per address; shared through
//! Redis by every replica, in process without it.

use hub_gateway::Limits;
use hub_gateway::limits::{Limiter, PerMinute};
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::proxy::ToggleProxy;
use hub_test_support::{Engine, SpawnedHub, browser, hub_backends, redis_cluster_configured};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn small() -> Limits {
    Limits {
        google: PerMinute(3),
        verify: PerMinute(100),
        verify_failures: PerMinute(3),
        credits: PerMinute(5),
        default: PerMinute(100),
    }
}

#[tokio::test]
async fn over_the_limit_is_429_with_retry_after_and_ratelimit_headers() {
    for backends in hub_backends() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(backends, &google)
            .gateway(|config| config.limits = small())
            .start()
            .await;

        // Starting sign-ins: per address.
        let client = browser();
        for i in 0..3 {
            let r = client
                .get(format!("{}/auth/google?session=s{i}", hub.gateway_url))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::FOUND, "{backends:?} start {i}");
        }
        let r = client
            .get(format!("{}/auth/google?session=s9", hub.gateway_url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=20).contains(&retry), "{retry}");
        assert_eq!(r.headers()["ratelimit-limit"], "3");
        assert_eq!(r.headers()["ratelimit-remaining"], "0");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited");
        assert_eq!(
            body["limit"], "rate_limit:sign_in",
            "the 429 names its limit"
        );
        assert_eq!(body["limit_per_minute"], 3);

        // Credits: per caller, and per user a key acts for.
        let a = hub
            .store
            .create_user(
                &hub_core::users::NewUser::new(
                    "a@example.com",
                    "A",
                    100,
                    hub_core::users::Role::User,
                )
                .unwrap(),
            )
            .await
            .unwrap()
            .unwrap()
            .user
            .id
            .to_string();
        let b = hub
            .store
            .create_user(
                &hub_core::users::NewUser::new(
                    "b@example.com",
                    "B",
                    100,
                    hub_core::users::Role::User,
                )
                .unwrap(),
            )
            .await
            .unwrap()
            .unwrap()
            .user
            .id
            .to_string();
        let key = hub.service_key(&["credits:check"]).await;
        let check = json!({ "service": "sora2", "cost": 1 });
        for i in 0..5 {
            let r = hub
                .call(
                    Method::POST,
                    "/api/mcp/v1/credits/check",
                    &[("x-api-key", &key), ("x-user-id", &a)],
                    Some(&check),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "check {i}");
            assert_eq!(
                r.headers["ratelimit-remaining"].to_str().unwrap(),
                (4 - i).to_string()
            );
        }
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/check",
                &[("x-api-key", &key), ("x-user-id", &a)],
                Some(&check),
            )
            .await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.json["limit"], "rate_limit:caller", "{:?}", r.json);
        assert_eq!(r.json["limit_per_minute"], 5);
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/check",
                &[("x-api-key", &key), ("x-user-id", &b)],
                Some(&check),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "another user the same key acts for has a budget of their own"
        );
        let metrics = hub
            .http
            .get(format!("{}/metrics", hub.gateway_url))
            .send()
            .await
            .unwrap();
        let text = metrics.text().await.unwrap();
        for class in ["google", "credits"] {
            let line = format!(r#"hub_rate_limited_total{{service="gateway",class="{class}"}} 1"#);
            assert!(text.contains(&line), "{backends:?}: {line} in\n{text}");
        }
    }
}

#[tokio::test]
async fn failed_verifications_are_limited_per_address_and_successes_do_not_count() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google)
        .gateway(|config| config.limits = small())
        .start()
        .await;
    let code = hub.sign_in(&browser(), "session=v").await.code().unwrap();
    for _ in 0..10 {
        let r = hub
            .call(
                Method::GET,
                "/api/auth/verify-session",
                &[("x-session-token", &code)],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "successes do not count");
    }
    for i in 0..3 {
        let guess = format!("VERIFIED-{:032}", i);
        let r = hub
            .call(
                Method::GET,
                "/api/auth/verify-session",
                &[("x-session-token", &guess)],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = hub
        .call(
            Method::GET,
            "/api/auth/verify-session",
            &[("x-session-token", &code)],
            None,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "three failures from this address: it waits"
    );
    assert!(r.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn replicas_share_limits_through_redis_and_fall_back_when_it_is_gone() {
    let Some((proxy, through)) = ToggleProxy::in_front_of_test_redis("Redis rate limit").await
    else {
        return;
    };
    let (one, two) = two_replicas(&through, false).await;
    let limit = PerMinute(3);
    replicas_share(&one, &two).await;

    proxy.cut();
    let started = std::time::Instant::now();
    let fallback = one.check("fresh", limit, true).await;
    assert!(
        fallback.allowed,
        "in process: neither open to everything nor closed with errors"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    for _ in 0..2 {
        one.check("fresh", limit, true).await;
    }
    assert!(
        !one.check("fresh", limit, true).await.allowed,
        "the fallback still limits"
    );
}

#[tokio::test]
async fn replicas_share_limits_through_a_redis_cluster() {
    if !redis_cluster_configured() {
        return;
    }
    let seeds = std::env::var("HUB_TEST_REDIS_CLUSTER_URL").unwrap();
    let (one, two) = two_replicas(&seeds, true).await;
    replicas_share(&one, &two).await;
}

/// Two replicas' limiters over the Redis at `url` (a cluster's seeds with `cluster`), on one prefix.
async fn two_replicas(url: &str, cluster: bool) -> (Limiter, Limiter) {
    let prefix = format!("hub-test-{}:", uuid::Uuid::new_v4().simple());
    let connect = || async {
        hub_auth::sessions::redis::connect(url, cluster, std::time::Duration::from_secs(1))
            .await
            .unwrap()
    };
    let one = Limiter::new(Some((connect().await, prefix.clone())));
    (one, Limiter::new(Some((connect().await, prefix))))
}

/// Two replicas' limiters over one Redis: each sees the other's requests to a limit of 3.
async fn replicas_share(one: &Limiter, two: &Limiter) {
    let limit = PerMinute(3);
    assert!(one.check("k", limit, true).await.allowed);
    assert!(two.check("k", limit, true).await.allowed);
    assert!(one.check("k", limit, true).await.allowed);
    let refused = two.check("k", limit, true).await;
    assert!(
        !refused.allowed,
        "the second replica sees the first one's requests"
    );
    assert!(refused.reset.as_secs() <= 20);
}
