-- Access: users, login sessions, API tokens (projections of user.*, auth.*,
-- token.* events) and the audit log (a projection of every event).
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
    password_ref  TEXT NOT NULL,
    is_active     INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    state_version INTEGER NOT NULL CHECK (state_version >= 1)
) STRICT;

CREATE TABLE auth_sessions (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id),
    token_hash     TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    client_address TEXT,
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    ended_at       TEXT,
    ended_reason   TEXT CHECK (ended_reason IN ('logout', 'rotated', 'expired', 'password_changed')),
    CHECK ((ended_at IS NULL) = (ended_reason IS NULL))
) STRICT;

CREATE INDEX auth_sessions_open ON auth_sessions (expires_at) WHERE ended_at IS NULL;

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    token_hash TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    prefix     TEXT NOT NULL,
    scopes     TEXT NOT NULL CHECK (json_valid(scopes) AND json_type(scopes) = 'array'),
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
) STRICT;

CREATE TABLE audit_log (
    seq            INTEGER PRIMARY KEY,
    recorded_at    TEXT NOT NULL,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    resource_id    TEXT,
    result         TEXT NOT NULL CHECK (result IN ('succeeded', 'failed', 'accepted', 'retrying')),
    correlation_id TEXT
) STRICT;

CREATE INDEX audit_by_actor ON audit_log (actor, seq);
CREATE INDEX audit_by_resource ON audit_log (resource_type, resource_id, seq);
CREATE INDEX audit_by_time ON audit_log (recorded_at);
