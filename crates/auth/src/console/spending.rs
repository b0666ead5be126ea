//! What the dashboard shows: credits spent per day and service over the last 30 days, the users
//! active in them and the biggest spenders, read from the usage rollups (`UsageStore`, kept in
//! step with the ledger by the database), so the page costs a few indexed reads however big the
//! ledger grows: one report grouped by service for each day, one grouped by user for the period.

use chrono::{DateTime, Duration, Utc};
use hub_ledger::usage::{MAX_ROWS, UsageFigures, UsageGrouping, UsageQuery};
use hub_ledger::{Store, StoreError};
use uuid::Uuid;

use crate::web::chart::{DAYS, Usage};

/// How many of the biggest spenders the dashboard lists.
pub(crate) const TOP: usize = 10;

/// A user who spent in the period.
pub(crate) struct Spender {
    pub id: Uuid,
    pub email: String,
    pub spent: i64,
}

/// The dashboard's figures.
pub(crate) struct Spending {
    /// Per day and service, every account together.
    pub usage: Usage,
    /// Distinct users with a debit in the period.
    pub active_users: u64,
    /// The biggest spenders, most first.
    pub top: Vec<Spender>,
    /// Whether the active users passed what one report lists (the figure is a lower bound).
    pub partial: bool,
}

/// What was spent, less what came back.
fn net(figures: &UsageFigures) -> i64 {
    figures.spent - figures.refunded
}

fn query(from: chrono::NaiveDate, to: chrono::NaiveDate, by: UsageGrouping) -> UsageQuery {
    UsageQuery {
        from,
        to,
        group_by: by,
        limit: MAX_ROWS,
    }
}

/// Reads the last [`DAYS`] days up to `now`.
pub(crate) async fn last_30_days(
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<Spending, StoreError> {
    let last_day = now.date_naive();
    let first_day = last_day - Duration::days(DAYS as i64 - 1);
    let mut usage = Usage::empty(first_day);
    for (index, cell) in usage.spent.iter_mut().enumerate() {
        let day = first_day + Duration::days(index as i64);
        let report = store
            .usage(&query(day, day, UsageGrouping::Service))
            .await?;
        for row in report.rows.iter().filter(|r| net(&r.figures) != 0) {
            let service = if row.key.is_empty() { "-" } else { &row.key };
            cell.insert(service.to_owned(), net(&row.figures));
        }
    }
    let users = store
        .usage(&query(first_day, last_day, UsageGrouping::User))
        .await?;
    let active_users = users.rows.iter().filter(|r| r.figures.calls > 0).count() as u64;
    let mut top = Vec::new();
    for row in users.rows.iter().filter(|r| r.figures.spent > 0).take(TOP) {
        let Ok(id) = row.key.parse::<Uuid>() else {
            continue;
        };
        let email = store
            .find_user(id)
            .await?
            .map(|u| u.email)
            .unwrap_or_default();
        top.push(Spender {
            id,
            email,
            spent: row.figures.spent,
        });
    }
    Ok(Spending {
        usage,
        active_users,
        top,
        partial: users.truncated,
    })
}
