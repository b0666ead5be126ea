-- Credit holds: a two-phase debit. A hold sets credits aside (credit_accounts.held) until it is
-- captured (becomes a debit transaction), released, or expires. The available balance is
-- balance - held, and never below zero.

ALTER TABLE credit_accounts ADD COLUMN held INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0 AND held <= balance);

CREATE TABLE credit_holds (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL,
    user_id         TEXT NOT NULL REFERENCES credit_accounts (user_id) ON DELETE CASCADE,
    service         TEXT NOT NULL,
    amount          INTEGER NOT NULL,
    status          TEXT NOT NULL DEFAULT 'held',
    captured        INTEGER,
    transaction_id  TEXT,
    metadata        TEXT,
    request_id      TEXT,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    settled_at      TEXT,
    CONSTRAINT credit_holds_id_key UNIQUE (id),
    CONSTRAINT credit_holds_amount_check CHECK (amount > 0),
    CONSTRAINT credit_holds_status_check CHECK (status IN ('held', 'captured', 'released', 'expired')),
    CONSTRAINT credit_holds_captured_check CHECK (captured IS NULL OR (captured >= 0 AND captured <= amount))
);

CREATE INDEX credit_holds_live ON credit_holds (user_id) WHERE status = 'held';
CREATE INDEX credit_holds_expiry ON credit_holds (expires_at) WHERE status = 'held';
