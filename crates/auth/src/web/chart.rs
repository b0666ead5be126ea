//! The usage chart: credits spent per UTC day over the last 30 days, stacked by service, drawn as
//! inline SVG on the server (no script, no library): a user's own on the account page, everyone's
//! on the console's dashboard. The template (`usage_chart.html`) draws what [`Chart`] holds; the
//! geometry is integer pixels.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use hub_ledger::{MAX_PAGE, Store, StoreError, Transaction, TransactionKind};
use uuid::Uuid;

/// How many days the chart shows, today included.
pub(crate) const DAYS: usize = 30;
/// The most transactions read for it; a heavier user's chart says it counted only the latest.
const SCAN_LIMIT: usize = 20_000;
/// Services with a colour of their own; the rest are drawn together as "other".
const NAMED_SERVICES: usize = 5;
const COLOURS: [&str; NAMED_SERVICES + 1] = [
    "#2563eb", "#16a34a", "#d97706", "#db2777", "#7c3aed", "#6b7280",
];
/// The drawing's size and the plot inside it.
pub(crate) const WIDTH: i64 = 640;
pub(crate) const HEIGHT: i64 = 220;
const LEFT: i64 = 48;
const TOP: i64 = 10;
const PLOT_HEIGHT: i64 = 180;
const SLOT: i64 = (WIDTH - LEFT - 8) / DAYS as i64;

/// Credits spent (less refunds) per day and service.
#[derive(Debug)]
pub(crate) struct Usage {
    /// The first day shown.
    pub first_day: NaiveDate,
    /// `spent[day][service]`, day 0 the first.
    pub spent: Vec<HashMap<String, i64>>,
    /// Whether the scan stopped before reaching the first day.
    pub truncated: bool,
}

/// Reads the user's transactions of the last [`DAYS`] days at `now`.
pub(crate) async fn usage(
    store: &dyn Store,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Usage, StoreError> {
    let first_day = now.date_naive() - Duration::days(DAYS as i64 - 1);
    let mut usage = Usage::new(first_day);
    let mut cursor: Option<String> = None;
    let mut scanned = 0;
    loop {
        let Some(batch) = store
            .transactions(user_id, MAX_PAGE, cursor.as_deref())
            .await?
        else {
            return Ok(usage);
        };
        for transaction in &batch.transactions {
            if transaction.created_at.date_naive() < first_day {
                return Ok(usage);
            }
            usage.add(transaction);
            scanned += 1;
        }
        cursor = batch.next_cursor;
        if cursor.is_none() {
            return Ok(usage);
        }
        if scanned >= SCAN_LIMIT {
            usage.truncated = true;
            return Ok(usage);
        }
    }
}

impl Usage {
    fn new(first_day: NaiveDate) -> Self {
        Self {
            first_day,
            spent: vec![HashMap::new(); DAYS],
            truncated: false,
        }
    }

    /// No usage yet, from `first_day`.
    pub(crate) fn empty(first_day: NaiveDate) -> Self {
        Self::new(first_day)
    }

    /// Counts a debit (what it spent) or a refund (what came back) on its day.
    pub(crate) fn add(&mut self, transaction: &Transaction) {
        if !matches!(
            transaction.kind,
            TransactionKind::Debit | TransactionKind::Refund
        ) {
            return;
        }
        let day = (transaction.created_at.date_naive() - self.first_day).num_days();
        let Some(cell) = usize::try_from(day)
            .ok()
            .and_then(|d| self.spent.get_mut(d))
        else {
            return;
        };
        let service = transaction.service.clone().unwrap_or_else(|| "-".into());
        *cell.entry(service).or_default() -= transaction.amount;
    }

    /// Services by what was spent on them, most first (ties by name).
    fn services(&self) -> Vec<(String, i64)> {
        let mut totals: HashMap<&str, i64> = HashMap::new();
        for day in &self.spent {
            for (service, spent) in day {
                *totals.entry(service).or_default() += (*spent).max(0);
            }
        }
        let mut services: Vec<(String, i64)> = totals
            .into_iter()
            .filter(|(_, total)| *total > 0)
            .map(|(s, t)| (s.to_owned(), t))
            .collect();
        services.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        services
    }
}

/// One rectangle of the chart: one service on one day.
#[derive(Debug)]
pub(crate) struct Bar {
    pub x: i64,
    pub y: i64,
    pub width: i64,
    pub height: i64,
    pub fill: &'static str,
    /// What a pointer resting on it shows.
    pub title: String,
}

/// A label under the days.
#[derive(Debug)]
pub(crate) struct Tick {
    pub x: i64,
    pub label: String,
}

/// A service and its colour.
#[derive(Debug)]
pub(crate) struct Legend {
    pub fill: &'static str,
    pub name: String,
    pub total: i64,
}

/// The chart as the template draws it.
#[derive(Debug, Default)]
pub(crate) struct Chart {
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
    pub legend: Vec<Legend>,
    /// The most spent on one day: the top of the scale.
    pub max: i64,
    /// Everything spent in the period.
    pub total: i64,
}

/// Lays the usage out: stacked bars, a label every five days, the legend.
pub(crate) fn chart(usage: &Usage, other: &str) -> Chart {
    let services = usage.services();
    let named: Vec<&str> = services
        .iter()
        .take(NAMED_SERVICES)
        .map(|(s, _)| s.as_str())
        .collect();
    let colour_of = |service: &str| {
        named
            .iter()
            .position(|n| *n == service)
            .map_or(COLOURS[NAMED_SERVICES], |i| COLOURS[i])
    };
    let mut chart = Chart {
        legend: legend(&services, other, &colour_of),
        total: services.iter().map(|(_, t)| t).sum(),
        ..Chart::default()
    };
    // Per day, the services in legend order, "other" last.
    let days: Vec<Vec<(&'static str, String, i64)>> = usage
        .spent
        .iter()
        .map(|day| stack(day, &services, other, &colour_of))
        .collect();
    chart.max = days
        .iter()
        .map(|d| d.iter().map(|(_, _, v)| v).sum::<i64>())
        .max()
        .unwrap_or(0);
    for (index, segments) in days.iter().enumerate() {
        let date = usage.first_day + Duration::days(index as i64);
        let x = LEFT + index as i64 * SLOT + 2;
        if index % 5 == 0 || index == DAYS - 1 {
            chart.ticks.push(Tick {
                x: x + (SLOT - 4) / 2,
                label: date.format("%d/%m").to_string(),
            });
        }
        let mut below = 0;
        for (fill, name, spent) in segments {
            let (bottom, top) = (px(below, chart.max), px(below + spent, chart.max));
            below += spent;
            if top > bottom {
                chart.bars.push(Bar {
                    x,
                    y: TOP + PLOT_HEIGHT - top,
                    width: SLOT - 4,
                    height: top - bottom,
                    fill,
                    title: format!("{} · {name}: {spent}", date.format("%Y-%m-%d")),
                });
            }
        }
    }
    chart
}

fn legend(
    services: &[(String, i64)],
    other: &str,
    colour_of: &dyn Fn(&str) -> &'static str,
) -> Vec<Legend> {
    let mut legend: Vec<Legend> = services
        .iter()
        .take(NAMED_SERVICES)
        .map(|(name, total)| Legend {
            fill: colour_of(name),
            name: name.clone(),
            total: *total,
        })
        .collect();
    let rest: i64 = services.iter().skip(NAMED_SERVICES).map(|(_, t)| t).sum();
    if rest > 0 {
        legend.push(Legend {
            fill: COLOURS[NAMED_SERVICES],
            name: other.to_owned(),
            total: rest,
        });
    }
    legend
}

/// One day's segments, bottom first: each named service, then everything else together.
fn stack(
    day: &HashMap<String, i64>,
    services: &[(String, i64)],
    other: &str,
    colour_of: &dyn Fn(&str) -> &'static str,
) -> Vec<(&'static str, String, i64)> {
    let mut segments: Vec<(&'static str, String, i64)> = services
        .iter()
        .take(NAMED_SERVICES)
        .filter_map(|(name, _)| {
            let spent = day.get(name).copied().unwrap_or(0).max(0);
            (spent > 0).then(|| (colour_of(name), name.clone(), spent))
        })
        .collect();
    let rest: i64 = services
        .iter()
        .skip(NAMED_SERVICES)
        .map(|(name, _)| day.get(name).copied().unwrap_or(0).max(0))
        .sum();
    if rest > 0 {
        segments.push((COLOURS[NAMED_SERVICES], other.to_owned(), rest));
    }
    segments
}

/// The height in pixels of `value` on a scale topped by `max` (rounded, so stacks stay whole).
fn px(value: i64, max: i64) -> i64 {
    if max <= 0 {
        return 0;
    }
    let scaled = i128::from(value) * i128::from(PLOT_HEIGHT);
    ((scaled + i128::from(max) / 2) / i128::from(max)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spent(kind: TransactionKind, service: &str, amount: i64, at: DateTime<Utc>) -> Transaction {
        Transaction {
            id: "txn_1".into(),
            user_id: Uuid::nil(),
            kind,
            service: Some(service.into()),
            amount,
            balance_before: 0,
            balance_after: 0,
            refund_of: None,
            reason: None,
            metadata: None,
            created_at: at,
        }
    }

    #[test]
    fn spending_is_stacked_by_day_and_service_with_refunds_taken_off() {
        let now = Utc::now();
        let mut usage = Usage::new(now.date_naive() - Duration::days(DAYS as i64 - 1));
        usage.add(&spent(TransactionKind::Debit, "sora2", -30, now));
        usage.add(&spent(TransactionKind::Debit, "chat", -10, now));
        usage.add(&spent(TransactionKind::Refund, "sora2", 10, now));
        usage.add(&spent(TransactionKind::Grant, "", 500, now));
        let yesterday = now - Duration::days(1);
        usage.add(&spent(TransactionKind::Debit, "sora2", -5, yesterday));
        usage.add(&spent(
            TransactionKind::Debit,
            "old",
            -99,
            now - Duration::days(40),
        ));

        let chart = chart(&usage, "other");
        assert_eq!(chart.max, 30, "today: 20 on sora2 and 10 on chat");
        assert_eq!(chart.total, 35);
        assert_eq!(chart.legend.len(), 2);
        assert_eq!(chart.legend[0].name, "sora2");
        assert_eq!(chart.bars.len(), 3);
        let last = chart.bars.iter().map(|b| b.x).max().unwrap();
        let today: Vec<&Bar> = chart.bars.iter().filter(|b| b.x == last).collect();
        assert_eq!(today.len(), 2);
        assert_eq!(today.iter().map(|b| b.height).sum::<i64>(), PLOT_HEIGHT);
        assert!(
            chart
                .bars
                .iter()
                .all(|b| b.y >= TOP && b.x + b.width < WIDTH)
        );
        assert_eq!(chart.ticks.len(), 7);
    }

    #[test]
    fn no_spending_draws_no_bars_and_huge_amounts_do_not_overflow() {
        let usage = Usage::new(Utc::now().date_naive());
        let chart = chart(&usage, "other");
        assert!(chart.bars.is_empty() && chart.max == 0);
        assert_eq!(
            px(hub_ledger::MAX_BALANCE, hub_ledger::MAX_BALANCE),
            PLOT_HEIGHT
        );
    }
}
