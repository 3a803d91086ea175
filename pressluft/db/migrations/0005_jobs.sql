-- The job queue. `jobs` and `job_attempts` are projections of job.* events;
-- `job_leases` (heartbeats), `job_logs` (output lines) and `idempotency_keys`
-- are not (see NON_PROJECTION_TABLES).
-- Rows are keyed by `enqueued_seq` (the seq of the job.enqueued event): the
-- table grows at its end, and the queue's order is the table's order.
CREATE TABLE jobs (
    enqueued_seq        INTEGER PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,
    job_type            TEXT NOT NULL CHECK (job_type GLOB '[a-z]*'),
    status              TEXT NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    site_id             TEXT,
    environment_id      TEXT,
    node_id             TEXT,
    payload_json        TEXT NOT NULL CHECK (json_valid(payload_json)),
    attempt_count       INTEGER NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    max_attempts        INTEGER NOT NULL CHECK (max_attempts >= 1),
    timeout_seconds     INTEGER NOT NULL CHECK (timeout_seconds >= 1),
    run_after           TEXT,
    locked_at           TEXT,
    locked_by           TEXT,
    lease_token         TEXT,
    lease_expires_at    TEXT,
    started_at          TEXT,
    finished_at         TEXT,
    error_code          TEXT,
    error_message       TEXT,
    cancel_requested_at TEXT,
    retry_of            TEXT REFERENCES jobs (id),
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    state_version       INTEGER NOT NULL CHECK (state_version >= 1),
    CHECK (attempt_count <= max_attempts),
    -- finished_at is set exactly in the terminal states
    CHECK ((status IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL)),
    -- a lease exists exactly while running
    CHECK ((status = 'running') = (lease_token IS NOT NULL)),
    CHECK (status != 'running'
           OR (locked_at IS NOT NULL AND locked_by IS NOT NULL AND started_at IS NOT NULL
               AND lease_expires_at IS NOT NULL AND attempt_count >= 1))
) STRICT;

-- At most one running job per site and per node, enforced by SQLite itself.
CREATE UNIQUE INDEX jobs_one_running_per_site ON jobs (site_id)
    WHERE status = 'running' AND site_id IS NOT NULL;
CREATE UNIQUE INDEX jobs_one_running_per_node ON jobs (node_id)
    WHERE status = 'running' AND node_id IS NOT NULL;
-- The claim scans queued jobs oldest first; finished jobs never slow it down.
CREATE INDEX jobs_queued ON jobs (enqueued_seq) WHERE status = 'queued';
-- When the next retry falls due (the worker pool sleeps until then).
CREATE INDEX jobs_due ON jobs (run_after) WHERE status = 'queued' AND run_after IS NOT NULL;
-- Filters of the job list; none of them moves when a job changes state.
CREATE INDEX jobs_by_type ON jobs (job_type, enqueued_seq);
CREATE INDEX jobs_by_site ON jobs (site_id, enqueued_seq);
CREATE INDEX jobs_by_node ON jobs (node_id, enqueued_seq);

CREATE TABLE job_attempts (
    job_id      TEXT NOT NULL REFERENCES jobs (id),
    attempt     INTEGER NOT NULL CHECK (attempt >= 1),
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    worker      TEXT NOT NULL,
    outcome     TEXT CHECK (outcome IN
        ('succeeded', 'failed', 'retry_scheduled', 'cancelled', 'lease_expired')),
    error_code  TEXT,
    CHECK ((outcome IS NULL) = (finished_at IS NULL)),
    PRIMARY KEY (job_id, attempt)
) STRICT, WITHOUT ROWID;

-- The live lease of a running job: extended by heartbeats (not events).
CREATE TABLE job_leases (
    job_id      TEXT PRIMARY KEY REFERENCES jobs (id),
    lease_token TEXT NOT NULL,
    expires_at  TEXT NOT NULL
) STRICT, WITHOUT ROWID;

-- Every output line of every attempt, kept until retention prunes it (by the
-- job's `finished_at`: no index on the lines' time is needed).
CREATE TABLE job_logs (
    job_id  TEXT NOT NULL REFERENCES jobs (id),
    seq     INTEGER NOT NULL CHECK (seq >= 1),
    at      TEXT NOT NULL,
    attempt INTEGER NOT NULL CHECK (attempt >= 0),
    stream  TEXT NOT NULL CHECK (stream IN ('stdout', 'stderr', 'system')),
    text    TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) STRICT, WITHOUT ROWID;

-- Responses of mutating requests made with an Idempotency-Key (sealed: a
-- response may carry a secret, e.g. a new API token).
CREATE TABLE idempotency_keys (
    actor        TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL CHECK (length(fingerprint) = 64),
    status_code  INTEGER NOT NULL CHECK (status_code BETWEEN 200 AND 299),
    response_ref TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    PRIMARY KEY (actor, key)
) STRICT, WITHOUT ROWID;

CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
