//! Redis going away: verify-session answers 503 quickly, never 500 or a hang, and recovers by
//! itself when Redis is back.

use std::time::{Duration, Instant};

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::proxy::ToggleProxy;
use hub_test_support::{browser, spawn_auth_with_redis};
use reqwest::StatusCode;

#[tokio::test]
async fn an_unreachable_redis_is_a_quick_503_and_recovery_is_automatic() {
    let Some((proxy, through)) = ToggleProxy::in_front_of_test_redis("Redis outage").await else {
        return;
    };
    let google = FakeGoogle::start().await;
    let auth = spawn_auth_with_redis(Some(through.clone()), Some(&google)).await;
    let code = auth
        .sign_in(&browser(), "session=outage")
        .await
        .code()
        .unwrap();
    assert_eq!(auth.verify(&code).await.status, StatusCode::OK);

    proxy.cut();
    for attempt in 0..3 {
        let started = Instant::now();
        let r = auth.verify(&code).await;
        let took = started.elapsed();
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "attempt {attempt}: {:?}",
            r.json
        );
        assert_eq!(r.json["error"]["code"], "unavailable");
        assert_eq!(r.headers["retry-after"], "1");
        assert!(
            took < Duration::from_secs(1),
            "attempt {attempt} took {took:?}"
        );
    }

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = auth.verify(&code).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            Instant::now() < deadline,
            "verify-session recovers once Redis is back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
