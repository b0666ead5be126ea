//! Usage reports from the rollups that the trigger of migration 0011 keeps.

use chrono::NaiveDate;

use super::*;
use crate::usage::{
    UsageFigures, UsageGrouping, UsageQuery, UsageReport, UsageRow, UsageStore, day_key, finish,
    range_parts,
};

/// The figures of a group (`sum` of bigint is numeric in PostgreSQL: cast back).
const SUMS: &str = "coalesce(sum(spent), 0)::bigint AS spent, \
                    coalesce(sum(refunded), 0)::bigint AS refunded, \
                    coalesce(sum(granted), 0)::bigint AS granted, \
                    coalesce(sum(adjusted), 0)::bigint AS adjusted, \
                    coalesce(sum(calls), 0)::bigint AS calls";

fn figures(row: &PgRow) -> Result<UsageFigures, sqlx::Error> {
    Ok(UsageFigures {
        spent: row.try_get("spent")?,
        refunded: row.try_get("refunded")?,
        granted: row.try_get("granted")?,
        adjusted: row.try_get("adjusted")?,
        calls: row.try_get("calls")?,
    })
}

async fn usage_totals(
    conn: &mut PgConnection,
    query: &UsageQuery,
) -> Result<UsageFigures, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {SUMS} FROM usage_daily WHERE day BETWEEN $1 AND $2"
    ))
    .bind(query.from)
    .bind(query.to)
    .fetch_one(&mut *conn)
    .await?;
    Ok(figures(&row)?)
}

async fn usage_by_day(
    conn: &mut PgConnection,
    query: &UsageQuery,
) -> Result<Vec<UsageRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT day, {SUMS} FROM usage_daily WHERE day BETWEEN $1 AND $2
             GROUP BY day ORDER BY day"
    ))
    .bind(query.from)
    .bind(query.to)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(UsageRow {
                key: day_key(row.try_get::<NaiveDate, _>("day")?),
                figures: figures(row)?,
            })
        })
        .collect()
}

async fn usage_by_service(
    conn: &mut PgConnection,
    query: &UsageQuery,
) -> Result<Vec<UsageRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT service, {SUMS} FROM usage_daily WHERE day BETWEEN $1 AND $2
             GROUP BY service ORDER BY spent DESC, service LIMIT $3"
    ))
    .bind(query.from)
    .bind(query.to)
    .bind(i64::from(query.limit) + 1)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(UsageRow {
                key: row.try_get("service")?,
                figures: figures(row)?,
            })
        })
        .collect()
}

/// Whole months from the monthly rollup, the loose days at either end from the daily one.
async fn usage_by_user(
    conn: &mut PgConnection,
    query: &UsageQuery,
) -> Result<Vec<UsageRow>, StoreError> {
    let parts = range_parts(query.from, query.to);
    let rows = sqlx::query(&format!(
        "SELECT user_id, {SUMS} FROM (
                 SELECT user_id, spent, refunded, granted, adjusted, calls
                 FROM usage_monthly_users WHERE month >= $1 AND month < $2
                 UNION ALL
                 SELECT user_id, spent, refunded, granted, adjusted, calls
                 FROM usage_daily_users WHERE day BETWEEN $3 AND $4 OR day BETWEEN $5 AND $6
             ) parts
             GROUP BY user_id ORDER BY spent DESC, user_id LIMIT $7"
    ))
    .bind(parts.months.0)
    .bind(parts.months.1)
    .bind(parts.head.0)
    .bind(parts.head.1)
    .bind(parts.tail.0)
    .bind(parts.tail.1)
    .bind(i64::from(query.limit) + 1)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(UsageRow {
                key: row.try_get::<Uuid, _>("user_id")?.to_string(),
                figures: figures(row)?,
            })
        })
        .collect()
}

#[async_trait]
impl UsageStore for PgStore {
    async fn usage(&self, query: &UsageQuery) -> Result<UsageReport, StoreError> {
        // One snapshot, so that the rows add up to the totals while debits go on.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let rows = match query.group_by {
            UsageGrouping::Day => usage_by_day(&mut tx, query).await?,
            UsageGrouping::Service => usage_by_service(&mut tx, query).await?,
            UsageGrouping::User => usage_by_user(&mut tx, query).await?,
        };
        let totals = usage_totals(&mut tx, query).await?;
        tx.commit().await?;
        Ok(finish(query, rows, totals))
    }
}
