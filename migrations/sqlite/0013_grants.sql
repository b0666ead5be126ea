-- Grants with an end date and a priority (the embedded engine's twin of
-- migrations/postgres/0013_grants.sql, which says how they work).
--
-- SQLite cannot change a CHECK constraint, so credit_transactions is rebuilt with 'expire' among
-- its kinds (this runs under the only writer). Its usage trigger and the view the trigger reads
-- go with it and are made again as they were.

DROP TRIGGER credit_transactions_usage;
DROP VIEW usage_entries;

CREATE TABLE credit_transactions_new (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL,
    user_id         TEXT NOT NULL REFERENCES credit_accounts (user_id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    service         TEXT,
    amount          INTEGER NOT NULL,
    balance_before  INTEGER NOT NULL,
    balance_after   INTEGER NOT NULL,
    refundable      INTEGER NOT NULL DEFAULT 0,
    refund_of       TEXT,
    reason          TEXT,
    metadata        TEXT,
    idempotency_key TEXT,
    request_id      TEXT,
    created_at      TEXT NOT NULL,
    CONSTRAINT credit_transactions_id_key UNIQUE (id),
    CONSTRAINT credit_transactions_kind_check CHECK (kind IN ('debit', 'refund', 'grant', 'adjustment', 'expire')),
    CONSTRAINT credit_transactions_refundable_check CHECK (refundable >= 0 AND refundable <= max(-amount, 0)),
    CONSTRAINT credit_transactions_arithmetic_check CHECK (balance_after = balance_before + amount)
);

INSERT INTO credit_transactions_new
    (seq, id, user_id, kind, service, amount, balance_before, balance_after, refundable,
     refund_of, reason, metadata, idempotency_key, request_id, created_at)
SELECT seq, id, user_id, kind, service, amount, balance_before, balance_after, refundable,
       refund_of, reason, metadata, idempotency_key, request_id, created_at
FROM credit_transactions;

DROP TABLE credit_transactions;
ALTER TABLE credit_transactions_new RENAME TO credit_transactions;
CREATE INDEX credit_transactions_user_seq ON credit_transactions (user_id, seq DESC);

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

ALTER TABLE credit_accounts ADD COLUMN granted INTEGER NOT NULL DEFAULT 0
    CHECK (granted >= 0 AND granted <= balance);

CREATE TABLE credit_grants (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL,
    user_id         TEXT NOT NULL REFERENCES credit_accounts (user_id) ON DELETE CASCADE,
    transaction_id  TEXT NOT NULL,
    amount          INTEGER NOT NULL,
    remaining       INTEGER NOT NULL,
    priority        INTEGER NOT NULL,
    expires_at      TEXT,
    created_at      TEXT NOT NULL,
    expired_at      TEXT,
    CONSTRAINT credit_grants_id_key UNIQUE (id),
    CONSTRAINT credit_grants_amount_check CHECK (amount > 0),
    CONSTRAINT credit_grants_remaining_check CHECK (remaining >= 0 AND remaining <= amount),
    CONSTRAINT credit_grants_priority_check CHECK (priority BETWEEN 0 AND 100)
);

CREATE INDEX credit_grants_live ON credit_grants (user_id) WHERE remaining > 0;
CREATE INDEX credit_grants_due ON credit_grants (expires_at)
    WHERE remaining > 0 AND expires_at IS NOT NULL;

CREATE TABLE credit_grant_spends (
    transaction_id  TEXT NOT NULL,
    ordinal         INTEGER NOT NULL,
    user_id         TEXT NOT NULL REFERENCES credit_accounts (user_id) ON DELETE CASCADE,
    grant_id        TEXT,
    amount          INTEGER NOT NULL,
    refunded        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (transaction_id, ordinal),
    CONSTRAINT credit_grant_spends_amount_check CHECK (amount > 0),
    CONSTRAINT credit_grant_spends_refunded_check CHECK (refunded >= 0 AND refunded <= amount)
);
