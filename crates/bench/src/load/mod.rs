//! Load generators: `hub-bench deduct` drives debits over HTTP against a running core and
//! prints throughput and latency; `hub-bench setup` makes the accounts it spends from; and
//! `hub-bench pgbench-script` prints the very debit statement the core runs, as a pgbench script,
//! so that `bench/deduct-vs-pgbench.sh` can measure both on the same server in one go.

mod accounts;
mod drive;
mod workloads;

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use hub_config::Env;

use self::workloads::Credential;
pub use self::workloads::parse_headers;

/// How hard and how long a load runs.
#[derive(Args)]
pub struct Pace {
    /// Requests in flight at once (for `mcp`: connections, each with one call in flight).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

impl Pace {
    /// Connections, at least one.
    fn concurrency(&self) -> usize {
        self.concurrency.max(1)
    }

    fn duration(&self) -> Duration {
        Duration::from_secs(self.seconds)
    }
}

/// Where a load goes: a URL and the headers sent with it.
#[derive(Args)]
pub struct Target {
    /// The URL (for `mcp`, the WebSocket URL `ws://…/api/mcp/ws`).
    #[arg(long)]
    url: String,
    /// A header to send (for `mcp`, with the upgrade), `Name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
}

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
    #[command(mut_arg("concurrency", |arg| arg.default_value("16")))]
    Deduct {
        /// The core's base URL.
        #[arg(long, default_value = "http://127.0.0.1:3002")]
        url: String,
        /// Spread the debits over this many benchmark accounts (1 = all on one row).
        #[arg(long, default_value_t = 10_000)]
        users: u64,
        #[command(flatten)]
        pace: Pace,
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
    /// Forwards every request to `--upstream` and does nothing else: hyper's own cost, the
    /// proxying benchmark's second baseline beside nginx.
    BareProxy {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:39214")]
        addr: std::net::SocketAddr,
        /// Where every request goes.
        #[arg(long, default_value = "127.0.0.1:39200")]
        upstream: std::net::SocketAddr,
        /// Serving threads (as the gateway's GATEWAY_THREADS: one per core by default).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Drives `GET` of one URL (the proxying benchmark).
    Get {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        pace: Pace,
    },
    /// Drives `get_balance` MCP tool calls over open WebSocket connections (`ws://…/api/mcp/ws`).
    Mcp {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        pace: Pace,
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
        #[command(flatten)]
        pace: Pace,
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

/// Runs one `hub-bench` command.
pub async fn run(env: &Env, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Setup { users, credits } => accounts::setup(env, users, credits).await,
        BenchCommand::Deduct {
            url,
            users,
            pace,
            cost,
            token,
            service_key,
        } => {
            let credential = deduct_credential(env, service_key, token)?;
            let (concurrency, duration) = (pace.concurrency(), pace.duration());
            workloads::deduct(&url, credential, users.max(1), concurrency, duration, cost).await
        }
        BenchCommand::Verify { url, users, pace } => {
            workloads::verify(env, &url, users, pace.concurrency(), pace.duration()).await
        }
        BenchCommand::Sessions { users } => {
            for code in accounts::sessions(env, users).await? {
                println!("{code}");
            }
            Ok(())
        }
        BenchCommand::Upstream { addr } => workloads::upstream(addr).await,
        BenchCommand::BareProxy {
            addr,
            upstream,
            threads,
        } => {
            let threads = threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
            tokio::task::spawn_blocking(move || crate::bare_proxy::serve(addr, upstream, threads))
                .await?
        }
        BenchCommand::Mcp { target, pace } => {
            let headers = parse_headers(&target.headers)?;
            crate::mcp::run(&target.url, &headers, pace.concurrency(), pace.duration()).await
        }
        BenchCommand::Get { target, pace } => {
            let headers = parse_headers(&target.headers)?;
            workloads::get(&target.url, headers, pace.concurrency(), pace.duration()).await
        }
        BenchCommand::PgbenchScript { users, cost } => {
            println!("{}", accounts::pgbench_script(users.max(1), cost));
            Ok(())
        }
    }
}

/// The credential the deduct benchmark calls with: a service key when given, else the internal
/// credential (`--token`, then HUB_INTERNAL_TOKEN, then `<data dir>/internal-token`).
fn deduct_credential(
    env: &Env,
    service_key: Option<String>,
    token: Option<String>,
) -> anyhow::Result<Credential> {
    Ok(
        match (service_key, token.or_else(|| env.raw("HUB_INTERNAL_TOKEN"))) {
            (Some(key), _) => Credential::ServiceKey(key),
            (None, Some(token)) => Credential::Internal(token),
            (None, None) => Credential::Internal(
                std::fs::read_to_string(env.data_dir().join("internal-token"))
                    .context("no --token, no HUB_INTERNAL_TOKEN and no <data dir>/internal-token")?
                    .trim()
                    .to_owned(),
            ),
        },
    )
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
}
