-- Email verification: when the user's address was proven (their verification link was followed,
-- or Google vouched for it). Accounts made before this by Google or by an operator count as
-- verified; password registrations wait for their link, which also brings the new-user credits.
ALTER TABLE users ADD COLUMN email_verified_at TEXT;
UPDATE users SET email_verified_at = created_at WHERE password_hash IS NULL OR google_subject IS NOT NULL;
