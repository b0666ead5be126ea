//! Usage reports: credits spent, refunded, granted and adjusted, and calls, between two dates,
//! grouped by day, service or user. They are read from daily and monthly rollups that a trigger
//! on `credit_transactions` keeps in step with the ledger (migration 0011), never from the ledger
//! itself, so a month of a million transactions answers in milliseconds.

use async_trait::async_trait;
use chrono::{Datelike, Days, Months, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::{InvalidInput, StoreError};

/// The longest report, in days.
pub const MAX_SPAN_DAYS: i64 = 366;
/// The most rows a report grouped by service or user holds.
pub const MAX_ROWS: u32 = 1000;

/// What the rows of a report stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageGrouping {
    /// One row per UTC day of the range, oldest first, days without usage included.
    Day,
    /// One row per service (`""` for grants and adjustments, which have none), biggest spend
    /// first.
    Service,
    /// One row per user, biggest spend first.
    User,
}

/// The figures of a report row, or of the whole range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageFigures {
    /// Credits debited (captured holds included).
    pub spent: i64,
    /// Credits given back by refunds made in the range.
    pub refunded: i64,
    /// Credits granted.
    pub granted: i64,
    /// The sum of operators' adjustments (signed).
    pub adjusted: i64,
    /// Debits made.
    pub calls: i64,
}

/// One row of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageRow {
    /// The day (`YYYY-MM-DD`), the service, or the user's id.
    pub key: String,
    /// Its figures.
    #[serde(flatten)]
    pub figures: UsageFigures,
}

/// A report asked for: dates inclusive, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageQuery {
    /// The first day.
    pub from: NaiveDate,
    /// The last day.
    pub to: NaiveDate,
    /// What a row stands for.
    pub group_by: UsageGrouping,
    /// The most rows when grouped by service or user (days are never cut).
    pub limit: u32,
}

impl UsageQuery {
    /// Checks the range (`from` ≤ `to`, at most [`MAX_SPAN_DAYS`] days) and the limit.
    pub fn new(
        from: NaiveDate,
        to: NaiveDate,
        group_by: UsageGrouping,
        limit: u32,
    ) -> Result<Self, InvalidInput> {
        let invalid = |message: String| InvalidInput {
            code: "invalid_range",
            message,
            too_large: false,
        };
        if from > to {
            return Err(invalid(format!("from ({from}) is after to ({to})")));
        }
        if (to - from).num_days() + 1 > MAX_SPAN_DAYS {
            return Err(invalid(format!(
                "a report covers at most {MAX_SPAN_DAYS} days"
            )));
        }
        if limit == 0 || limit > MAX_ROWS {
            return Err(InvalidInput {
                code: "invalid_limit",
                message: format!("limit must be 1 to {MAX_ROWS}"),
                too_large: false,
            });
        }
        Ok(Self {
            from,
            to,
            group_by,
            limit,
        })
    }
}

/// A report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReport {
    /// The rows, in the grouping's order.
    pub rows: Vec<UsageRow>,
    /// Over the whole range, whatever `limit` cut.
    pub totals: UsageFigures,
    /// Whether `limit` left rows out.
    pub truncated: bool,
}

/// Storage of the usage rollups.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Usage between two days, grouped as asked.
    async fn usage(&self, query: &UsageQuery) -> Result<UsageReport, StoreError>;
}

/// A day as the rollups key it.
pub fn day_key(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// A range cut where the monthly rollup can answer: the whole calendar months in the middle
/// (`months`, first days, end exclusive) and the loose days before and after them (`head`,
/// `tail`, inclusive; empty when the start is after the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeParts {
    /// Loose days before the whole months.
    pub head: (NaiveDate, NaiveDate),
    /// Whole months: first day of the first, first day after the last.
    pub months: (NaiveDate, NaiveDate),
    /// Loose days after the whole months.
    pub tail: (NaiveDate, NaiveDate),
}

fn first_of_month(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

fn next_month(day: NaiveDate) -> NaiveDate {
    first_of_month(day)
        .checked_add_months(Months::new(1))
        .unwrap_or(NaiveDate::MAX)
}

fn day_before(day: NaiveDate) -> NaiveDate {
    day.checked_sub_days(Days::new(1)).unwrap_or(NaiveDate::MIN)
}

/// Cuts `from..=to` into loose days and whole months.
pub fn range_parts(from: NaiveDate, to: NaiveDate) -> RangeParts {
    let first_whole = if from.day() == 1 {
        from
    } else {
        next_month(from)
    };
    let after_last_whole = if next_month(to) == to.succ_opt().unwrap_or(NaiveDate::MAX) {
        next_month(to)
    } else {
        first_of_month(to)
    };
    if first_whole < after_last_whole {
        RangeParts {
            head: (from, day_before(first_whole)),
            months: (first_whole, after_last_whole),
            tail: (after_last_whole, to),
        }
    } else {
        RangeParts {
            head: (from, to),
            months: (to, to),
            tail: (to.succ_opt().unwrap_or(NaiveDate::MAX), to),
        }
    }
}

/// The report from the rows a store read (at most `limit + 1` of them when grouped by service
/// or user) and the totals: missing days filled with zeros, the extra row cut.
pub fn finish(query: &UsageQuery, mut rows: Vec<UsageRow>, totals: UsageFigures) -> UsageReport {
    if query.group_by == UsageGrouping::Day {
        rows = every_day(query.from, query.to, rows);
        return UsageReport {
            rows,
            totals,
            truncated: false,
        };
    }
    let truncated = rows.len() > query.limit as usize;
    rows.truncate(query.limit as usize);
    UsageReport {
        rows,
        totals,
        truncated,
    }
}

/// One row per day of the range, in order: the rows found, zeros for the others.
fn every_day(from: NaiveDate, to: NaiveDate, found: Vec<UsageRow>) -> Vec<UsageRow> {
    let mut found: std::collections::HashMap<String, UsageFigures> =
        found.into_iter().map(|r| (r.key, r.figures)).collect();
    from.iter_days()
        .take_while(|day| *day <= to)
        .map(|day| {
            let key = day_key(day);
            let figures = found.remove(&key).unwrap_or_default();
            UsageRow { key, figures }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn ranges_are_cut_at_whole_months() {
        let whole = range_parts(d("2025-01-01"), d("2025-01-31"));
        assert_eq!(whole.months, (d("2025-01-01"), d("2025-02-01")));
        assert!(whole.head.0 > whole.head.1 && whole.tail.0 > whole.tail.1);

        let loose = range_parts(d("2025-01-17"), d("2025-03-05"));
        assert_eq!(loose.head, (d("2025-01-17"), d("2025-01-31")));
        assert_eq!(loose.months, (d("2025-02-01"), d("2025-03-01")));
        assert_eq!(loose.tail, (d("2025-03-01"), d("2025-03-05")));

        let inside = range_parts(d("2025-02-03"), d("2025-02-27"));
        assert_eq!(inside.head, (d("2025-02-03"), d("2025-02-27")));
        assert_eq!(inside.months.0, inside.months.1);
        assert!(inside.tail.0 > inside.tail.1);

        let leap = range_parts(d("2024-01-15"), d("2024-02-29"));
        assert_eq!(leap.months, (d("2024-02-01"), d("2024-03-01")));
        assert_eq!(leap.head, (d("2024-01-15"), d("2024-01-31")));
    }

    #[test]
    fn queries_are_checked() {
        let ok = UsageQuery::new(d("2025-01-01"), d("2025-12-31"), UsageGrouping::Day, 10);
        assert!(ok.is_ok());
        assert!(UsageQuery::new(d("2025-01-02"), d("2025-01-01"), UsageGrouping::Day, 10).is_err());
        assert!(UsageQuery::new(d("2024-01-01"), d("2025-01-01"), UsageGrouping::Day, 10).is_err());
        assert!(UsageQuery::new(d("2025-01-01"), d("2025-01-01"), UsageGrouping::User, 0).is_err());
    }

    #[test]
    fn days_are_filled_and_other_groupings_cut() {
        let row = |key: &str, spent| UsageRow {
            key: key.into(),
            figures: UsageFigures {
                spent,
                ..UsageFigures::default()
            },
        };
        let days =
            UsageQuery::new(d("2025-01-01"), d("2025-01-03"), UsageGrouping::Day, 1).unwrap();
        let report = finish(&days, vec![row("2025-01-02", 5)], UsageFigures::default());
        let keys: Vec<_> = report.rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["2025-01-01", "2025-01-02", "2025-01-03"]);
        assert_eq!(report.rows[1].figures.spent, 5);

        let users = UsageQuery {
            group_by: UsageGrouping::User,
            ..days
        };
        let report = finish(
            &users,
            vec![row("a", 2), row("b", 1)],
            UsageFigures::default(),
        );
        assert!(report.truncated);
        assert_eq!(report.rows.len(), 1);
    }
}
