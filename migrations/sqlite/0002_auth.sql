-- Sign-in: a user's Google subject and password hash; sessions and one-time login states for
-- the embedded mode (Redis holds them in production).
ALTER TABLE users ADD COLUMN google_subject TEXT;
ALTER TABLE users ADD COLUMN password_hash TEXT;
CREATE UNIQUE INDEX users_google_subject_key ON users (google_subject);

CREATE TABLE sessions (
    token_hash   TEXT PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    user_id      TEXT NOT NULL,
    record       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
CREATE INDEX sessions_user_created ON sessions (user_id, created_at);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE login_states (
    key          TEXT PRIMARY KEY,
    payload      TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
