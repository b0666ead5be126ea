-- Low-balance alerts and signed outbound webhooks: the embedded engine's twin of
-- migrations/postgres/0014_webhooks.sql, which says what each part is for. SQLite triggers cannot
-- change NEW, so the alert trigger runs AFTER the update and sets alert_state itself (its UPDATE
-- names no balance column, so it starts no trigger). Timestamps are RFC 3339 text in UTC.

ALTER TABLE credit_accounts ADD COLUMN low_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE credit_accounts ADD COLUMN last_grant INTEGER NOT NULL DEFAULT 0;
ALTER TABLE credit_accounts ADD COLUMN alert_credits INTEGER CHECK (alert_credits >= 0);
ALTER TABLE credit_accounts ADD COLUMN alert_percent INTEGER CHECK (alert_percent BETWEEN 1 AND 100);
ALTER TABLE credit_accounts ADD COLUMN alert_email INTEGER NOT NULL DEFAULT 0;
ALTER TABLE credit_accounts ADD COLUMN alert_state INTEGER NOT NULL DEFAULT 0 CHECK (alert_state BETWEEN 0 AND 2);

CREATE TABLE alert_defaults (
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    low_balance_percent  INTEGER NOT NULL CHECK (low_balance_percent BETWEEN 0 AND 100)
);
INSERT INTO alert_defaults (id, low_balance_percent) VALUES (1, 20);

UPDATE credit_accounts SET
    last_grant = coalesce((SELECT t.amount FROM credit_transactions t
                           WHERE t.user_id = credit_accounts.user_id AND t.kind = 'grant'
                           ORDER BY t.seq DESC LIMIT 1), 0);
UPDATE credit_accounts SET low_at = last_grant * 20 / 100;
UPDATE credit_accounts SET alert_state = CASE WHEN balance - held <= 0 THEN 2
                                              WHEN balance - held <= low_at THEN 1 ELSE 0 END;

CREATE TABLE webhook_endpoints (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    events      TEXT NOT NULL,
    secret      TEXT NOT NULL,
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL
);

CREATE TABLE webhook_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    user_id     TEXT,
    data        TEXT NOT NULL,
    email       INTEGER NOT NULL DEFAULT 0,
    fanned_out  INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL
);
CREATE INDEX webhook_events_pending ON webhook_events (seq) WHERE fanned_out = 0;

CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         TEXT NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    endpoint_id      TEXT REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    channel          TEXT NOT NULL CHECK (channel IN ('webhook', 'email')),
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    last_attempt_at  TEXT,
    last_status      INTEGER,
    last_error       TEXT,
    created_at       TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (channel, next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);

-- Whether anyone listens for a type is written out in each trigger (SQLite has no functions).
CREATE TRIGGER credit_accounts_alerts_down AFTER UPDATE OF balance, held ON credit_accounts
FOR EACH ROW WHEN NEW.balance - NEW.held < OLD.balance - OLD.held
    AND (CASE WHEN NEW.balance - NEW.held <= 0 THEN 2
              WHEN NEW.balance - NEW.held <= NEW.low_at THEN 1 ELSE 0 END) > OLD.alert_state
BEGIN
    INSERT INTO webhook_events (id, type, user_id, data, email, created_at)
    SELECT 'msg_' || lower(hex(randomblob(16))), 'credits.low', NEW.user_id,
           json_object('user_id', NEW.user_id, 'balance', NEW.balance, 'held', NEW.held,
                       'available', NEW.balance - NEW.held, 'threshold', NEW.low_at,
                       'refused', json('false')),
           NEW.alert_email, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE OLD.alert_state < 1 AND NEW.low_at > 0 AND NEW.balance - NEW.held <= NEW.low_at
      AND (NEW.alert_email OR EXISTS (SELECT 1 FROM webhook_endpoints
                                      WHERE enabled AND events LIKE '%,credits.low,%'));
    INSERT INTO webhook_events (id, type, user_id, data, email, created_at)
    SELECT 'msg_' || lower(hex(randomblob(16))), 'credits.depleted', NEW.user_id,
           json_object('user_id', NEW.user_id, 'balance', NEW.balance, 'held', NEW.held,
                       'available', NEW.balance - NEW.held, 'threshold', NEW.low_at,
                       'refused', json('false')),
           NEW.alert_email, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE NEW.balance - NEW.held <= 0
      AND (NEW.alert_email OR EXISTS (SELECT 1 FROM webhook_endpoints
                                      WHERE enabled AND events LIKE '%,credits.depleted,%'));
    UPDATE credit_accounts SET alert_state = CASE WHEN NEW.balance - NEW.held <= 0 THEN 2 ELSE 1 END
    WHERE user_id = NEW.user_id;
END;

CREATE TRIGGER credit_accounts_alerts_up AFTER UPDATE OF balance, held ON credit_accounts
FOR EACH ROW WHEN NEW.balance - NEW.held > OLD.balance - OLD.held
    AND (CASE WHEN NEW.balance - NEW.held <= 0 THEN 2
              WHEN NEW.balance - NEW.held <= NEW.low_at THEN 1 ELSE 0 END) < OLD.alert_state
BEGIN
    UPDATE credit_accounts SET alert_state =
        CASE WHEN NEW.balance - NEW.held <= 0 THEN 2 WHEN NEW.balance - NEW.held <= NEW.low_at THEN 1 ELSE 0 END
    WHERE user_id = NEW.user_id;
END;

CREATE TRIGGER credit_transactions_granted AFTER INSERT ON credit_transactions
FOR EACH ROW WHEN NEW.kind = 'grant'
BEGIN
    UPDATE credit_accounts SET last_grant = NEW.amount,
        low_at = coalesce(alert_credits, NEW.amount * coalesce(alert_percent,
            (SELECT low_balance_percent FROM alert_defaults WHERE id = 1), 20) / 100)
    WHERE user_id = NEW.user_id;
    UPDATE credit_accounts SET alert_state = min(alert_state,
        CASE WHEN balance - held <= 0 THEN 2 WHEN balance - held <= low_at THEN 1 ELSE 0 END)
    WHERE user_id = NEW.user_id;
    INSERT INTO webhook_events (id, type, user_id, data, created_at)
    SELECT 'msg_' || lower(hex(randomblob(16))), 'credits.granted', NEW.user_id,
           json_object('user_id', NEW.user_id, 'transaction_id', NEW.id, 'amount', NEW.amount,
                       'balance', NEW.balance_after, 'reason', NEW.reason),
           strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled AND events LIKE '%,credits.granted,%');
END;

CREATE TRIGGER credit_transactions_refunded AFTER INSERT ON credit_transactions
FOR EACH ROW WHEN NEW.kind = 'refund'
BEGIN
    INSERT INTO webhook_events (id, type, user_id, data, created_at)
    SELECT 'msg_' || lower(hex(randomblob(16))), 'credits.refunded', NEW.user_id,
           json_object('user_id', NEW.user_id, 'transaction_id', NEW.id,
                       'refund_of', NEW.refund_of, 'amount', NEW.amount,
                       'balance', NEW.balance_after, 'reason', NEW.reason),
           strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled AND events LIKE '%,credits.refunded,%');
END;

CREATE TRIGGER payments_succeeded AFTER INSERT ON payments
BEGIN
    INSERT INTO webhook_events (id, type, user_id, data, created_at)
    SELECT 'msg_' || lower(hex(randomblob(16))), 'payment.succeeded', NEW.user_id,
           json_object('user_id', NEW.user_id, 'checkout_session_id', NEW.checkout_session_id,
                       'credits', NEW.credits, 'amount_total', NEW.amount_total,
                       'currency', NEW.currency, 'transaction_id', NEW.transaction_id),
           strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled AND events LIKE '%,payment.succeeded,%');
END;
