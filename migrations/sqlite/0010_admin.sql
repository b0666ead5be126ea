-- Operators' actions on accounts, and the record of every one of them.
--
-- A disabled user signs in nowhere; their account is frozen in the ledger (credit_accounts.frozen),
-- so that nothing acting for them (a service key naming them, one of their holds) moves a credit.
-- A deleted user keeps their id and ledger rows (the invariant and the audit still hold); their
-- personal data is replaced (users.deleted_at says when).
ALTER TABLE users ADD COLUMN disabled_at TEXT;
ALTER TABLE users ADD COLUMN deleted_at TEXT;
ALTER TABLE credit_accounts ADD COLUMN frozen INTEGER NOT NULL DEFAULT 0;

-- Every admin action: who did it, what, to what, the state before and after, and the request.
-- Written in the same database transaction as the change it records.
CREATE TABLE admin_audit (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    before      TEXT,
    after       TEXT,
    reason      TEXT,
    request_id  TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX admin_audit_target ON admin_audit (target, seq);
CREATE INDEX admin_audit_actor ON admin_audit (actor, seq);
CREATE INDEX admin_audit_action ON admin_audit (action, seq);

INSERT INTO permissions (name, description) VALUES
    ('audit:read', 'Read the audit log of admin actions');
INSERT INTO role_permissions (role, permission) VALUES ('admin', 'audit:read');

-- When each service key was last presented (to within the gateway's key cache interval).
ALTER TABLE service_keys ADD COLUMN last_used_at TEXT;

INSERT INTO permissions (name, description) VALUES
    ('keys:manage', 'Create, list and revoke service keys');
INSERT INTO role_permissions (role, permission) VALUES ('admin', 'keys:manage');
