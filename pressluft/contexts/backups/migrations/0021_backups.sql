-- Backups (specs/backups.md): the storage target, each site's restic repository and
-- the backups. Projections of backup_target.*, backup_repository.* and backup.* events.

-- The one S3-compatible target of the control plane (id = 1), its secret key in the vault.
CREATE TABLE backup_target (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    endpoint          TEXT NOT NULL CHECK (endpoint GLOB 'http*://*'),
    region            TEXT NOT NULL,
    bucket            TEXT NOT NULL CHECK (length(bucket) BETWEEN 3 AND 63),
    prefix            TEXT NOT NULL,
    access_key_id     TEXT NOT NULL,
    secret_id         TEXT NOT NULL,
    verified_at       TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    state_version     INTEGER NOT NULL
) STRICT;

-- One restic repository per site (where, and its password in the vault).
CREATE TABLE backup_repositories (
    site_id           TEXT PRIMARY KEY,
    url               TEXT NOT NULL,
    secret_id         TEXT NOT NULL,
    created_at        TEXT NOT NULL
) STRICT;

CREATE TABLE backups (
    id                TEXT PRIMARY KEY,
    site_id           TEXT NOT NULL,
    environment_id    TEXT NOT NULL,
    node_id           TEXT NOT NULL,
    backup_scope      TEXT NOT NULL CHECK (backup_scope IN ('db', 'files', 'full')),
    reason            TEXT NOT NULL CHECK (reason IN
        ('manual', 'scheduled', 'pre_restore', 'pre_update', 'pre_promote', 'pre_import')),
    status            TEXT NOT NULL CHECK (status IN
        ('pending', 'running', 'completed', 'failed', 'expired')),
    storage_type      TEXT NOT NULL DEFAULT 's3' CHECK (storage_type = 's3'),
    -- The site's repository (restic URL) the objects are in.
    storage_path      TEXT,
    job_id            TEXT NOT NULL,
    retention_until   TEXT NOT NULL,
    -- SHA-256 of the manifest's objects list (set with completed).
    checksum          TEXT,
    size_bytes        INTEGER CHECK (size_bytes >= 0),
    -- What restic stored anew for it (deduplicated).
    added_bytes       INTEGER CHECK (added_bytes >= 0),
    manifest_json     TEXT,
    error_code        TEXT,
    error             TEXT,
    -- The last restore drill that proved it (and how long its restore took).
    verified_at       TEXT,
    restore_seconds   REAL,
    -- The last drill's failure (cleared by a passing one).
    verify_error      TEXT,
    created_at        TEXT NOT NULL,
    started_at        TEXT,
    completed_at      TEXT,
    expired_at        TEXT,
    updated_at        TEXT NOT NULL,
    state_version     INTEGER NOT NULL,
    -- completed only with its checksum, size and manifest (reference scenario 25).
    CHECK (status NOT IN ('completed', 'expired')
           OR (checksum IS NOT NULL AND size_bytes IS NOT NULL AND manifest_json IS NOT NULL
               AND completed_at IS NOT NULL))
) STRICT;
CREATE INDEX backups_by_environment ON backups (environment_id, created_at);
CREATE INDEX backups_by_site ON backups (site_id, created_at);
CREATE INDEX backups_by_status ON backups (status, retention_until);

-- An environment's backup schedule when it is not the default (production: every 24 h,
-- others: none); 0 = no scheduled backups. The scan (`backup_scan`) reads it.
CREATE TABLE backup_schedules (
    environment_id    TEXT PRIMARY KEY,
    every_hours       INTEGER NOT NULL CHECK (every_hours BETWEEN 0 AND 168),
    updated_at        TEXT NOT NULL,
    state_version     INTEGER NOT NULL
) STRICT;

-- The overdue alert of an environment: recorded once per last completed backup (or
-- none), so the operator sees it once until a backup completes again.
CREATE TABLE backup_alerts (
    environment_id    TEXT PRIMARY KEY,
    -- The completed backup the alert was about ('' for none yet).
    last_backup_id    TEXT NOT NULL,
    noticed_at        TEXT NOT NULL
) STRICT;

-- The recovery key (sealed in the vault): the password of the control plane's own
-- repository, exported once with the target as the recovery kit (id = 1).
CREATE TABLE recovery_kit (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    secret_id         TEXT NOT NULL,
    exported_at       TEXT NOT NULL,
    exports           INTEGER NOT NULL CHECK (exports >= 1)
) STRICT;

-- The control plane's own backups (its database and the vault's key, in
-- `{prefix}/control-plane`).
CREATE TABLE control_plane_backups (
    snapshot_id       TEXT PRIMARY KEY,
    job_id            TEXT NOT NULL,
    sha256            TEXT NOT NULL,
    size_bytes        INTEGER NOT NULL CHECK (size_bytes >= 0),
    events            INTEGER NOT NULL CHECK (events >= 0),
    created_at        TEXT NOT NULL
) STRICT;
