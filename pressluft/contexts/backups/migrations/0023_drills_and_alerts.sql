-- Restore drills and the scan's alerts (specs/backups.md BAK-69…72, 84). Projections of
-- backup.drill_*, backup.verified/verification_failed, a drill job's end and the
-- *_overdue_noticed events.

-- Each restore drill that began building its throwaway environment: what may be on the
-- node (from `backup.drill_started` until `backup.drill_throwaway_removed`) and how the
-- drill ended. A throwaway whose drill ended and that is not removed is a leftover the
-- environment's next drill removes.
CREATE TABLE backup_drills (
    job_id               TEXT PRIMARY KEY,
    backup_id            TEXT NOT NULL,
    site_id              TEXT NOT NULL,
    environment_id       TEXT NOT NULL,
    node_id              TEXT NOT NULL,
    throwaway_id         TEXT NOT NULL UNIQUE,
    started_at           TEXT NOT NULL,
    -- NULL while it runs; interrupted: its job ended without a result (killed, cancelled).
    outcome              TEXT CHECK (outcome IN ('verified', 'failed', 'interrupted')),
    -- `CODE: message` of a drill that failed or was interrupted.
    error                TEXT,
    ended_at             TEXT,
    throwaway_removed_at TEXT,
    -- The job that removed the throwaway: the drill itself, or a later one.
    removed_by_job_id    TEXT,
    CHECK ((outcome IS NULL) = (ended_at IS NULL)),
    CHECK ((error IS NOT NULL) = (outcome IS NOT NULL AND outcome != 'verified')),
    CHECK ((throwaway_removed_at IS NULL) = (removed_by_job_id IS NULL))
) STRICT;
CREATE INDEX backup_drills_by_site ON backup_drills (site_id, started_at);
CREATE INDEX backup_drills_left ON backup_drills (environment_id, node_id)
    WHERE throwaway_removed_at IS NULL;

-- The overdue-drill alert of an environment: recorded once per last proof (a backup's
-- `verified_at`, '' for none yet), so the operator sees it once until a drill passes.
CREATE TABLE backup_drill_alerts (
    environment_id       TEXT PRIMARY KEY,
    last_verified_at     TEXT NOT NULL,
    noticed_at           TEXT NOT NULL
) STRICT;

-- The control plane's missing copy (id = 1): recorded once per last copy ('' for none).
CREATE TABLE control_plane_alerts (
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    last_snapshot_id     TEXT NOT NULL,
    noticed_at           TEXT NOT NULL
) STRICT;
