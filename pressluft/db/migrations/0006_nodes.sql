-- Nodes: the servers Pressluft provisions and hosts sites on. `nodes` is the
-- projection of node.* events (see specs/nodes.md for the state machine).
CREATE TABLE nodes (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL
        CHECK (length(name) BETWEEN 1 AND 63 AND name GLOB '[a-z0-9]*' AND name NOT GLOB '*-'
               AND name NOT GLOB '*[^a-z0-9-]*'),
    provider          TEXT NOT NULL CHECK (provider IN ('ssh', 'docker')),
    host              TEXT NOT NULL CHECK (length(host) BETWEEN 1 AND 253),
    ssh_port          INTEGER NOT NULL CHECK (ssh_port BETWEEN 1 AND 65535),
    ssh_user          TEXT NOT NULL CHECK (length(ssh_user) BETWEEN 1 AND 32),
    public_ip         TEXT,
    status            TEXT NOT NULL CHECK (status IN
        ('pending', 'provisioning', 'active', 'unreachable', 'failed', 'decommissioned')),
    -- The node's SSH key: the private half is a sealed secret (only its id here;
    -- no foreign key, like users.password_ref: a replay rebuilds rows whose secret
    -- was destroyed later).
    key_secret_id     TEXT,
    public_key        TEXT NOT NULL CHECK (public_key GLOB 'ssh-ed25519 *'),
    -- The pinned host key (OpenSSH public key line) and its SHA256 fingerprint.
    host_key          TEXT,
    host_key_fingerprint TEXT,
    -- After an admin's re-pin: the only fingerprint the next contact may pin.
    host_key_expected TEXT CHECK (host_key_expected GLOB 'SHA256:*'),
    -- The newest readiness check.
    ready             INTEGER NOT NULL DEFAULT 0 CHECK (ready IN (0, 1)),
    reason_codes_json TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(reason_codes_json)),
    checked_at        TEXT,
    last_seen_at      TEXT,
    profile_revision  TEXT,
    decommissioned_at TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    state_version     INTEGER NOT NULL CHECK (state_version >= 1),
    CHECK ((host_key IS NULL) = (host_key_fingerprint IS NULL)),
    CHECK (host_key IS NULL OR host_key_expected IS NULL),
    CHECK ((status = 'decommissioned') = (decommissioned_at IS NOT NULL)),
    -- a decommissioned node keeps no key
    CHECK (status != 'decommissioned' OR key_secret_id IS NULL),
    CHECK (ready = 0 OR reason_codes_json = '[]')
) STRICT;

-- A name is taken while its node lives; a decommissioned node's name can be reused.
CREATE UNIQUE INDEX nodes_live_name ON nodes (name) WHERE status != 'decommissioned';
CREATE INDEX nodes_by_status ON nodes (status, created_at);
