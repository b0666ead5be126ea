-- Users, roles and the credit ledger.

CREATE TABLE users (
    id          UUID PRIMARY KEY,
    email       TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE roles (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL
);

CREATE TABLE permissions (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL
);

CREATE TABLE role_permissions (
    role        TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    permission  TEXT NOT NULL REFERENCES permissions (name) ON DELETE CASCADE,
    PRIMARY KEY (role, permission)
);

CREATE TABLE user_roles (
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role)
);

INSERT INTO roles (name, description) VALUES
    ('admin', 'Operators: every permission'),
    ('user', 'End users: check and spend their own credits');

INSERT INTO permissions (name, description) VALUES
    ('credits:check', 'Read a balance and check it against a cost'),
    ('credits:deduct', 'Debit credits'),
    ('credits:refund', 'Reverse all or part of a debit'),
    ('credits:grant', 'Add credits to an account');

INSERT INTO role_permissions (role, permission) VALUES
    ('admin', 'credits:check'), ('admin', 'credits:deduct'),
    ('admin', 'credits:refund'), ('admin', 'credits:grant'),
    ('user', 'credits:check'), ('user', 'credits:deduct');

CREATE TABLE credit_accounts (
    user_id     UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    balance     BIGINT NOT NULL DEFAULT 0,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT credit_accounts_balance_nonnegative CHECK (balance >= 0),
    CONSTRAINT credit_accounts_balance_max CHECK (balance <= 1000000000000000)
);

-- Every change of a balance is one row here, written in the same database transaction as the
-- change; the balance always equals the sum of its account's amounts.
CREATE TABLE credit_transactions (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL,
    user_id         UUID NOT NULL REFERENCES credit_accounts (user_id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    service         TEXT,
    amount          BIGINT NOT NULL,
    balance_before  BIGINT NOT NULL,
    balance_after   BIGINT NOT NULL,
    -- What of a debit can still be refunded; 0 for every other kind.
    refundable      BIGINT NOT NULL DEFAULT 0,
    refund_of       TEXT,
    reason          TEXT,
    metadata        JSONB,
    idempotency_key TEXT,
    request_id      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT credit_transactions_id_key UNIQUE (id),
    CONSTRAINT credit_transactions_kind_check CHECK (kind IN ('debit', 'refund', 'grant', 'adjustment')),
    CONSTRAINT credit_transactions_refundable_check CHECK (refundable >= 0 AND refundable <= greatest(-amount, 0)),
    CONSTRAINT credit_transactions_arithmetic_check CHECK (balance_after = balance_before + amount)
);

CREATE INDEX credit_transactions_user_seq ON credit_transactions (user_id, seq DESC);

-- Answers to requests that carried an Idempotency-Key, kept at least 24 hours.
CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    outcome      JSONB,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
