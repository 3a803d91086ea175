-- A release can come from a backup (a restore serves the backup's files in a new
-- release, specs/backups.md): the source_type CHECK gains 'backup'. SQLite cannot
-- change a CHECK in place: the table is rebuilt (nothing references it).
CREATE TABLE releases_new (
    id             TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id),
    source_type    TEXT NOT NULL
        CHECK (source_type IN ('wordpress', 'clone', 'git', 'upload', 'backup')),
    source_ref     TEXT NOT NULL,
    path           TEXT NOT NULL,
    health_status  TEXT NOT NULL DEFAULT 'unknown'
        CHECK (health_status IN ('unknown', 'healthy', 'unhealthy')),
    created_at     TEXT NOT NULL
) STRICT;
INSERT INTO releases_new (id, environment_id, source_type, source_ref, path, health_status, created_at)
    SELECT id, environment_id, source_type, source_ref, path, health_status, created_at FROM releases;
DROP TABLE releases;
ALTER TABLE releases_new RENAME TO releases;
CREATE INDEX releases_by_environment ON releases (environment_id, created_at);
