-- Paid top-ups: one row per Stripe Checkout Session that granted credits, written in the same
-- database transaction as the grant. The session id is the key, so a redelivered or concurrent
-- event, or the second of 'completed' and 'async_payment_succeeded', grants nothing more.
CREATE TABLE payments (
    checkout_session_id  TEXT PRIMARY KEY,
    event_id             TEXT NOT NULL UNIQUE,
    user_id              TEXT NOT NULL REFERENCES users (id),
    credits              INTEGER NOT NULL CHECK (credits > 0),
    amount_total         INTEGER NOT NULL CHECK (amount_total >= 0),
    currency             TEXT NOT NULL,
    transaction_id       TEXT NOT NULL,
    created_at           TEXT NOT NULL
);
CREATE INDEX payments_user ON payments (user_id, created_at);
