-- Usage rollups, kept in step with the ledger by a trigger on credit_transactions (the embedded
-- engine's twin of migrations/postgres/0011_usage.sql, which says what each kind adds). Days
-- are UTC dates as text (YYYY-MM-DD), months their first day. The embedded engine has one
-- writer, so usage_daily keeps a single shard (0).

CREATE TABLE usage_daily (
    day       TEXT NOT NULL,
    service   TEXT NOT NULL DEFAULT '',
    shard     INTEGER NOT NULL DEFAULT 0,
    spent     INTEGER NOT NULL DEFAULT 0,
    refunded  INTEGER NOT NULL DEFAULT 0,
    granted   INTEGER NOT NULL DEFAULT 0,
    adjusted  INTEGER NOT NULL DEFAULT 0,
    calls     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, service, shard)
);

CREATE TABLE usage_daily_users (
    day       TEXT NOT NULL,
    user_id   TEXT NOT NULL REFERENCES credit_accounts (user_id) ON DELETE CASCADE,
    service   TEXT NOT NULL DEFAULT '',
    spent     INTEGER NOT NULL DEFAULT 0,
    refunded  INTEGER NOT NULL DEFAULT 0,
    granted   INTEGER NOT NULL DEFAULT 0,
    adjusted  INTEGER NOT NULL DEFAULT 0,
    calls     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, user_id, service)
);

CREATE INDEX usage_daily_users_user_day ON usage_daily_users (user_id, day);

CREATE TABLE usage_monthly_users (
    month     TEXT NOT NULL,
    user_id   TEXT NOT NULL REFERENCES credit_accounts (user_id) ON DELETE CASCADE,
    spent     INTEGER NOT NULL DEFAULT 0,
    refunded  INTEGER NOT NULL DEFAULT 0,
    granted   INTEGER NOT NULL DEFAULT 0,
    adjusted  INTEGER NOT NULL DEFAULT 0,
    calls     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (month, user_id)
);

-- One row's figures, the same way in the trigger and the backfill.
CREATE VIEW usage_entries AS
SELECT date(created_at) AS day, strftime('%Y-%m-01', created_at) AS month, user_id,
       coalesce(service, '') AS service,
       CASE WHEN kind = 'debit' THEN -amount ELSE 0 END AS spent,
       CASE WHEN kind = 'refund' THEN amount ELSE 0 END AS refunded,
       CASE WHEN kind = 'grant' THEN amount ELSE 0 END AS granted,
       CASE WHEN kind = 'adjustment' THEN amount ELSE 0 END AS adjusted,
       CASE WHEN kind = 'debit' THEN 1 ELSE 0 END AS calls,
       seq
FROM credit_transactions
WHERE kind IN ('debit', 'refund', 'grant', 'adjustment');

-- The rows written before this migration (which runs under the only writer).
INSERT INTO usage_daily (day, service, shard, spent, refunded, granted, adjusted, calls)
SELECT day, service, 0, sum(spent), sum(refunded), sum(granted), sum(adjusted), sum(calls)
FROM usage_entries GROUP BY day, service;

INSERT INTO usage_daily_users (day, user_id, service, spent, refunded, granted, adjusted, calls)
SELECT day, user_id, service, sum(spent), sum(refunded), sum(granted), sum(adjusted), sum(calls)
FROM usage_entries GROUP BY day, user_id, service;

INSERT INTO usage_monthly_users (month, user_id, spent, refunded, granted, adjusted, calls)
SELECT month, user_id, sum(spent), sum(refunded), sum(granted), sum(adjusted), sum(calls)
FROM usage_entries GROUP BY month, user_id;

CREATE TRIGGER credit_transactions_usage AFTER INSERT ON credit_transactions
WHEN NEW.kind IN ('debit', 'refund', 'grant', 'adjustment')
BEGIN
    INSERT INTO usage_daily (day, service, shard, spent, refunded, granted, adjusted, calls)
    SELECT day, service, 0, spent, refunded, granted, adjusted, calls
    FROM usage_entries WHERE seq = NEW.seq
    ON CONFLICT (day, service, shard) DO UPDATE SET
        spent = spent + excluded.spent, refunded = refunded + excluded.refunded,
        granted = granted + excluded.granted, adjusted = adjusted + excluded.adjusted,
        calls = calls + excluded.calls;
    INSERT INTO usage_daily_users (day, user_id, service, spent, refunded, granted, adjusted, calls)
    SELECT day, user_id, service, spent, refunded, granted, adjusted, calls
    FROM usage_entries WHERE seq = NEW.seq
    ON CONFLICT (day, user_id, service) DO UPDATE SET
        spent = spent + excluded.spent, refunded = refunded + excluded.refunded,
        granted = granted + excluded.granted, adjusted = adjusted + excluded.adjusted,
        calls = calls + excluded.calls;
    INSERT INTO usage_monthly_users (month, user_id, spent, refunded, granted, adjusted, calls)
    SELECT month, user_id, spent, refunded, granted, adjusted, calls
    FROM usage_entries WHERE seq = NEW.seq
    ON CONFLICT (month, user_id) DO UPDATE SET
        spent = spent + excluded.spent, refunded = refunded + excluded.refunded,
        granted = granted + excluded.granted, adjusted = adjusted + excluded.adjusted,
        calls = calls + excluded.calls;
END;
