-- OAuth 2.1: the apps (clients) that may ask users for access, and the access users gave them.
-- A confidential client's secret is kept only as its SHA-256 hash. A client id that is an https
-- URL (a Client ID Metadata Document) is not stored here: its document is fetched and cached.
CREATE TABLE oauth_clients (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    redirect_uris  TEXT NOT NULL,            -- one per line
    secret_hash    TEXT,                     -- NULL: a public client (PKCE required)
    scopes         TEXT NOT NULL,            -- space-separated
    registration   TEXT NOT NULL,            -- 'operator' or 'dynamic'
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at     TIMESTAMPTZ
);

-- A user's consent to one client: its scopes and an optional daily spending cap. One live grant a
-- user and client; disconnecting sets revoked_at, and the tokens issued under it stop at once.
CREATE TABLE oauth_grants (
    id            TEXT PRIMARY KEY,
    user_id       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id     TEXT NOT NULL,
    client_name   TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    daily_cap     BIGINT CHECK (daily_cap IS NULL OR daily_cap >= 0),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);
CREATE UNIQUE INDEX oauth_grants_live ON oauth_grants (user_id, client_id) WHERE revoked_at IS NULL;

-- What an app spent of a user's credits on one UTC day, for the grant's daily cap; written in the
-- same transaction as the debit or capture it counts.
CREATE TABLE oauth_app_spend (
    grant_id  TEXT NOT NULL,
    day       DATE NOT NULL,
    spent     BIGINT NOT NULL CHECK (spent >= 0),
    PRIMARY KEY (grant_id, day)
);

-- A hold an app placed counts against its grant's cap on the day it was placed, until released.
ALTER TABLE credit_holds ADD COLUMN grant_id TEXT;
ALTER TABLE credit_holds ADD COLUMN spend_day DATE;
