//! Load generators: `hub-bench deduct` drives debits over HTTP against a running core and
//! prints throughput and latency; `hub-bench setup` makes the accounts it spends from; and
//! `hub-bench pgbench-script` prints the very debit statement the core runs, as a pgbench script,
//! so that `bench/deduct-vs-pgbench.sh` can measure both on the same server in one go.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Subcommand;
use http_body_util::{BodyExt, Full};
use hub_config::Env;
use hub_storage::Database;
use serde_json::json;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Creates (or tops up nothing of) `--users` benchmark accounts with `--credits` each.
    Setup {
        /// How many accounts.
        #[arg(long, default_value_t = 10_000)]
        users: u64,
        /// Credits each starts with.
        #[arg(long, default_value_t = 1_000_000_000_000)]
        credits: i64,
    },
    /// Drives deducts against a running core.
    Deduct {
        /// The core's base URL.
        #[arg(long, default_value = "http://127.0.0.1:3002")]
        url: String,
        /// Spread the debits over this many benchmark accounts (1 = all on one row).
        #[arg(long, default_value_t = 10_000)]
        users: u64,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// How long to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Credits per debit.
        #[arg(long, default_value_t = 30)]
        cost: i64,
        /// The internal credential (default: HUB_INTERNAL_TOKEN, then <data dir>/internal-token).
        #[arg(long)]
        token: Option<String>,
        /// Call as a service key (`X-API-Key` and `X-User-ID`), as through the gateway, instead
        /// of with the internal credential straight to core.
        #[arg(long)]
        service_key: Option<String>,
    },
    /// Serves a fixed small JSON body on every path: the upstream of the proxying benchmark.
    Upstream {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:39200")]
        addr: std::net::SocketAddr,
    },
    /// Drives `GET` of one URL (the proxying benchmark).
    Get {
        /// The URL.
        #[arg(long)]
        url: String,
        /// A header to send, `Name: value` (repeatable).
        #[arg(long = "header")]
        headers: Vec<String>,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// How long to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Drives `get_balance` MCP tool calls over open WebSocket connections (`ws://…/api/mcp/ws`).
    Mcp {
        /// The WebSocket URL.
        #[arg(long)]
        url: String,
        /// A header to send with the upgrade, `Name: value` (repeatable).
        #[arg(long = "header")]
        headers: Vec<String>,
        /// Connections, each with one call in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// How long to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Drives `verify-session` against a running auth service, with sessions it makes for the
    /// benchmark accounts in the configured store (REDIS_URL, or the SQLite file).
    Verify {
        /// The auth service's base URL.
        #[arg(long, default_value = "http://127.0.0.1:3001")]
        url: String,
        /// Sessions of this many benchmark accounts.
        #[arg(long, default_value_t = 1_000)]
        users: u64,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// How long to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Makes a session for each of the first `--users` benchmark accounts in the configured
    /// session store and prints their codes, one per line (for `bench/wrk/verify.lua`).
    Sessions {
        /// Sessions of this many benchmark accounts.
        #[arg(long, default_value_t = 1_000)]
        users: u64,
    },
    /// Prints a pgbench script that runs the core's own debit statement.
    PgbenchScript {
        /// Spread over this many benchmark accounts.
        #[arg(long, default_value_t = 10_000)]
        users: u64,
        /// Credits per debit.
        #[arg(long, default_value_t = 30)]
        cost: i64,
    },
}

/// The id of benchmark account `n` (1-based): fixed, so that pgbench can name it too.
pub fn bench_user(n: u64) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0000 | u128::from(n))
}

pub async fn run(env: &Env, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Setup { users, credits } => setup(env, users, credits).await,
        BenchCommand::Deduct {
            url,
            users,
            concurrency,
            seconds,
            cost,
            token,
            service_key,
        } => {
            let credential = match (service_key, token.or_else(|| env.raw("HUB_INTERNAL_TOKEN"))) {
                (Some(key), _) => Credential::ServiceKey(key),
                (None, Some(token)) => Credential::Internal(token),
                (None, None) => Credential::Internal(
                    std::fs::read_to_string(env.data_dir().join("internal-token"))
                        .context(
                            "no --token, no HUB_INTERNAL_TOKEN and no <data dir>/internal-token",
                        )?
                        .trim()
                        .to_owned(),
                ),
            };
            deduct(
                &url,
                credential,
                users.max(1),
                concurrency.max(1),
                Duration::from_secs(seconds),
                cost,
            )
            .await
        }
        BenchCommand::Verify {
            url,
            users,
            concurrency,
            seconds,
        } => {
            verify(
                env,
                &url,
                users,
                concurrency.max(1),
                Duration::from_secs(seconds),
            )
            .await
        }
        BenchCommand::Sessions { users } => {
            for code in sessions(env, users).await? {
                println!("{code}");
            }
            Ok(())
        }
        BenchCommand::Upstream { addr } => upstream(addr).await,
        BenchCommand::Mcp {
            url,
            headers,
            concurrency,
            seconds,
        } => {
            crate::mcp::run(
                &url,
                &parse_headers(&headers)?,
                concurrency.max(1),
                Duration::from_secs(seconds),
            )
            .await
        }
        BenchCommand::Get {
            url,
            headers,
            concurrency,
            seconds,
        } => {
            let (authority, path) = split_url(&url)?;
            let workload = std::sync::Arc::new(GetLoad {
                authority: authority.clone(),
                path: if path.is_empty() { "/".into() } else { path },
                headers: parse_headers(&headers)?,
            });
            drive(
                &authority,
                workload,
                concurrency.max(1),
                Duration::from_secs(seconds),
                json!({ "url": url }),
            )
            .await
        }
        BenchCommand::PgbenchScript { users, cost } => {
            println!("{}", pgbench_script(users.max(1), cost));
            Ok(())
        }
    }
}

fn pgbench_script(users: u64, cost: i64) -> String {
    let user = "('00000000-0000-7000-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid";
    let sql = hub_core::ledger::store::DEBIT_SQL
        .replace("$1", user)
        .replace("$2", &cost.to_string())
        .replace("$3", "'txn_' || replace(gen_random_uuid()::text, '-', '')")
        .replace("$4", "'bench'")
        .replace("$5", "NULL::jsonb")
        .replace("$6", "NULL")
        .replace("$7", "NULL");
    // pgbench (15) takes a statement over several lines up to its semicolon; one line keeps it plain.
    format!("\\set n random(1, {users})\n{};\n", sql.replace('\n', " "))
}

async fn setup(env: &Env, users: u64, credits: i64) -> anyhow::Result<()> {
    let config = hub_storage::database_config(env)?;
    let database = Database::connect(&config).await?;
    database.migrate().await?;
    let started = Instant::now();
    match &database {
        Database::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO users (id, email, name)
                 SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(n), 12, '0'))::uuid,
                        'bench-' || n || '@bench.invalid', 'Bench ' || n
                 FROM generate_series(1, $1::bigint) n ON CONFLICT DO NOTHING",
            )
            .bind(i64::try_from(users)?)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "WITH opened AS (
                    INSERT INTO credit_accounts (user_id, balance)
                    SELECT id, $1 FROM users WHERE email LIKE 'bench-%@bench.invalid'
                    ON CONFLICT DO NOTHING RETURNING user_id, balance)
                 INSERT INTO credit_transactions (id, user_id, kind, amount, balance_before, balance_after, reason)
                 SELECT 'txn_' || replace(gen_random_uuid()::text, '-', ''), user_id, 'grant', balance, 0, balance,
                        'benchmark account'
                 FROM opened",
            )
            .bind(credits)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Database::Sqlite { writer, .. } => {
            let mut tx = writer.begin().await?;
            let now = chrono::Utc::now();
            for n in 1..=users {
                let id = bench_user(n).to_string();
                let inserted = sqlx::query(
                    "INSERT INTO users (id, email, name, created_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )
                .bind(&id)
                .bind(format!("bench-{n}@bench.invalid"))
                .bind(format!("Bench {n}"))
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    continue;
                }
                sqlx::query("INSERT INTO credit_accounts (user_id, balance, updated_at) VALUES (?1, ?2, ?3)")
                    .bind(&id)
                    .bind(credits)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO credit_transactions (id, user_id, kind, amount, balance_before, balance_after, reason, created_at)
                     VALUES (?1, ?2, 'grant', ?3, 0, ?3, 'benchmark account', ?4)",
                )
                .bind(hub_core::ledger::new_transaction_id())
                .bind(&id)
                .bind(credits)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }
    }
    println!(
        "{}",
        json!({ "users": users, "credits_each": credits, "seconds": started.elapsed().as_secs_f64(),
                "database": config.describe() })
    );
    database.close().await;
    Ok(())
}

#[derive(Default)]
struct WorkerStats {
    latencies_us: Vec<u32>,
    ok: u64,
    insufficient: u64,
    other: u64,
}

/// One kind of request to send over and over; `pick` is a random number for choosing inputs.
trait Workload: Send + Sync + 'static {
    fn request(&self, pick: u64) -> anyhow::Result<http::Request<Full<Bytes>>>;
}

/// One keep-alive HTTP/1.1 connection per worker, driven by hyper directly: the load generator
/// shares the machine with the server and the database, so it should cost as little as wrk.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    async fn open(authority: &str) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .with_context(|| format!("cannot reach {authority}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self { sender })
    }

    /// Sends one request and returns its status.
    async fn send(&mut self, request: http::Request<Full<Bytes>>) -> anyhow::Result<u16> {
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        Ok(status)
    }
}

/// `http://host:port` into the authority and the path prefix.
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let uri: http::Uri = url.parse().with_context(|| format!("--url {url}"))?;
    anyhow::ensure!(
        uri.scheme_str() == Some("http"),
        "--url must be http://host:port"
    );
    let authority = uri
        .authority()
        .context("--url needs host:port")?
        .to_string();
    Ok((authority, uri.path().trim_end_matches('/').to_owned()))
}

/// Runs `workload` on `concurrency` connections for `duration` and prints the figures as JSON.
async fn drive<W: Workload>(
    authority: &str,
    workload: std::sync::Arc<W>,
    concurrency: usize,
    duration: Duration,
    extra: serde_json::Value,
) -> anyhow::Result<()> {
    // Open every connection and check one request before the clock starts.
    let mut connections = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        connections.push(Connection::open(authority).await?);
    }
    let status = connections[0].send(workload.request(1)?).await?;
    anyhow::ensure!(
        status == 200,
        "a first request answered {status}: run the matching `hub-bench` setup first"
    );

    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for (worker, mut connection) in connections.into_iter().enumerate() {
        let workload = workload.clone();
        workers.spawn(async move {
            let mut stats = WorkerStats::default();
            // xorshift: cheap, and each worker picks its own sequence of inputs.
            let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ ((worker as u64 + 1) << 17);
            while Instant::now() < deadline {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let sent = Instant::now();
                let status = match workload.request(state) {
                    Ok(request) => connection.send(request).await.unwrap_or(0),
                    Err(_) => 0,
                };
                stats
                    .latencies_us
                    .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                match status {
                    200 => stats.ok += 1,
                    402 => stats.insufficient += 1,
                    _ => stats.other += 1,
                }
            }
            stats
        });
    }
    let mut all = WorkerStats::default();
    while let Some(stats) = workers.join_next().await {
        let stats = stats?;
        all.latencies_us.extend(stats.latencies_us);
        all.ok += stats.ok;
        all.insufficient += stats.insufficient;
        all.other += stats.other;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.latencies_us.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if all.latencies_us.is_empty() {
            return 0.0;
        }
        let index = ((all.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(all.latencies_us[index]) / 1000.0
    };
    let requests = all.latencies_us.len();
    let mut report = json!({
        "requests": requests,
        "seconds": elapsed,
        "requests_per_second": requests as f64 / elapsed,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "ok": all.ok,
        "insufficient": all.insufficient,
        "errors": all.other,
        "concurrency": concurrency,
    });
    if let (Some(report), serde_json::Value::Object(extra)) = (report.as_object_mut(), extra) {
        report.extend(extra);
    }
    println!("{report}");
    anyhow::ensure!(all.other == 0, "{} requests failed", all.other);
    Ok(())
}

/// How the deduct benchmark presents itself.
enum Credential {
    /// The internal credential, straight to core.
    Internal(String),
    /// A service key, through the gateway.
    ServiceKey(String),
}

struct DeductLoad {
    authority: String,
    path: String,
    credential: Credential,
    body: Bytes,
    users: u64,
}

impl Workload for DeductLoad {
    fn request(&self, pick: u64) -> anyhow::Result<http::Request<Full<Bytes>>> {
        let request = http::Request::post(self.path.as_str())
            .header(http::header::HOST, self.authority.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-user-id", bench_user(pick % self.users + 1).to_string());
        let request = match &self.credential {
            Credential::Internal(token) => request
                .header("x-hub-internal", token.as_str())
                .header("x-hub-caller", "system"),
            Credential::ServiceKey(key) => request.header("x-api-key", key.as_str()),
        };
        Ok(request.body(Full::new(self.body.clone()))?)
    }
}

struct GetLoad {
    authority: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Workload for GetLoad {
    fn request(&self, _: u64) -> anyhow::Result<http::Request<Full<Bytes>>> {
        let mut request = http::Request::get(self.path.as_str())
            .header(http::header::HOST, self.authority.as_str());
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        Ok(request.body(Full::new(Bytes::new()))?)
    }
}

/// `Name: value` pairs.
pub fn parse_headers(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    raw.iter()
        .map(|h| {
            let (name, value) = h
                .split_once(':')
                .with_context(|| format!("--header {h:?} is not `Name: value`"))?;
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// A fixed small JSON body on every path, kept alive: what nginx and the gateway both proxy to.
async fn upstream(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let app = axum::Router::new().fallback(|| async {
        (
            [(http::header::CONTENT_TYPE, "application/json")],
            r#"{"ok":true,"from":"upstream"}"#,
        )
    });
    axum::serve(listener, app).await?;
    Ok(())
}

async fn deduct(
    url: &str,
    credential: Credential,
    users: u64,
    concurrency: usize,
    duration: Duration,
    cost: i64,
) -> anyhow::Result<()> {
    let (authority, prefix) = split_url(url)?;
    let workload = std::sync::Arc::new(DeductLoad {
        path: format!("{prefix}/api/mcp/v1/credits/deduct"),
        authority: authority.clone(),
        credential,
        body: Bytes::from(serde_json::to_vec(
            &json!({ "service": "bench", "cost": cost }),
        )?),
        users,
    });
    drive(
        &authority,
        workload,
        concurrency,
        duration,
        json!({ "users": users }),
    )
    .await
}

struct VerifyLoad {
    authority: String,
    path: String,
    tokens: Vec<String>,
}

impl Workload for VerifyLoad {
    fn request(&self, pick: u64) -> anyhow::Result<http::Request<Full<Bytes>>> {
        let token = &self.tokens[usize::try_from(pick % self.tokens.len() as u64)?];
        Ok(http::Request::get(self.path.as_str())
            .header(http::header::HOST, self.authority.as_str())
            .header("x-session-token", token.as_str())
            .body(Full::new(Bytes::new()))?)
    }
}

/// Makes a session for each of the first `users` benchmark accounts (`hub-bench setup` made
/// them) in the configured session store, then drives `verify-session` with their tokens.
async fn verify(
    env: &Env,
    url: &str,
    users: u64,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let tokens = sessions(env, users).await?;
    let (authority, prefix) = split_url(url)?;
    let workload = std::sync::Arc::new(VerifyLoad {
        path: format!("{prefix}/api/auth/verify-session"),
        authority: authority.clone(),
        tokens,
    });
    drive(
        &authority,
        workload,
        concurrency,
        duration,
        json!({ "sessions": users }),
    )
    .await
}

/// A session code for each of the first `users` benchmark accounts, made in the configured
/// session store.
async fn sessions(env: &Env, users: u64) -> anyhow::Result<Vec<String>> {
    let config = hub_auth::Config::from_env(env)?;
    let database = Database::connect(&config.database).await?;
    let store = hub_auth::sessions::open(
        config.redis_url.as_deref(),
        config.redis_cluster,
        &config.redis_prefix,
        &database,
    )
    .await?;
    let sessions = hub_auth::sessions::Sessions::new(
        store,
        std::sync::Arc::new(hub_auth::clock::SystemClock),
        chrono::Duration::days(1),
        10,
    );
    let mut tokens = Vec::with_capacity(usize::try_from(users)?);
    for n in 1..=users.max(1) {
        let made = sessions
            .create(
                bench_user(n),
                &format!("bench-{n}@bench.invalid"),
                &format!("Bench {n}"),
                Some("bench"),
                None,
            )
            .await?;
        tokens.push(made.token);
    }
    database.close().await;
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_user_ids_match_the_sql_that_pgbench_uses() {
        assert_eq!(
            bench_user(1).to_string(),
            "00000000-0000-7000-8000-000000000001"
        );
        assert_eq!(
            bench_user(10_000).to_string(),
            "00000000-0000-7000-8000-000000002710"
        );
    }

    #[test]
    fn the_pgbench_script_runs_the_core_debit_statement() {
        let script = pgbench_script(10, 30);
        assert!(script.starts_with("\\set n random(1, 10)\n"));
        assert!(script.contains("WHERE user_id = ('00000000-0000-7000-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid AND balance - held >= 30"));
        assert!(!script.contains('$'));
        assert_eq!(script.lines().count(), 2);
    }
}
