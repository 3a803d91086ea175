-- Jobs that declare what they hold: a row (`holds_kind`, `holds_id`) the job keeps
-- in the status `holds_as` while it runs (specs/jobs.md, JOB-48). When the job
-- ends failed or cancelled, the row's projector fails the row if it still has that
-- status (the job carries the error code, found by its holds); no projector names
-- another's job types.
ALTER TABLE jobs ADD COLUMN holds_kind TEXT CHECK (holds_kind GLOB '[a-z]*');
ALTER TABLE jobs ADD COLUMN holds_id TEXT;
ALTER TABLE jobs ADD COLUMN holds_as TEXT CHECK (holds_as GLOB '[a-z]*');
-- Jobs recorded before holds held their environment or node by their type: the
-- projector derives the same from those events (`legacy_holds`), so a replay
-- rebuilds these rows.
UPDATE jobs SET holds_kind = 'environment', holds_id = environment_id,
    holds_as = CASE job_type WHEN 'site_create' THEN 'creating' WHEN 'env_create' THEN 'cloning'
        ELSE 'deleting' END
WHERE job_type IN ('site_create', 'env_create', 'env_delete', 'site_delete')
    AND environment_id IS NOT NULL;
UPDATE jobs SET holds_kind = 'node', holds_id = node_id, holds_as = 'provisioning'
WHERE job_type = 'node_provision' AND node_id IS NOT NULL;
-- The jobs holding one row (a job's end looks for another that still holds it).
CREATE INDEX jobs_by_holds ON jobs (holds_kind, holds_id) WHERE holds_kind IS NOT NULL;
