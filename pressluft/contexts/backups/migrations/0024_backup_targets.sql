-- Backup targets per site (B11) and repositories that keep the target they were made
-- in (B12): specs/backups.md BAK-15 … 19, 27 … 30. Projections of backup_target.* and
-- backup_repository.* events.

-- Every target: the default one (site_id NULL) and each site's own. A target is its
-- place (endpoint, bucket, prefix) within its scope; `retired` once replaced or
-- removed while backups are in it (its secret stays sealed for them), then removed.
CREATE TABLE backup_targets (
    id                TEXT PRIMARY KEY,
    -- The site whose own target it is; NULL: the default target.
    site_id           TEXT,
    status            TEXT NOT NULL CHECK (status IN ('active', 'retired')),
    endpoint          TEXT NOT NULL CHECK (endpoint GLOB 'http*://*'),
    region            TEXT NOT NULL,
    bucket            TEXT NOT NULL CHECK (length(bucket) BETWEEN 3 AND 63),
    prefix            TEXT NOT NULL,
    access_key_id     TEXT NOT NULL,
    secret_id         TEXT NOT NULL,
    verified_at       TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    retired_at        TEXT,
    state_version     INTEGER NOT NULL,
    CHECK ((status = 'retired') = (retired_at IS NOT NULL))
) STRICT;
-- One target in effect per scope, and one target per place in a scope.
CREATE UNIQUE INDEX backup_targets_in_effect ON backup_targets (coalesce(site_id, ''))
    WHERE status = 'active';
CREATE UNIQUE INDEX backup_targets_by_place
    ON backup_targets (coalesce(site_id, ''), endpoint, bucket, prefix);

-- The one target of before is the default target `legacy` (what a
-- `backup_target.configured` without a target id projects to).
INSERT INTO backup_targets (id, site_id, status, endpoint, region, bucket, prefix,
                            access_key_id, secret_id, verified_at, updated_at, retired_at,
                            state_version)
    SELECT 'legacy', NULL, 'active', endpoint, region, bucket, prefix, access_key_id,
           secret_id, verified_at, updated_at, NULL, state_version
    FROM backup_target;
DROP TABLE backup_target;

-- A restic repository (its URL: one per site and place) and the target whose key
-- opens it: the one it was made in, or one of another scope at the same place that
-- took it over. A backup names its repository by URL (`backups.storage_path`).
CREATE TABLE backup_repositories_0024 (
    url               TEXT PRIMARY KEY,
    site_id           TEXT NOT NULL,
    target_id         TEXT NOT NULL,
    secret_id         TEXT NOT NULL,
    created_at        TEXT NOT NULL
) STRICT;
INSERT INTO backup_repositories_0024 (url, site_id, target_id, secret_id, created_at)
    SELECT url, site_id, 'legacy', secret_id, created_at FROM backup_repositories;
DROP TABLE backup_repositories;
ALTER TABLE backup_repositories_0024 RENAME TO backup_repositories;
CREATE INDEX backup_repositories_by_site ON backup_repositories (site_id);
CREATE INDEX backup_repositories_by_target ON backup_repositories (target_id);

-- Which backups live in a repository (a retired target is kept while any do).
CREATE INDEX backups_by_storage_path ON backups (storage_path, status);
