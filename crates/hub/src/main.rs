//! `hub`: every service in one process (`hub up`), and the operator's command line. Every
//! command but `up` prints JSON, so scripts can use it.
#![forbid(unsafe_code)]

/// mimalloc: fewer cycles per request than the system allocator under many small allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod oauth_client;
mod user;
mod webhook;

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hub_config::{Env, SecretString};
use hub_core::ledger::grants::GrantTerms;
use hub_core::ledger::{Grant, GrantOutcome, Idempotent, validate_amount, validate_reason};
use hub_storage::Database;
use serde_json::json;
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "hub",
    version,
    about = "Smart AI Hub: run the services, manage users and credits"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every service in one process (embedded SQLite unless DATABASE_URL is set).
    Up,
    /// Brings the database schema up to date.
    Migrate,
    /// Users.
    User {
        #[command(subcommand)]
        command: user::UserCommand,
    },
    /// Credits.
    Credits {
        #[command(subcommand)]
        command: CreditsCommand,
    },
    /// Service keys for servers that call the hub (such as the Sora2 GPT's).
    ServiceKey {
        #[command(subcommand)]
        command: ServiceKeyCommand,
    },
    /// OAuth apps that may ask users for access (a GPT Action with OAuth, a partner's server).
    OauthClient {
        #[command(subcommand)]
        command: oauth_client::OAuthClientCommand,
    },
    /// Endpoints that receive the hub's events, signed (Standard Webhooks).
    Webhook {
        #[command(subcommand)]
        command: webhook::WebhookCommand,
    },
}

#[derive(Subcommand)]
enum ServiceKeyCommand {
    /// Creates a key and prints it, once; only its hash is kept.
    Create {
        /// What the key is for.
        #[arg(long)]
        name: String,
        /// Comma-separated: credits:check, credits:deduct, credits:refund, credits:grant, users:read, usage:read, gpt.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// Lists the keys (never the keys themselves).
    List,
    /// Revokes a key by its id (`sk_…`).
    Revoke {
        /// The key's id.
        id: String,
    },
}

#[derive(Subcommand)]
enum CreditsCommand {
    /// Adds credits to an account. With --expires-at or --priority they are promotional: spent
    /// by priority (lower first), then the earliest end date, then the oldest; what is left at
    /// the end date leaves the balance as an `expire` transaction.
    Grant {
        /// The user's id.
        #[arg(long)]
        user: Uuid,
        /// How many credits.
        #[arg(long)]
        amount: i64,
        /// Why (kept in the ledger).
        #[arg(long)]
        reason: String,
        /// When what is left expires: RFC 3339 (e.g. 2030-01-31T23:59:59Z), in the future.
        #[arg(long, value_parser = parse_expiry)]
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        /// Spending order, 0 to 100: lower is spent first. Plain grants and top-ups are 50.
        #[arg(long, value_parser = clap::value_parser!(i64).range(0..=100))]
        priority: Option<i64>,
    },
    /// Prints a balance.
    Balance {
        /// The user's id.
        #[arg(long)]
        user: Uuid,
    },
    /// Prints an account's history, newest first.
    History {
        /// The user's id.
        #[arg(long)]
        user: Uuid,
        /// How many transactions.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after this transaction id.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Checks every account: balance = sum of its transactions, held = sum of live holds,
    /// granted = sum of its grants' remaining credits. Exits 1 if any differs.
    Audit,
}

#[tokio::main]
async fn main() {
    hub_config::load_dotenv();
    let cli = Cli::parse();
    if let Err(error) = run(cli).await {
        eprintln!("{}", json!({ "error": format!("{error:#}") }));
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let env = Env::process();
    match cli.command {
        Command::Up => up(&env).await,
        Command::Migrate => {
            let database = open(&env).await?;
            print(
                &json!({ "migrated": true, "database": hub_storage::database_config(&env)?.describe() }),
            );
            database.close().await;
            Ok(())
        }
        Command::User { command } => user::run(&env, command).await,
        Command::Credits { command } => credits(&env, command).await,
        Command::ServiceKey { command } => service_key(&env, command).await,
        Command::OauthClient { command } => oauth_client::run(&env, command).await,
        Command::Webhook { command } => webhook::run(&env, command).await,
    }
}

/// `--expires-at`: an RFC 3339 time in the future.
fn parse_expiry(raw: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let at = chrono::DateTime::parse_from_rfc3339(raw)
        .map_err(|e| format!("not an RFC 3339 time (e.g. 2030-01-31T23:59:59Z): {e}"))?
        .with_timezone(&chrono::Utc);
    if at <= chrono::Utc::now() {
        return Err("must be in the future".into());
    }
    Ok(at)
}

fn print(value: &serde_json::Value) {
    println!("{value}");
}

async fn open(env: &Env) -> anyhow::Result<Database> {
    let config = hub_storage::database_config(env)?;
    let database = Database::connect(&config)
        .await
        .with_context(|| format!("opening {}", config.describe()))?;
    database.migrate().await.context("migrating")?;
    Ok(database)
}

async fn service_key(env: &Env, command: ServiceKeyCommand) -> anyhow::Result<()> {
    let database = open(env).await?;
    let store = hub_core::ledger::store::open(database.clone());
    let result = match command {
        ServiceKeyCommand::Create { name, scopes } => {
            let scopes: Vec<String> = scopes
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            let key = hub_core::service_keys::new_key(&name, &scopes)?;
            store.insert_service_key(&key).await?;
            print(&json!({
                "id": key.record.id,
                "name": key.record.name,
                "scopes": key.record.scopes,
                "key": key.key,
                "note": "shown once: only its hash is kept",
            }));
            Ok(())
        }
        ServiceKeyCommand::List => {
            print(&serde_json::to_value(store.list_service_keys().await?)?);
            Ok(())
        }
        ServiceKeyCommand::Revoke { id } => {
            if store.revoke_service_key(&id).await? {
                print(&json!({ "id": id, "revoked": true }));
                Ok(())
            } else {
                Err(anyhow::anyhow!("no live service key has the id {id}"))
            }
        }
    };
    database.close().await;
    result
}

async fn credits(env: &Env, command: CreditsCommand) -> anyhow::Result<()> {
    let database = open(env).await?;
    let store = hub_core::ledger::store::open(database.clone());
    let result = match command {
        CreditsCommand::Grant {
            user,
            amount,
            reason,
            expires_at,
            priority,
        } => {
            let grant = Grant {
                user_id: user,
                amount: validate_amount("--amount", amount, 1)?,
                reason: validate_reason(&reason)?,
                request_id: None,
                terms: GrantTerms::parse(expires_at, priority, chrono::Utc::now())?,
            };
            let audit = hub_core::ledger::admin::AuditEntry::on_user("cli", "credits.grant", user)
                .because(Some(&grant.reason));
            match store.grant_audited(&grant, None, &audit).await? {
                Idempotent::Fresh(GrantOutcome::Granted { transaction }) => {
                    print(&serde_json::to_value(transaction)?);
                    Ok(())
                }
                Idempotent::Fresh(GrantOutcome::UnknownUser) => {
                    Err(anyhow::anyhow!("no user has the id {user}"))
                }
                Idempotent::Fresh(GrantOutcome::BalanceLimit) => {
                    Err(anyhow::anyhow!("the balance would pass its maximum"))
                }
                other => Err(anyhow::anyhow!("unexpected outcome {other:?}")),
            }
        }
        CreditsCommand::Balance { user } => match store.balance(user).await? {
            Some(balance) => {
                print(&json!({ "user_id": user, "balance": balance }));
                Ok(())
            }
            None => Err(anyhow::anyhow!("no user has the id {user}")),
        },
        CreditsCommand::History {
            user,
            limit,
            cursor,
        } => {
            let limit = limit.clamp(1, hub_core::ledger::MAX_PAGE);
            match store.transactions(user, limit, cursor.as_deref()).await? {
                Some(page) => {
                    print(&serde_json::to_value(page)?);
                    Ok(())
                }
                None => Err(anyhow::anyhow!("no user has the id {user}")),
            }
        }
        CreditsCommand::Audit => {
            let report = store.audit().await?;
            print(&serde_json::to_value(&report)?);
            let broken = report.broken();
            if broken == 0 {
                Ok(())
            } else {
                Err(anyhow::anyhow!("{broken} accounts break the invariants"))
            }
        }
    };
    database.close().await;
    result
}

/// The internal credential `hub up` shares between its services: `HUB_INTERNAL_TOKEN` if set,
/// otherwise a new one written to `<data dir>/internal-token` (mode 0600) for local tools.
fn internal_token(env: &Env, data_dir: &Path) -> anyhow::Result<(SecretString, Option<String>)> {
    if let Some(token) = env.secret_min_len("HUB_INTERNAL_TOKEN", 32)? {
        return Ok((token, None));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("OS random source: {e}"))?;
    let token = hex::encode(bytes);
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join("internal-token");
    write_private(&path, &token)?;
    Ok((SecretString::from(token), Some(path.display().to_string())))
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

async fn up(env: &Env) -> anyhow::Result<()> {
    let started = Instant::now();
    hub_telemetry::init(env.raw("LOG_FORMAT").as_deref());
    let (token, token_file) = internal_token(env, &env.data_dir())?;
    let configs = hub_compose::Configs::from_env_with_token(env, &token)?;
    let storage = configs.core.database.describe();
    let sessions_in = configs
        .auth
        .redis_url
        .as_ref()
        .map_or_else(|| "the database".to_owned(), |_| "Redis".to_owned());
    let google = if configs.auth.google.is_some() {
        "Google sign-in on"
    } else {
        "Google sign-in off: set GOOGLE_CLIENT_ID"
    };
    let videos = if env.raw("OPENAI_API_KEY").is_some() {
        "videos on"
    } else {
        "videos off: set OPENAI_API_KEY"
    };
    let hub = hub_compose::Hub::builder(configs).build().await?;
    let at = hub.addresses();

    println!("Smart AI Hub is up in {} ms", started.elapsed().as_millis());
    println!("  storage  {storage}; sessions in {sessions_in}");
    println!("  gateway  http://{}  (the public door)", at.gateway);
    println!("  auth     http://{}  ({google})", at.auth);
    println!("  core     http://{}", at.core);
    println!("  mcp      http://{}  ({videos})", at.mcp);
    if let Some(path) = token_file {
        println!("  internal credential (X-Hub-Internal) in {path}");
    }

    hub.start()
        .run_until(async {
            hub_http::shutdown_signal().await;
            println!("stopping: finishing requests in flight");
        })
        .await
}

#[cfg(test)]
mod tests;
