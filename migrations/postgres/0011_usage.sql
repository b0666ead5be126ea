-- Usage rollups, kept in step with the ledger by a trigger on credit_transactions: every writer,
-- present and future, updates them in the same database transaction as the row it inserts. The
-- admin usage report reads them instead of the ledger, so a month answers in milliseconds.
--
-- What each kind adds (a day is a UTC day; a refund counts on the day it is made):
--   debit       spent += -amount, calls += 1 (a captured hold is a debit too)
--   refund      refunded += amount
--   grant       granted += amount
--   adjustment  adjusted += amount (signed: an operator's correction is neither spend nor grant)
-- Any other kind (one added later) is left out until a migration gives it a column.
--
-- Three tables, each for the questions it answers fast:
--   usage_daily          day × service, for the whole hub (group_by=day and service). Split
--                        over 64 shards by the writing connection, so that concurrent debits of
--                        different users never queue on one row; readers sum the shards.
--   usage_daily_users    day × user × service (a user's own chart; the days at the ends of a
--                        range that are not whole months, for group_by=user).
--   usage_monthly_users  calendar month × user (the whole months of group_by=user).
-- A transaction without a service (grants, adjustments) is kept under the service ''.

CREATE TABLE usage_daily (
    day       DATE NOT NULL,
    service   TEXT NOT NULL DEFAULT '',
    shard     SMALLINT NOT NULL DEFAULT 0,
    spent     BIGINT NOT NULL DEFAULT 0,
    refunded  BIGINT NOT NULL DEFAULT 0,
    granted   BIGINT NOT NULL DEFAULT 0,
    adjusted  BIGINT NOT NULL DEFAULT 0,
    calls     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, service, shard)
);

CREATE TABLE usage_daily_users (
    day       DATE NOT NULL,
    user_id   UUID NOT NULL REFERENCES credit_accounts (user_id) ON DELETE CASCADE,
    service   TEXT NOT NULL DEFAULT '',
    spent     BIGINT NOT NULL DEFAULT 0,
    refunded  BIGINT NOT NULL DEFAULT 0,
    granted   BIGINT NOT NULL DEFAULT 0,
    adjusted  BIGINT NOT NULL DEFAULT 0,
    calls     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, user_id, service)
);

CREATE INDEX usage_daily_users_user_day ON usage_daily_users (user_id, day);

CREATE TABLE usage_monthly_users (
    month     DATE NOT NULL,
    user_id   UUID NOT NULL REFERENCES credit_accounts (user_id) ON DELETE CASCADE,
    spent     BIGINT NOT NULL DEFAULT 0,
    refunded  BIGINT NOT NULL DEFAULT 0,
    granted   BIGINT NOT NULL DEFAULT 0,
    adjusted  BIGINT NOT NULL DEFAULT 0,
    calls     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (month, user_id),
    CONSTRAINT usage_monthly_users_month_check CHECK (extract(day FROM month) = 1)
);

CREATE FUNCTION usage_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_day      DATE := (NEW.created_at AT TIME ZONE 'UTC')::date;
    v_month    DATE := v_day - (extract(day FROM v_day)::int - 1);
    v_service  TEXT := coalesce(NEW.service, '');
    v_spent    BIGINT := CASE WHEN NEW.kind = 'debit' THEN -NEW.amount ELSE 0 END;
    v_refunded BIGINT := CASE WHEN NEW.kind = 'refund' THEN NEW.amount ELSE 0 END;
    v_granted  BIGINT := CASE WHEN NEW.kind = 'grant' THEN NEW.amount ELSE 0 END;
    v_adjusted BIGINT := CASE WHEN NEW.kind = 'adjustment' THEN NEW.amount ELSE 0 END;
    v_calls    BIGINT := CASE WHEN NEW.kind = 'debit' THEN 1 ELSE 0 END;
BEGIN
    INSERT INTO usage_daily AS u (day, service, shard, spent, refunded, granted, adjusted, calls)
    VALUES (v_day, v_service, pg_backend_pid() % 64, v_spent, v_refunded, v_granted, v_adjusted,
            v_calls)
    ON CONFLICT (day, service, shard) DO UPDATE SET
        spent = u.spent + excluded.spent, refunded = u.refunded + excluded.refunded,
        granted = u.granted + excluded.granted, adjusted = u.adjusted + excluded.adjusted,
        calls = u.calls + excluded.calls;
    INSERT INTO usage_daily_users AS u
        (day, user_id, service, spent, refunded, granted, adjusted, calls)
    VALUES (v_day, NEW.user_id, v_service, v_spent, v_refunded, v_granted, v_adjusted, v_calls)
    ON CONFLICT (day, user_id, service) DO UPDATE SET
        spent = u.spent + excluded.spent, refunded = u.refunded + excluded.refunded,
        granted = u.granted + excluded.granted, adjusted = u.adjusted + excluded.adjusted,
        calls = u.calls + excluded.calls;
    INSERT INTO usage_monthly_users AS u
        (month, user_id, spent, refunded, granted, adjusted, calls)
    VALUES (v_month, NEW.user_id, v_spent, v_refunded, v_granted, v_adjusted, v_calls)
    ON CONFLICT (month, user_id) DO UPDATE SET
        spent = u.spent + excluded.spent, refunded = u.refunded + excluded.refunded,
        granted = u.granted + excluded.granted, adjusted = u.adjusted + excluded.adjusted,
        calls = u.calls + excluded.calls;
    RETURN NULL;
END
$$;

-- Creating the trigger locks out writers of credit_transactions until this migration commits, so
-- the backfill below sees every row written before it and the trigger every row after.
LOCK TABLE credit_transactions IN SHARE ROW EXCLUSIVE MODE;

CREATE TRIGGER credit_transactions_usage AFTER INSERT ON credit_transactions
    FOR EACH ROW WHEN (NEW.kind IN ('debit', 'refund', 'grant', 'adjustment'))
    EXECUTE FUNCTION usage_rollup();

-- The rows written before this migration.
CREATE TEMPORARY TABLE usage_backfill ON COMMIT DROP AS
SELECT (created_at AT TIME ZONE 'UTC')::date AS day, user_id, coalesce(service, '') AS service,
       sum(CASE WHEN kind = 'debit' THEN -amount ELSE 0 END) AS spent,
       sum(CASE WHEN kind = 'refund' THEN amount ELSE 0 END) AS refunded,
       sum(CASE WHEN kind = 'grant' THEN amount ELSE 0 END) AS granted,
       sum(CASE WHEN kind = 'adjustment' THEN amount ELSE 0 END) AS adjusted,
       count(*) FILTER (WHERE kind = 'debit') AS calls
FROM credit_transactions
WHERE kind IN ('debit', 'refund', 'grant', 'adjustment')
GROUP BY 1, 2, 3;

INSERT INTO usage_daily (day, service, shard, spent, refunded, granted, adjusted, calls)
SELECT day, service, 0, sum(spent), sum(refunded), sum(granted), sum(adjusted), sum(calls)
FROM usage_backfill GROUP BY day, service;

INSERT INTO usage_daily_users (day, user_id, service, spent, refunded, granted, adjusted, calls)
SELECT day, user_id, service, spent, refunded, granted, adjusted, calls FROM usage_backfill;

INSERT INTO usage_monthly_users (month, user_id, spent, refunded, granted, adjusted, calls)
SELECT day - (extract(day FROM day)::int - 1), user_id, sum(spent), sum(refunded), sum(granted),
       sum(adjusted), sum(calls)
FROM usage_backfill GROUP BY 1, 2;
