//! Usage reports from the rollups that the trigger of migration 0011 keeps (days as
//! `YYYY-MM-DD` text, months as their first day).

use crate::usage::{
    UsageFigures, UsageGrouping, UsageQuery, UsageReport, UsageRow, UsageStore, day_key, finish,
    range_parts,
};

use super::*;

/// The figures of a group.
const SUMS: &str = "coalesce(sum(spent), 0) AS spent, coalesce(sum(refunded), 0) AS refunded, \
                    coalesce(sum(granted), 0) AS granted, coalesce(sum(adjusted), 0) AS adjusted, \
                    coalesce(sum(calls), 0) AS calls";

fn figures(row: &SqliteRow) -> Result<UsageFigures, sqlx::Error> {
    Ok(UsageFigures {
        spent: row.try_get("spent")?,
        refunded: row.try_get("refunded")?,
        granted: row.try_get("granted")?,
        adjusted: row.try_get("adjusted")?,
        calls: row.try_get("calls")?,
    })
}

/// Rows keyed by their first column.
fn keyed(rows: &[SqliteRow]) -> Result<Vec<UsageRow>, StoreError> {
    rows.iter()
        .map(|row| {
            Ok(UsageRow {
                key: row.try_get(0)?,
                figures: figures(row)?,
            })
        })
        .collect()
}

async fn usage_totals(
    conn: &mut SqliteConnection,
    query: &UsageQuery,
) -> Result<UsageFigures, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {SUMS} FROM usage_daily WHERE day BETWEEN ?1 AND ?2"
    ))
    .bind(day_key(query.from))
    .bind(day_key(query.to))
    .fetch_one(&mut *conn)
    .await?;
    Ok(figures(&row)?)
}

async fn usage_by_day_or_service(
    conn: &mut SqliteConnection,
    query: &UsageQuery,
) -> Result<Vec<UsageRow>, StoreError> {
    let sql = if query.group_by == UsageGrouping::Day {
        format!(
            "SELECT day, {SUMS} FROM usage_daily WHERE day BETWEEN ?1 AND ?2
             GROUP BY day ORDER BY day"
        )
    } else {
        format!(
            "SELECT service, {SUMS} FROM usage_daily WHERE day BETWEEN ?1 AND ?2
             GROUP BY service ORDER BY spent DESC, service LIMIT ?3"
        )
    };
    let mut statement = sqlx::query(&sql)
        .bind(day_key(query.from))
        .bind(day_key(query.to));
    if query.group_by != UsageGrouping::Day {
        statement = statement.bind(i64::from(query.limit) + 1);
    }
    let rows = statement.fetch_all(&mut *conn).await?;
    keyed(&rows)
}

/// Whole months from the monthly rollup, the loose days at either end from the daily one.
async fn usage_by_user(
    conn: &mut SqliteConnection,
    query: &UsageQuery,
) -> Result<Vec<UsageRow>, StoreError> {
    let parts = range_parts(query.from, query.to);
    let rows = sqlx::query(&format!(
        "SELECT user_id, {SUMS} FROM (
             SELECT user_id, spent, refunded, granted, adjusted, calls
             FROM usage_monthly_users WHERE month >= ?1 AND month < ?2
             UNION ALL
             SELECT user_id, spent, refunded, granted, adjusted, calls
             FROM usage_daily_users WHERE day BETWEEN ?3 AND ?4 OR day BETWEEN ?5 AND ?6
         ) parts
         GROUP BY user_id ORDER BY spent DESC, user_id LIMIT ?7"
    ))
    .bind(day_key(parts.months.0))
    .bind(day_key(parts.months.1))
    .bind(day_key(parts.head.0))
    .bind(day_key(parts.head.1))
    .bind(day_key(parts.tail.0))
    .bind(day_key(parts.tail.1))
    .bind(i64::from(query.limit) + 1)
    .fetch_all(&mut *conn)
    .await?;
    keyed(&rows)
}

#[async_trait]
impl UsageStore for SqliteStore {
    async fn usage(&self, query: &UsageQuery) -> Result<UsageReport, StoreError> {
        // One read transaction: one snapshot of the file, so the rows add up to the totals.
        let mut tx = self.reader.begin().await?;
        let rows = match query.group_by {
            UsageGrouping::User => usage_by_user(&mut tx, query).await?,
            _ => usage_by_day_or_service(&mut tx, query).await?,
        };
        let totals = usage_totals(&mut tx, query).await?;
        tx.commit().await?;
        Ok(finish(query, rows, totals))
    }
}
