-- Lock scopes: where a job runs (`node_id`) is no longer what it locks.
-- A site job locks its site exclusively and its node shared; a node mutation
-- (`node_lock = 'exclusive'`) runs alone on its node; a read-only node check
-- shares it. At most `node_site_jobs` site jobs run at once on one node (the
-- claim's rule, a setting: no index can hold it).
ALTER TABLE jobs ADD COLUMN node_lock TEXT NOT NULL DEFAULT 'shared'
    CHECK (node_lock IN ('exclusive', 'shared'));
-- Jobs recorded before lock scopes held their node alone: a node's own job (no
-- site) stays exclusive, a site's job becomes shared. The projector derives the
-- same from those events (`scope_node_lock`), so a replay rebuilds these rows.
UPDATE jobs SET node_lock = 'exclusive' WHERE node_id IS NOT NULL AND site_id IS NULL;

-- A unique job (`<job_type>:<target>`): at most one queued or running per key.
ALTER TABLE jobs ADD COLUMN unique_key TEXT;
CREATE UNIQUE INDEX jobs_one_active_per_unique_key ON jobs (unique_key)
    WHERE status IN ('queued', 'running') AND unique_key IS NOT NULL;

-- Several jobs may now run on one node. The claim asks of a node's running jobs:
-- any at all, an exclusive one, how many site jobs — all answered from this
-- index alone (a node runs a handful of jobs at most).
DROP INDEX jobs_one_running_per_node;
CREATE INDEX jobs_running_by_node ON jobs (node_id, node_lock, site_id)
    WHERE status = 'running' AND node_id IS NOT NULL;
-- Queued exclusive jobs of a node (few, and short-lived): a due one bars younger
-- shared jobs of its node from starting, so a stream of site jobs cannot starve
-- a provisioning.
CREATE INDEX jobs_queued_exclusive ON jobs (node_id, enqueued_seq, run_after)
    WHERE status = 'queued' AND node_lock = 'exclusive' AND node_id IS NOT NULL;

-- The database refuses to start a job beside a running one its node lock
-- excludes, even when asked directly (as `jobs_one_running_per_site` does for
-- sites): an exclusive job alone on its node, a shared one never beside an
-- exclusive one.
CREATE TRIGGER jobs_node_lock BEFORE UPDATE OF status ON jobs
WHEN NEW.status = 'running' AND OLD.status != 'running' AND NEW.node_id IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'node lock held: another running job excludes this one')
    WHERE EXISTS (
        SELECT 1 FROM jobs r
        WHERE r.status = 'running' AND r.node_id = NEW.node_id AND r.id != NEW.id
          AND (NEW.node_lock = 'exclusive' OR r.node_lock = 'exclusive')
    );
END;
