-- Index what is rare; scan for what is frequent. Every job writes three events
-- on its happy path (job.enqueued, job.claimed, job.succeeded), two of them by
-- a worker: in the full `events_by_type` and `events_by_actor` indexes they
-- dirtied five more b-tree leaves per job commit (~22 % of the pages a busy
-- queue writes). A filter on one of those frequent values scans the log in seq
-- order instead, meeting a match every few rows; every other type and actor is
-- still found through the index. The WHERE terms are repeated verbatim by the
-- readers (pressluft/events/log.py) so that SQLite can use these indexes.
DROP INDEX events_by_type;
CREATE INDEX events_by_type ON events (type, seq)
    WHERE type NOT IN ('job.enqueued', 'job.claimed', 'job.succeeded');

DROP INDEX events_by_actor;
CREATE INDEX events_by_actor ON events (actor, seq)
    WHERE actor NOT GLOB 'system:worker:*';

-- A job is scoped to a site, a node, both or neither: the list's site and node
-- filters never look for a missing one (`site_id = ?` implies NOT NULL).
DROP INDEX jobs_by_site;
CREATE INDEX jobs_by_site ON jobs (site_id, enqueued_seq) WHERE site_id IS NOT NULL;

DROP INDEX jobs_by_node;
CREATE INDEX jobs_by_node ON jobs (node_id, enqueued_seq) WHERE node_id IS NOT NULL;
