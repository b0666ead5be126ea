-- Windowed counters (failed sign-ins) for the embedded mode; Redis holds them in production.
CREATE TABLE counters (
    key          TEXT PRIMARY KEY,
    count        INTEGER NOT NULL,
    window_ends  TEXT NOT NULL
);
