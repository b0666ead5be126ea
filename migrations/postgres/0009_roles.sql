-- Roles that mean something for operators: support and finance beside admin, each a set of named
-- permissions checked on every operation that needs them (refund and grant today; the admin API
-- and console read the others).
INSERT INTO roles (name, description) VALUES
    ('support', 'Support: read users and their history, refund, end sessions'),
    ('finance', 'Finance: grant and refund credits, read usage');

INSERT INTO permissions (name, description) VALUES
    ('users:read', 'Read users, their balances and their history'),
    ('users:manage', 'Disable, enable and delete users, and set their roles'),
    ('sessions:revoke', 'End a user''s sessions'),
    ('usage:read', 'Read usage reports');

INSERT INTO role_permissions (role, permission) VALUES
    ('admin', 'users:read'), ('admin', 'users:manage'), ('admin', 'sessions:revoke'),
    ('admin', 'usage:read'),
    ('support', 'users:read'), ('support', 'credits:refund'), ('support', 'sessions:revoke'),
    ('finance', 'users:read'), ('finance', 'credits:grant'), ('finance', 'credits:refund'),
    ('finance', 'usage:read');
