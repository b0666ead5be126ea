//! Grants with an end date and a priority: promotional credits that are spent first and expire.
//!
//! The rules:
//! - A grant row (`grt_…`) holds what is left of one grant (`remaining`). The credits of an
//!   account that are in no grant row are its *base*: they behave like a grant of the default
//!   priority that never expires and is older than everything. A plain grant or top-up (default
//!   priority, no end date) adds to the base and writes no grant row, so accounts that never get
//!   a promotional grant never pay for this feature: their debit stays one statement.
//! - Spending (a debit, a capture, a downward adjustment) takes credits by priority (lower first,
//!   [`MIN_PRIORITY`] to [`MAX_PRIORITY`], [`DEFAULT_PRIORITY`] by default), then the earliest end
//!   date (none last), then the oldest, and records what came from where.
//! - A refund gives credits back to the grants they came from, in the reverse order they were
//!   spent; what came from a grant that has reached its end date comes back as base credits.
//! - At its end date what is left of a grant leaves the balance as an `expire` transaction,
//!   except what live holds set aside. Live holds are backed by credits past their end date
//!   first: of the due grants, `max(0, due - held)` expires (taken in spending order), and the
//!   rest stays until the holds settle, then expires at the next sweep or debit after. A capture
//!   spends credits past their end date first, then in spending order; a debit never spends
//!   them (they are the holds'), so a hold can neither make paid credits expire in a
//!   promotion's place nor keep a promotion alive for anything but itself.
//! - `credit_accounts.granted` is the sum of the account's grant rows' `remaining`, never more
//!   than the balance; the audit checks it.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{InvalidInput, StoreError};

/// The priority of plain grants, top-ups and base credits.
pub const DEFAULT_PRIORITY: i32 = 50;
/// The lowest priority (spent first).
pub const MIN_PRIORITY: i32 = 0;
/// The highest priority (spent last).
pub const MAX_PRIORITY: i32 = 100;
/// How far ahead an end date may be, in days (about 100 years).
pub const MAX_GRANT_DAYS: i64 = 36_525;

/// A new opaque grant id.
pub fn new_grant_id() -> String {
    format!("grt_{}", Uuid::now_v7().simple())
}

/// When a grant ends and where it stands in the spending order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantTerms {
    /// When what is left of it expires; never when `None`.
    pub expires_at: Option<DateTime<Utc>>,
    /// Lower is spent first.
    pub priority: i32,
}

impl Default for GrantTerms {
    fn default() -> Self {
        Self {
            expires_at: None,
            priority: DEFAULT_PRIORITY,
        }
    }
}

impl GrantTerms {
    /// Checks a grant's terms as a caller sends them: a priority from [`MIN_PRIORITY`] to
    /// [`MAX_PRIORITY`], an end date after `now` and at most [`MAX_GRANT_DAYS`] ahead.
    pub fn parse(
        expires_at: Option<DateTime<Utc>>,
        priority: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Self, InvalidInput> {
        let priority = match priority {
            None => DEFAULT_PRIORITY,
            Some(p) if (i64::from(MIN_PRIORITY)..=i64::from(MAX_PRIORITY)).contains(&p) => p as i32,
            Some(_) => {
                return Err(InvalidInput::new(
                    "invalid_priority",
                    format!("priority must be {MIN_PRIORITY} to {MAX_PRIORITY}"),
                ));
            }
        };
        if let Some(at) = expires_at
            && (at <= now || at > now + chrono::Duration::days(MAX_GRANT_DAYS))
        {
            return Err(InvalidInput::new(
                "invalid_expires_at",
                format!("expires_at must be in the future and at most {MAX_GRANT_DAYS} days ahead"),
            ));
        }
        Ok(Self {
            // Both engines keep microseconds: what is stored is what a replay compares.
            expires_at: expires_at.map(|at| chrono::SubsecRound::trunc_subsecs(at, 6)),
            priority,
        })
    }

    /// Whether the grant adds to the base (no grant row): default priority, no end date.
    pub fn is_base(&self) -> bool {
        self.expires_at.is_none() && self.priority == DEFAULT_PRIORITY
    }
}

/// A grant row: what is left of a grant with an end date or a priority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreditGrant {
    /// `grt_…`.
    pub id: String,
    /// The grant's transaction.
    pub transaction_id: String,
    /// What was granted.
    pub amount: i64,
    /// What is left to spend.
    pub remaining: i64,
    /// Lower is spent first (0 to 100; plain grants and top-ups are 50).
    pub priority: i32,
    /// When what is left expires; never when absent.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was granted.
    pub created_at: DateTime<Utc>,
}

/// A source of credits in spending order: a grant row, or the base (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The grant row; `None` for the base.
    pub grant_id: Option<String>,
    /// Its priority.
    pub priority: i32,
    /// Its end date.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its age: lower is older (the base is older than every grant).
    pub seq: i64,
    /// What it has.
    pub remaining: i64,
}

impl Source {
    /// The base credits of an account: `balance - granted`.
    pub fn base(remaining: i64) -> Self {
        Self {
            grant_id: None,
            priority: DEFAULT_PRIORITY,
            expires_at: None,
            seq: i64::MIN,
            remaining,
        }
    }
}

/// Who takes credits, which decides what of the credits past their end date it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taker {
    /// A debit or a downward adjustment: never what is past its end date (that is kept only for
    /// live holds, and what is not expires).
    Debit,
    /// A hold's capture: what is past its end date first (live holds are backed by it first),
    /// then the spending order.
    Capture,
}

/// What `taker` takes from each source for `amount` at `now`: (grant or base, credits), in the
/// order taken. Takes at most what the sources it may take from have.
pub fn allocate(
    sources: Vec<Source>,
    amount: i64,
    now: DateTime<Utc>,
    taker: Taker,
) -> Vec<(Option<String>, i64)> {
    let ended = |s: &Source| s.expires_at.is_some_and(|at| at <= now);
    let mut sources = in_spending_order(sources);
    match taker {
        Taker::Debit => sources.retain(|s| !ended(s)),
        // Stable: each part keeps the spending order inside it.
        Taker::Capture => sources.sort_by_key(|s| !ended(s)),
    }
    take_in_order(sources, amount)
}

/// What of the grants past their end date (`due`) expires now: all but what live holds set
/// aside (`held`), taken from them in spending order, so the holds keep the ones spent last.
pub fn to_expire(due: Vec<Source>, held: i64) -> Vec<(Option<String>, i64)> {
    let total: i64 = due.iter().map(|s| s.remaining).sum();
    take_in_order(in_spending_order(due), (total - held).max(0))
}

/// Priority, then the earliest end date (none last), then the oldest; stable.
fn in_spending_order(mut sources: Vec<Source>) -> Vec<Source> {
    sources.sort_by_key(|s| (s.priority, s.expires_at.is_none(), s.expires_at, s.seq));
    sources
}

fn take_in_order(sources: Vec<Source>, amount: i64) -> Vec<(Option<String>, i64)> {
    let mut left = amount;
    let mut taken = Vec::new();
    for source in sources {
        if left == 0 {
            break;
        }
        let take = source.remaining.min(left);
        if take > 0 {
            taken.push((source.grant_id, take));
            left -= take;
        }
    }
    taken
}

/// One part of a debit as recorded: where it came from and what of it is not yet refunded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spent {
    /// Its place in the debit's spending order.
    pub ordinal: i32,
    /// The grant it came from, if that grant can still take credits back (not past its end
    /// date); `None` for the base or a grant that has ended.
    pub live_grant: Option<String>,
    /// What of it may still be refunded.
    pub unrefunded: i64,
}

/// Where a refund of `amount` goes: the parts of the debit in reverse spending order, each
/// (ordinal, live grant or base, credits).
pub fn give_back(mut parts: Vec<Spent>, amount: i64) -> Vec<(i32, Option<String>, i64)> {
    parts.sort_by_key(|p| std::cmp::Reverse(p.ordinal));
    let mut left = amount;
    let mut back = Vec::new();
    for part in parts {
        if left == 0 {
            break;
        }
        let give = part.unrefunded.min(left);
        if give > 0 {
            back.push((part.ordinal, part.live_grant, give));
            left -= give;
        }
    }
    back
}

/// An account whose `granted` is not the sum of its grant rows' `remaining`. Never expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantDiscrepancy {
    /// The account.
    pub user_id: Uuid,
    /// What it says is granted.
    pub granted: i64,
    /// The sum of its grant rows' remaining credits.
    pub sum_of_remaining: i64,
}

/// A source of the current time: the ledger decides grant expiry by it, so tests move it
/// instead of sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// Starts at the system's now.
    pub fn new() -> Self {
        Self(Mutex::new(Utc::now()))
    }

    /// Moves time forward.
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Storage of grant rows: reading them and expiring what is past its end date.
#[async_trait]
pub trait GrantStore: Send + Sync {
    /// A user's grant rows that can still be spent, in spending order; `None` for an unknown
    /// user.
    async fn grants(&self, user_id: Uuid) -> Result<Option<Vec<CreditGrant>>, StoreError>;
    /// Expires what is left of every grant past its end date (an `expire` transaction each),
    /// except what live holds set aside; returns how many accounts lost credits.
    async fn expire_grants(&self) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    fn grant(id: &str, priority: i32, days: Option<i64>, seq: i64, remaining: i64) -> Source {
        Source {
            grant_id: Some(id.into()),
            priority,
            expires_at: days.map(|d| epoch() + chrono::Duration::days(d)),
            seq,
            remaining,
        }
    }

    #[test]
    fn priority_beats_expiry_beats_age_and_base_sits_at_the_default() {
        let sources = vec![
            Source::base(100),
            grant("late", 50, None, 1, 10),
            grant("high", 90, Some(1), 2, 10),
            grant("soon", 50, Some(1), 4, 10),
            grant("later", 50, Some(9), 3, 10),
            grant("first", 10, Some(30), 5, 10),
        ];
        let order: Vec<_> = allocate(sources, 1_000, epoch(), Taker::Debit)
            .into_iter()
            .map(|(id, _)| id.unwrap_or_else(|| "base".into()))
            .collect();
        assert_eq!(order, ["first", "soon", "later", "base", "late", "high"]);
    }

    #[test]
    fn allocation_takes_exactly_the_amount() {
        let sources = vec![Source::base(5), grant("promo", 10, Some(1), 1, 3)];
        let taken = allocate(sources, 6, epoch(), Taker::Debit);
        assert_eq!(taken, vec![(Some("promo".into()), 3), (None, 3)]);
    }

    #[test]
    fn a_capture_takes_what_is_past_its_end_date_first_and_a_debit_never() {
        let sources = || {
            vec![
                Source::base(50),
                grant("early", 5, None, 1, 10),
                grant("ended", 10, Some(-1), 2, 30),
                grant("ended_late", 60, Some(0), 3, 20),
            ]
        };
        let ids = |taken: Vec<(Option<String>, i64)>| -> Vec<(String, i64)> {
            taken
                .into_iter()
                .map(|(id, n)| (id.unwrap_or_else(|| "base".into()), n))
                .collect()
        };
        assert_eq!(
            ids(allocate(sources(), 70, epoch(), Taker::Capture)),
            [
                ("ended".into(), 30),
                ("ended_late".into(), 20),
                ("early".into(), 10),
                ("base".into(), 10)
            ]
        );
        assert_eq!(
            ids(allocate(sources(), 70, epoch(), Taker::Debit)),
            [("early".into(), 10), ("base".into(), 50)]
        );
    }

    #[test]
    fn what_holds_set_aside_is_kept_from_the_grants_spent_last() {
        let due = vec![
            grant("b", 10, Some(0), 2, 30),
            grant("a", 10, Some(-1), 1, 40),
        ];
        assert_eq!(to_expire(due.clone(), 50), [(Some("a".into()), 20)]);
        assert_eq!(to_expire(due.clone(), 80), []);
        assert_eq!(
            to_expire(due, 0),
            [(Some("a".into()), 40), (Some("b".into()), 30)]
        );
    }

    #[test]
    fn refunds_go_back_in_reverse_order() {
        let parts = vec![
            Spent {
                ordinal: 0,
                live_grant: Some("promo".into()),
                unrefunded: 30,
            },
            Spent {
                ordinal: 1,
                live_grant: None,
                unrefunded: 70,
            },
        ];
        assert_eq!(
            give_back(parts, 80),
            vec![(1, None, 70), (0, Some("promo".into()), 10)]
        );
    }

    #[test]
    fn terms_are_checked() {
        let now = Utc::now();
        assert!(GrantTerms::parse(None, None, now).unwrap().is_base());
        assert!(GrantTerms::parse(Some(now), None, now).is_err());
        assert!(GrantTerms::parse(None, Some(101), now).is_err());
        assert!(GrantTerms::parse(None, Some(-1), now).is_err());
        let ends = now + chrono::Duration::days(1) + chrono::Duration::nanoseconds(1_999);
        let terms = GrantTerms::parse(Some(ends), Some(0), now).unwrap();
        assert!(!terms.is_base());
        assert_eq!(
            terms.expires_at.unwrap().timestamp_subsec_nanos() % 1_000,
            0
        );
    }
}
