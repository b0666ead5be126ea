-- Nothing for PostgreSQL: with it, sessions and counters live in Redis. This keeps the two
-- engines' migration numbers in step.
SELECT 1;
