-- Service keys: credentials an operator gives to a server (such as the Sora2 GPT's backend).
-- Only a SHA-256 hash of each key is kept.
CREATE TABLE service_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    key_hash    TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ,
    CONSTRAINT service_keys_key_hash_key UNIQUE (key_hash)
);
