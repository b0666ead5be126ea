-- Credit holds: a two-phase debit. A hold sets credits aside (credit_accounts.held) until it is
-- captured (becomes a debit transaction), released, or expires. The available balance is
-- balance - held, and never below zero.

ALTER TABLE credit_accounts ADD COLUMN held BIGINT NOT NULL DEFAULT 0;
ALTER TABLE credit_accounts ADD CONSTRAINT credit_accounts_held_check CHECK (held >= 0 AND held <= balance);

CREATE TABLE credit_holds (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL,
    user_id         UUID NOT NULL REFERENCES credit_accounts (user_id) ON DELETE CASCADE,
    service         TEXT NOT NULL,
    amount          BIGINT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'held',
    captured        BIGINT,
    transaction_id  TEXT,
    metadata        JSONB,
    request_id      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at      TIMESTAMPTZ NOT NULL,
    settled_at      TIMESTAMPTZ,
    CONSTRAINT credit_holds_id_key UNIQUE (id),
    CONSTRAINT credit_holds_amount_check CHECK (amount > 0),
    CONSTRAINT credit_holds_status_check CHECK (status IN ('held', 'captured', 'released', 'expired')),
    CONSTRAINT credit_holds_captured_check CHECK (captured IS NULL OR (captured >= 0 AND captured <= amount))
);

-- The live holds of an account, and the ones to sweep when they expire.
CREATE INDEX credit_holds_live ON credit_holds (user_id) WHERE status = 'held';
CREATE INDEX credit_holds_expiry ON credit_holds (expires_at) WHERE status = 'held';
