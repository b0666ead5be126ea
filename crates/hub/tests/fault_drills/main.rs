//! Fault drills on the real `hub up` process: killed with SIGKILL in the middle of concurrent
//! deducts and started again (every debit that answered 200 is in the ledger, and
//! `hub credits audit` is clean), on both engines; Redis stopped and started, and PostgreSQL cut
//! and restored, under a running hub (503, never 500, and recovery without a restart).

mod killed;
mod outages;
mod webhooks;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hub_test_support::proxy::ToggleProxy;
use hub_test_support::{Engine, TestDatabase, engines, service_configured};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A `hub` process's environment: its storage and four free addresses.
struct Setup {
    env: Vec<(String, String)>,
    gateway: String,
    dir: tempfile::TempDir,
}

fn free_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

impl Setup {
    /// The hub on `database_url` (SQLite when `None`) and `redis_url`.
    fn new(database_url: Option<String>, redis_url: Option<String>) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut env = vec![
            ("HUB_DATA_DIR".to_owned(), dir.path().display().to_string()),
            ("LOG_FORMAT".to_owned(), "json".to_owned()),
            ("RUST_LOG".to_owned(), "warn".to_owned()),
            ("GATEWAY_THREADS".to_owned(), "1".to_owned()),
            (
                "RATE_LIMIT_CREDITS_PER_MINUTE".to_owned(),
                "1000000".to_owned(),
            ),
            (
                "REDIS_KEY_PREFIX".to_owned(),
                format!("hub-drill-{}:", uuid::Uuid::new_v4().simple()),
            ),
        ];
        let mut gateway = String::new();
        for service in ["GATEWAY", "AUTH", "CORE", "MCP"] {
            let address = free_address();
            env.push((format!("{service}_ADDR"), address.to_string()));
            env.push((format!("{service}_URL"), format!("http://{address}")));
            if service == "GATEWAY" {
                gateway = format!("http://{address}");
            }
        }
        if let Some(url) = database_url {
            env.push(("DATABASE_URL".to_owned(), url));
        }
        if let Some(url) = redis_url {
            env.push(("REDIS_URL".to_owned(), url));
        }
        Self { env, gateway, dir }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hub"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path());
        command
    }

    /// Runs `hub ARGS` and reads the JSON it prints; panics unless it succeeds.
    fn cli(&self, args: &[&str]) -> Value {
        let output = self.command().args(args).output().expect("run hub");
        assert!(
            output.status.success(),
            "hub {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("hub prints JSON")
    }

    /// Starts `hub up` and waits until the gateway answers.
    async fn up(&self) -> Child {
        let mut child = self
            .command()
            .arg("up")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hub up");
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{}/health", self.gateway)).send().await
                && r.status() == StatusCode::OK
            {
                return child;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("hub up exited: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "hub up did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A user with `credits` and a service key that may check and deduct for them.
fn user_and_key(setup: &Setup, credits: i64) -> (String, String) {
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let user = setup.cli(&[
        "user",
        "create",
        "--email",
        &email,
        "--name",
        "Drill",
        "--credits",
        &credits.to_string(),
    ]);
    let key = setup.cli(&[
        "service-key",
        "create",
        "--name",
        "drill",
        "--scopes",
        "credits:check,credits:deduct",
    ]);
    (
        user["id"].as_str().expect("user id").to_owned(),
        key["key"].as_str().expect("key").to_owned(),
    )
}

async fn deduct(
    http: &reqwest::Client,
    gateway: &str,
    key: &str,
    user: &str,
    n: usize,
) -> Result<(StatusCode, Value), reqwest::Error> {
    let r = http
        .post(format!("{gateway}/api/mcp/v1/credits/deduct"))
        .bearer_auth(key)
        .header("x-user-id", user)
        .header("idempotency-key", format!("drill-{n}"))
        .json(&json!({ "service": "sora2", "cost": 1, "metadata": { "n": n } }))
        .send()
        .await?;
    let status = r.status();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

async fn ledger_ids(database: &hub_storage::Database, user: &str) -> Vec<String> {
    let user = uuid::Uuid::parse_str(user).expect("uuid");
    match database {
        hub_storage::Database::Postgres(pool) => {
            sqlx::query_scalar("SELECT id FROM credit_transactions WHERE user_id = $1")
                .bind(user)
                .fetch_all(pool)
                .await
                .expect("read the ledger")
        }
        hub_storage::Database::Sqlite { reader, .. } => {
            sqlx::query_scalar("SELECT id FROM credit_transactions WHERE user_id = ?1")
                .bind(user.to_string())
                .fetch_all(reader)
                .await
                .expect("read the ledger")
        }
    }
}

/// The `host:port` of a database URL.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

/// How long until `probe` gives `want`, polling; panics after `within`.
async fn until<F, Fut>(within: Duration, want: StatusCode, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StatusCode>,
{
    let started = Instant::now();
    loop {
        let got = probe().await;
        assert_ne!(got, StatusCode::INTERNAL_SERVER_ERROR, "never a 500");
        if got == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "no {want} within {within:?}; last {got}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
