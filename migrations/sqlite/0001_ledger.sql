-- Users, roles and the credit ledger (the embedded engine's twin of migrations/postgres).

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    email       TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
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
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
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
    user_id     TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    balance     INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL,
    CONSTRAINT credit_accounts_balance_nonnegative CHECK (balance >= 0),
    CONSTRAINT credit_accounts_balance_max CHECK (balance <= 1000000000000000)
);

CREATE TABLE credit_transactions (
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
    CONSTRAINT credit_transactions_kind_check CHECK (kind IN ('debit', 'refund', 'grant', 'adjustment')),
    CONSTRAINT credit_transactions_refundable_check CHECK (refundable >= 0 AND refundable <= max(-amount, 0)),
    CONSTRAINT credit_transactions_arithmetic_check CHECK (balance_after = balance_before + amount)
);

CREATE INDEX credit_transactions_user_seq ON credit_transactions (user_id, seq DESC);

CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    outcome      TEXT,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
