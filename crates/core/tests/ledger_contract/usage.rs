//! Usage rollups: whatever writes the ledger, the report adds up to the ledger's own rows, by
//! day, service and user, over whole months and loose days alike.

use chrono::{Days, NaiveDate, Utc};
use hub_core::ledger::usage::{UsageGrouping, UsageQuery, UsageReport};
use hub_storage::Database;

use super::*;

async fn report(
    store: &Arc<dyn Store>,
    from: NaiveDate,
    to: NaiveDate,
    by: UsageGrouping,
) -> UsageReport {
    store
        .usage(&UsageQuery::new(from, to, by, 1000).unwrap())
        .await
        .unwrap()
}

fn figures(report: &UsageReport, key: &str) -> [i64; 5] {
    let row = report.rows.iter().find(|r| r.key == key).expect(key);
    let f = row.figures;
    [f.spent, f.refunded, f.granted, f.adjusted, f.calls]
}

#[tokio::test]
async fn the_report_follows_debits_refunds_and_grants() {
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let alice = user(&store, 100).await;
        let bob = user(&store, 40).await;
        let DebitOutcome::Debited { transaction: spent } = fresh_debit(&store, alice, 30).await
        else {
            panic!("expected a debit");
        };
        fresh_debit(&store, alice, 20).await;
        fresh_debit(&store, bob, 5).await;
        let refunded = store
            .refund(&refund(&spent.id, Some(10)), None)
            .await
            .unwrap();
        assert!(matches!(
            refunded,
            Idempotent::Fresh(RefundOutcome::Refunded { .. })
        ));
        // Refused debits write no row and count nothing.
        fresh_debit(&store, bob, 1_000).await;

        let today = Utc::now().date_naive();
        let (from, to) = (
            today.checked_sub_days(Days::new(1)).unwrap(),
            today.checked_add_days(Days::new(1)).unwrap(),
        );
        let by_service = report(&store, from, to, UsageGrouping::Service).await;
        assert_eq!(
            figures(&by_service, "sora2-video-generation"),
            [55, 10, 0, 0, 3],
            "{engine:?}"
        );
        assert_eq!(figures(&by_service, ""), [0, 0, 140, 0, 0], "{engine:?}");
        let by_user = report(&store, from, to, UsageGrouping::User).await;
        assert_eq!(
            figures(&by_user, &alice.to_string()),
            [50, 10, 100, 0, 2],
            "{engine:?}"
        );
        assert_eq!(
            figures(&by_user, &bob.to_string()),
            [5, 0, 40, 0, 1],
            "{engine:?}"
        );
        let by_day = report(&store, from, to, UsageGrouping::Day).await;
        assert_eq!(by_day.rows.len(), 3);
        for r in [&by_service, &by_user, &by_day] {
            assert_eq!(r.totals, by_service.totals, "{engine:?}: one set of totals");
        }
        assert_eq!(by_day.totals.spent, 55);
        assert_invariant(&store).await;
    }
}

/// A ledger row written straight into the table at a chosen time (as a migration or an import
/// would): the trigger rolls it up all the same.
async fn write_at(db: &TestDatabase, n: usize, user: Uuid, kind: &str, amount: i64, at: &str) {
    let id = format!("txn_usage_{n}");
    let service = (kind != "grant").then_some("svc");
    match &db.database {
        Database::Postgres(pool) => {
            sqlx::query(
                "INSERT INTO credit_transactions
                     (id, user_id, kind, service, amount, balance_before, balance_after, created_at)
                 VALUES ($1, $2, $3, $4, $5, 0, $5, $6::timestamptz)",
            )
            .bind(id)
            .bind(user)
            .bind(kind)
            .bind(service)
            .bind(amount)
            .bind(at)
            .execute(pool)
            .await
            .unwrap();
        }
        Database::Sqlite { writer, .. } => {
            sqlx::query(
                "INSERT INTO credit_transactions
                     (id, user_id, kind, service, amount, balance_before, balance_after, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?5, ?6)",
            )
            .bind(id)
            .bind(user.to_string())
            .bind(kind)
            .bind(service)
            .bind(amount)
            .bind(at)
            .execute(writer)
            .await
            .unwrap();
        }
    }
}

#[tokio::test]
async fn whole_months_and_loose_days_add_up_to_the_ledger() {
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    // (UTC time, kind, amount): the same user throughout.
    let entries = [
        ("2025-01-15T10:00:00Z", "debit", -7),
        ("2025-01-31T23:59:59Z", "debit", -11),
        ("2025-02-01T00:00:00Z", "refund", 3),
        ("2025-02-10T12:00:00Z", "debit", -13),
        ("2025-02-28T08:00:00Z", "adjustment", -2),
        ("2025-03-01T00:30:00Z", "grant", 17),
        ("2025-03-20T00:30:00Z", "debit", -19),
    ];
    for engine in engines() {
        let db = TestDatabase::new(engine).await;
        let store = db.store();
        let carol = user(&store, 0).await;
        for (n, (at, kind, amount)) in entries.iter().enumerate() {
            write_at(&db, n, carol, kind, *amount, at).await;
        }
        for (from, to) in [
            ("2025-01-01", "2025-03-31"),
            ("2025-01-16", "2025-03-01"),
            ("2025-02-01", "2025-02-28"),
            ("2025-01-31", "2025-02-01"),
            ("2025-02-02", "2025-02-27"),
            ("2025-03-02", "2025-03-31"),
        ] {
            let (from, to) = (day(from), day(to));
            let mut expected = [0i64; 5];
            for (at, kind, amount) in entries {
                let on = day(&at[..10]);
                if on < from || on > to {
                    continue;
                }
                let column = ["debit", "refund", "grant", "adjustment"]
                    .iter()
                    .position(|k| *k == kind)
                    .unwrap();
                expected[column] += if kind == "debit" { -amount } else { amount };
                expected[4] += i64::from(kind == "debit");
            }
            let by_user = report(&store, from, to, UsageGrouping::User).await;
            let got = if expected == [0; 5] {
                assert!(
                    by_user.rows.is_empty(),
                    "{engine:?} {from}..{to}: {by_user:?}"
                );
                expected
            } else {
                figures(&by_user, &carol.to_string())
            };
            assert_eq!(got, expected, "{engine:?}: by user, {from}..{to}");
            let by_day = report(&store, from, to, UsageGrouping::Day).await;
            assert_eq!(by_day.totals, by_user.totals, "{engine:?}: {from}..{to}");
            let t = by_day.totals;
            assert_eq!(
                [t.spent, t.refunded, t.granted, t.adjusted, t.calls],
                expected
            );
        }
    }
}
