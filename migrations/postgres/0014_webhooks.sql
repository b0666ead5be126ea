-- Low-balance alerts and signed outbound webhooks (issue 14 §3 and the alert setting of §4).
--
-- Events go to an outbox (webhook_events) in the same database transaction as the ledger change
-- that causes them, written by triggers, so every writer, present and future, is covered (as the
-- usage rollups of 0011 are): a balance crossing a threshold, a grant, a refund, a paid top-up.
-- An event row is written only if some enabled endpoint subscribes to its type, or (credits.low
-- and credits.depleted) the user asked for an email alert. The core's dispatcher fans each event
-- out to one delivery per subscribed endpoint (and one email), then delivers them with retries.
--
-- The alerts watch the available balance, balance - held: what the account can still spend.
--   credits.low       it goes from above the account's threshold (low_at) to at or below it;
--   credits.depleted  it reaches 0, or a debit or reservation is refused for want of credits.
-- Each fires once: alert_state remembers what has fired (0 nothing, 1 low, 2 low and depleted)
-- and only falls again (re-arms) when the available balance rises above the level.
-- A plain debit that crosses nothing runs no trigger function: the trigger's WHEN compares the
-- row's old and new values only.

ALTER TABLE credit_accounts
    -- The threshold in force, in credits: alert_credits, else alert_percent (else the default)
    -- of last_grant. 0: no credits.low.
    ADD COLUMN low_at BIGINT NOT NULL DEFAULT 0,
    -- The last grant or top-up, for a threshold in percent.
    ADD COLUMN last_grant BIGINT NOT NULL DEFAULT 0,
    -- The user's own threshold: in credits, or in percent of the last grant; both NULL: the
    -- default percent (alert_defaults).
    ADD COLUMN alert_credits BIGINT CHECK (alert_credits >= 0),
    ADD COLUMN alert_percent SMALLINT CHECK (alert_percent BETWEEN 1 AND 100),
    -- Whether the user wants an email when credits.low or credits.depleted fires.
    ADD COLUMN alert_email BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN alert_state SMALLINT NOT NULL DEFAULT 0 CHECK (alert_state BETWEEN 0 AND 2);

-- LOW_BALANCE_PERCENT, as the core service last started with it.
CREATE TABLE alert_defaults (
    id                   SMALLINT PRIMARY KEY CHECK (id = 1),
    low_balance_percent  SMALLINT NOT NULL CHECK (low_balance_percent BETWEEN 0 AND 100)
);
INSERT INTO alert_defaults (id, low_balance_percent) VALUES (1, 20);

UPDATE credit_accounts a SET last_grant = g.amount, low_at = g.amount * 20 / 100
FROM (SELECT DISTINCT ON (user_id) user_id, amount FROM credit_transactions
      WHERE kind = 'grant' ORDER BY user_id, seq DESC) g
WHERE a.user_id = g.user_id;
UPDATE credit_accounts SET alert_state = CASE WHEN balance - held <= 0 THEN 2
                                              WHEN balance - held <= low_at THEN 1 ELSE 0 END;

-- Where events go. The secret signs (HMAC needs it as it is, so it is kept, not hashed).
CREATE TABLE webhook_endpoints (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    -- The event types, comma-separated with a comma at each end: ',credits.low,payment.succeeded,'
    events      TEXT NOT NULL,
    secret      TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL DEFAULT true,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The outbox.
CREATE TABLE webhook_events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    user_id     UUID,
    data        JSONB NOT NULL,
    -- Whether the user's email alert was on when it fired.
    email       BOOLEAN NOT NULL DEFAULT false,
    fanned_out  BOOLEAN NOT NULL DEFAULT false,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhook_events_pending ON webhook_events (seq) WHERE NOT fanned_out;

-- One event to one endpoint (channel 'webhook'), or to the user's mailbox ('email').
CREATE TABLE webhook_deliveries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         TEXT NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    endpoint_id      TEXT REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    channel          TEXT NOT NULL CHECK (channel IN ('webhook', 'email')),
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_attempt_at  TIMESTAMPTZ,
    last_status      INTEGER,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (channel, next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);

-- Writes an event if anyone listens for it.
CREATE FUNCTION webhook_event(p_type TEXT, p_user UUID, p_data JSONB, p_email BOOLEAN)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO webhook_events (id, type, user_id, data, email)
    SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''), p_type, p_user, p_data, p_email
    WHERE p_email OR EXISTS (SELECT 1 FROM webhook_endpoints
                             WHERE enabled AND events LIKE '%,' || p_type || ',%')
$$;

-- A balance that moves across a level: fire what it crossed going down; re-arm going up.
CREATE FUNCTION credit_alerts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_available BIGINT := NEW.balance - NEW.held;
    v_level SMALLINT := CASE WHEN v_available <= 0 THEN 2
                             WHEN v_available <= NEW.low_at THEN 1 ELSE 0 END;
    v_data JSONB := jsonb_build_object('user_id', NEW.user_id, 'balance', NEW.balance,
                                       'held', NEW.held, 'available', v_available,
                                       'threshold', NEW.low_at, 'refused', false);
BEGIN
    IF v_available > OLD.balance - OLD.held THEN
        NEW.alert_state := least(OLD.alert_state, v_level);
        RETURN NEW;
    END IF;
    IF OLD.alert_state < 1 AND v_level >= 1 AND NEW.low_at > 0 THEN
        PERFORM webhook_event('credits.low', NEW.user_id, v_data, NEW.alert_email);
    END IF;
    IF OLD.alert_state < 2 AND v_level = 2 THEN
        PERFORM webhook_event('credits.depleted', NEW.user_id, v_data, NEW.alert_email);
    END IF;
    NEW.alert_state := greatest(OLD.alert_state, v_level);
    RETURN NEW;
END
$$;

CREATE TRIGGER credit_accounts_alerts BEFORE UPDATE OF balance, held ON credit_accounts
    FOR EACH ROW WHEN (
        (CASE WHEN NEW.balance - NEW.held <= 0 THEN 2
              WHEN NEW.balance - NEW.held <= NEW.low_at THEN 1 ELSE 0 END) <> OLD.alert_state
        AND NEW.balance - NEW.held <> OLD.balance - OLD.held)
    EXECUTE FUNCTION credit_alerts();

-- Grants (a top-up is one) set the threshold in percent; grants and refunds are events.
CREATE FUNCTION credit_transaction_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'grant' THEN
        UPDATE credit_accounts SET last_grant = NEW.amount,
            low_at = coalesce(alert_credits, NEW.amount * coalesce(alert_percent,
                (SELECT low_balance_percent FROM alert_defaults WHERE id = 1), 20) / 100)
        WHERE user_id = NEW.user_id;
        UPDATE credit_accounts SET alert_state = least(alert_state,
            CASE WHEN balance - held <= 0 THEN 2 WHEN balance - held <= low_at THEN 1 ELSE 0 END)
        WHERE user_id = NEW.user_id;
        PERFORM webhook_event('credits.granted', NEW.user_id, jsonb_build_object(
            'user_id', NEW.user_id, 'transaction_id', NEW.id, 'amount', NEW.amount,
            'balance', NEW.balance_after, 'reason', NEW.reason), false);
    ELSIF NEW.kind = 'refund' THEN
        PERFORM webhook_event('credits.refunded', NEW.user_id, jsonb_build_object(
            'user_id', NEW.user_id, 'transaction_id', NEW.id, 'refund_of', NEW.refund_of,
            'amount', NEW.amount, 'balance', NEW.balance_after, 'reason', NEW.reason), false);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER credit_transactions_events AFTER INSERT ON credit_transactions
    FOR EACH ROW WHEN (NEW.kind IN ('grant', 'refund')) EXECUTE FUNCTION credit_transaction_events();

CREATE FUNCTION payment_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM webhook_event('payment.succeeded', NEW.user_id, jsonb_build_object(
        'user_id', NEW.user_id, 'checkout_session_id', NEW.checkout_session_id,
        'credits', NEW.credits, 'amount_total', NEW.amount_total, 'currency', NEW.currency,
        'transaction_id', NEW.transaction_id), false);
    RETURN NULL;
END
$$;

CREATE TRIGGER payments_events AFTER INSERT ON payments
    FOR EACH ROW EXECUTE FUNCTION payment_events();

-- A debit or reservation refused for want of credits: credits.depleted, once until re-armed.
CREATE FUNCTION credit_refused(p_user UUID) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_account credit_accounts;
BEGIN
    UPDATE credit_accounts SET alert_state = 2
    WHERE user_id = p_user AND alert_state < 2 AND NOT frozen
    RETURNING * INTO v_account;
    IF FOUND THEN
        PERFORM webhook_event('credits.depleted', p_user, jsonb_build_object(
            'user_id', p_user, 'balance', v_account.balance, 'held', v_account.held,
            'available', v_account.balance - v_account.held, 'threshold', v_account.low_at,
            'refused', true), v_account.alert_email);
    END IF;
END
$$;
