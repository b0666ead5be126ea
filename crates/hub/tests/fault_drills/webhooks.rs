//! Outbound webhooks from the real `hub up`, to a receiver in a separate process (Python's
//! Standard Webhooks library verifies every delivery), on both engines: the first attempt answered
//! 500 is retried and verifies; the hub killed with SIGKILL between a debit that crosses the
//! low-balance threshold and its delivery delivers it after it starts again.

use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};

use super::*;

const RECEIVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fault_drills/webhook_receiver.py"
);

/// The receiver process and what it has printed, one JSON value a delivery.
struct Receiver {
    child: Child,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start(port: u16, secret: &str, fail_first: bool) -> Self {
        let mut child = Command::new("python3")
            .args([
                RECEIVER,
                &port.to_string(),
                secret,
                if fail_first { "1" } else { "0" },
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with standardwebhooks (pip install standardwebhooks)");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = lines.next().expect("the receiver starts").expect("a line");
        assert!(ready.contains("ready"), "{ready}");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str(&line) {
                    sink.lock().expect("lock").push(value);
                }
            }
        });
        Self { child, seen }
    }

    /// The deliveries so far, once `done` holds of them; panics after 30 s.
    async fn until(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let seen = self.seen.lock().expect("lock").clone();
            if done(&seen) {
                return seen;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the receiver got {seen:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A hub on `engine` whose retries start after 200 ms.
async fn setup(engine: Engine) -> (Setup, Option<TestDatabase>) {
    let (mut setup, db) = match engine {
        Engine::Sqlite => (Setup::new(None, None), None),
        Engine::Postgres => {
            let db = TestDatabase::new(Engine::Postgres).await;
            let hub_storage::DatabaseConfig::Postgres { url, .. } = &db.config else {
                unreachable!()
            };
            let redis = std::env::var("HUB_TEST_REDIS_URL").expect("HUB_TEST_REDIS_URL");
            (Setup::new(Some(url.clone()), Some(redis)), Some(db))
        }
    };
    setup
        .env
        .push(("WEBHOOK_RETRY_BASE_MS".to_owned(), "200".to_owned()));
    (setup, db)
}

/// Registers an endpoint on a free port for `events`: the port and the secret.
fn endpoint(setup: &Setup, events: &str) -> (u16, String) {
    let port = free_address().port();
    let made = setup.cli(&[
        "webhook",
        "create",
        "--url",
        &format!("http://127.0.0.1:{port}/hooks"),
        "--events",
        events,
    ]);
    let secret = made["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"));
    (port, secret)
}

#[tokio::test]
async fn a_receiver_verifies_every_delivery_and_gets_the_retry_after_a_500() {
    for engine in engines() {
        let (setup, _db) = setup(engine).await;
        let (port, secret) = endpoint(&setup, "credits.granted");
        let receiver = Receiver::start(port, &secret, true);
        let mut hub = setup.up().await;
        let (user, _) = user_and_key(&setup, 250);
        let seen = receiver
            .until(|seen| seen.iter().any(|d| d["status"] == 200))
            .await;
        assert!(
            seen.iter().all(|d| d["verified"] == true),
            "{engine:?}: {seen:#?}"
        );
        assert_eq!(seen.len(), 2, "{engine:?}: one 500, one retry: {seen:#?}");
        assert_eq!(seen[0]["id"], seen[1]["id"], "the same webhook-id");
        assert_eq!(
            (seen[0]["status"].clone(), seen[1]["attempt"].clone()),
            (json!(500), json!(2))
        );
        let payload = &seen[1]["payload"];
        assert_eq!(payload["type"], "credits.granted", "{engine:?}");
        assert_eq!(payload["data"]["user_id"], user.as_str());
        assert_eq!(payload["data"]["amount"], 250);
        // The operator sees the outcome.
        let listed = until_listed(&setup, |d| d["status"] == "succeeded").await;
        assert_eq!(listed["attempts"], 2, "{engine:?}");
        assert_eq!(listed["last_status"], 200);
        hub.kill().expect("stop");
        let _ = hub.wait();
    }
}

#[tokio::test]
async fn killed_between_the_debit_and_its_delivery_the_event_is_delivered_after_a_restart() {
    for engine in engines() {
        let (setup, _db) = setup(engine).await;
        let (port, secret) = endpoint(&setup, "credits.low");
        let (user, key) = user_and_key(&setup, 100);
        let mut hub = setup.up().await;
        let http = reqwest::Client::new();
        // Nobody listens on the endpoint yet: whatever the dispatcher tries now fails.
        let r = http
            .post(format!("{}/api/mcp/v1/credits/deduct", setup.gateway))
            .bearer_auth(&key)
            .header("x-user-id", &user)
            .json(&json!({ "service": "sora2", "cost": 90 }))
            .send()
            .await
            .expect("deduct");
        assert_eq!(r.status(), StatusCode::OK, "{engine:?}");
        hub.kill().expect("SIGKILL");
        let _ = hub.wait();

        let receiver = Receiver::start(port, &secret, false);
        let mut hub = setup.up().await;
        let seen = receiver.until(|seen| !seen.is_empty()).await;
        assert_eq!(seen[0]["verified"], true, "{engine:?}: {seen:#?}");
        let payload = &seen[0]["payload"];
        assert_eq!(payload["type"], "credits.low", "{engine:?}");
        assert_eq!(payload["data"]["user_id"], user.as_str());
        assert_eq!(
            (
                payload["data"]["available"].clone(),
                payload["data"]["threshold"].clone()
            ),
            (json!(10), json!(20))
        );
        hub.kill().expect("stop");
        let _ = hub.wait();
    }
}

/// The newest delivery once `done` holds of it (`hub webhook deliveries`); panics after 30 s.
async fn until_listed(setup: &Setup, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let listed = setup.cli(&["webhook", "deliveries", "--limit", "1"]);
        if let Some(first) = listed.get(0).filter(|d| done(d)) {
            return first.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{listed:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
