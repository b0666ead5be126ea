-- Sign-in: a user's Google subject and password hash.
ALTER TABLE users ADD COLUMN google_subject TEXT;
ALTER TABLE users ADD COLUMN password_hash TEXT;
ALTER TABLE users ADD CONSTRAINT users_google_subject_key UNIQUE (google_subject);
