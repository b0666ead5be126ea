//! What the dashboard shows: credits spent per day and service over the last 30 days, the users
//! active in them and the biggest spenders.
//!
//! Computed here from the ledger, account by account (each user's transactions of the period, as
//! the account page reads its own), because the daily usage rollups (`UsageStore`, being finished
//! beside this) have not landed yet. This is the one function to replace with two rollup queries
//! (grouped by day and service, grouped by user) when they do; until then it reads at most
//! [`MAX_USERS`] accounts and says so when it stopped.

use chrono::{DateTime, Duration, Utc};
use hub_ledger::{Store, StoreError};
use uuid::Uuid;

use crate::web::chart::{self, DAYS, Usage};

/// The most accounts read for one dashboard.
const MAX_USERS: usize = 5_000;
/// Accounts read per page of the user list.
const USER_PAGE: u32 = 200;
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
    /// Whether some accounts (or some of their transactions) were not read.
    pub partial: bool,
}

/// Reads the last [`DAYS`] days up to `now`.
pub(crate) async fn last_30_days(
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<Spending, StoreError> {
    let first_day = now.date_naive() - Duration::days(DAYS as i64 - 1);
    let mut total = Usage::empty(first_day);
    let mut spenders: Vec<Spender> = Vec::new();
    let mut active_users = 0;
    let mut read = 0;
    let mut cursor = None;
    loop {
        let users = store.search_users("", cursor, USER_PAGE).await?;
        for user in &users {
            let usage = chart::usage(store, user.id, now).await?;
            if usage.debits > 0 {
                active_users += 1;
            }
            let spent = usage.total();
            if spent > 0 {
                spenders.push(Spender {
                    id: user.id,
                    email: user.email.clone(),
                    spent,
                });
            }
            total.merge(&usage);
        }
        read += users.len();
        cursor = users.last().map(|u| u.id);
        if users.len() < USER_PAGE as usize || read >= MAX_USERS {
            let partial = users.len() == USER_PAGE as usize || total.truncated;
            return Ok(Spending {
                usage: total,
                active_users,
                top: biggest(spenders),
                partial,
            });
        }
    }
}

/// The [`TOP`] biggest spenders, most first (ties by id, so the order is stable).
fn biggest(mut spenders: Vec<Spender>) -> Vec<Spender> {
    spenders.sort_by(|a, b| b.spent.cmp(&a.spent).then_with(|| a.id.cmp(&b.id)));
    spenders.truncate(TOP);
    spenders
}
