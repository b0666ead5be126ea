-- Grants with an end date and a priority (promotional credits).
--
-- A grant row holds what is left of one grant (remaining). The credits of an account in no grant
-- row are its base: like a grant of priority 50 that never expires and is older than everything.
-- Plain grants and top-ups add to the base and write no row, so an account without grant rows
-- (granted = 0) keeps its one-statement debit. Spending takes credits by priority (lower
-- first), then the earliest end date (none last), then the oldest; credit_grant_spends records
-- what each debit took from where, so a refund gives it back to the same grants. At its end date
-- what is left of a grant leaves the balance as an 'expire' transaction.

ALTER TABLE credit_transactions DROP CONSTRAINT credit_transactions_kind_check;
ALTER TABLE credit_transactions ADD CONSTRAINT credit_transactions_kind_check
    CHECK (kind IN ('debit', 'refund', 'grant', 'adjustment', 'expire'));

-- The sum of the account's grant rows' remaining credits: never more than the balance.
ALTER TABLE credit_accounts ADD COLUMN granted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE credit_accounts ADD CONSTRAINT credit_accounts_granted_check
    CHECK (granted >= 0 AND granted <= balance);

CREATE TABLE credit_grants (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL,
    user_id         UUID NOT NULL REFERENCES credit_accounts (user_id) ON DELETE CASCADE,
    transaction_id  TEXT NOT NULL,
    amount          BIGINT NOT NULL,
    remaining       BIGINT NOT NULL,
    priority        INTEGER NOT NULL,
    expires_at      TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- When expiry took the last of it.
    expired_at      TIMESTAMPTZ,
    CONSTRAINT credit_grants_id_key UNIQUE (id),
    CONSTRAINT credit_grants_amount_check CHECK (amount > 0),
    CONSTRAINT credit_grants_remaining_check CHECK (remaining >= 0 AND remaining <= amount),
    CONSTRAINT credit_grants_priority_check CHECK (priority BETWEEN 0 AND 100)
);

-- An account's grants that can be spent, and the ones to sweep at their end date.
CREATE INDEX credit_grants_live ON credit_grants (user_id) WHERE remaining > 0;
CREATE INDEX credit_grants_due ON credit_grants (expires_at)
    WHERE remaining > 0 AND expires_at IS NOT NULL;

-- What one debit (or downward adjustment) of an account with grants took from each source, in
-- spending order; grant_id NULL is the base. Refunds give back in reverse order.
CREATE TABLE credit_grant_spends (
    transaction_id  TEXT NOT NULL,
    ordinal         INTEGER NOT NULL,
    user_id         UUID NOT NULL REFERENCES credit_accounts (user_id) ON DELETE CASCADE,
    grant_id        TEXT,
    amount          BIGINT NOT NULL,
    refunded        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (transaction_id, ordinal),
    CONSTRAINT credit_grant_spends_amount_check CHECK (amount > 0),
    CONSTRAINT credit_grant_spends_refunded_check CHECK (refunded >= 0 AND refunded <= amount)
);
