//! What the benchmarks spend from: the benchmark accounts (fixed ids, so pgbench can name them
//! too), their sessions, and the pgbench script of the core's debit statement.

use std::time::Instant;

use hub_config::Env;
use hub_storage::Database;
use serde_json::json;

use super::bench_user;

/// A pgbench script that runs the core's own debit statement over `users` benchmark accounts.
pub(super) fn pgbench_script(users: u64, cost: i64) -> String {
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

/// Creates `users` benchmark accounts with `credits` each (those already there are left as
/// they are).
pub(super) async fn setup(env: &Env, users: u64, credits: i64) -> anyhow::Result<()> {
    let config = hub_storage::database_config(env)?;
    let database = Database::connect(&config).await?;
    database.migrate().await?;
    let started = Instant::now();
    match &database {
        Database::Postgres(pool) => setup_postgres(pool, users, credits).await?,
        Database::Sqlite { writer, .. } => setup_sqlite(writer, users, credits).await?,
    }
    println!(
        "{}",
        json!({ "users": users, "credits_each": credits, "seconds": started.elapsed().as_secs_f64(),
                "database": config.describe() })
    );
    database.close().await;
    Ok(())
}

/// The accounts in PostgreSQL, in two statements.
async fn setup_postgres(pool: &sqlx::PgPool, users: u64, credits: i64) -> anyhow::Result<()> {
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
    Ok(())
}

/// The accounts in SQLite, one by one in one transaction.
async fn setup_sqlite(writer: &sqlx::SqlitePool, users: u64, credits: i64) -> anyhow::Result<()> {
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
        sqlx::query(
            "INSERT INTO credit_accounts (user_id, balance, updated_at) VALUES (?1, ?2, ?3)",
        )
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
    Ok(())
}

/// A session code for each of the first `users` benchmark accounts, made in the configured
/// session store.
pub(super) async fn sessions(env: &Env, users: u64) -> anyhow::Result<Vec<String>> {
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
    fn the_pgbench_script_runs_the_core_debit_statement() {
        let script = pgbench_script(10, 30);
        assert!(script.starts_with("\\set n random(1, 10)\n"));
        assert!(script.contains("WHERE user_id = ('00000000-0000-7000-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid AND balance - held >= 30"));
        assert!(!script.contains('$'));
        assert_eq!(script.lines().count(), 2);
    }
}
