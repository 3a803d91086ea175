-- The health check's write probe: one row, rewritten by every probe (and at start),
-- so "the database accepts writes" means a real page reached the disk — a full or
-- read-only disk fails it as it fails every user's change. Not an event: a probe
-- changes no state anyone reads.
CREATE TABLE health_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at TEXT NOT NULL
) STRICT;
INSERT INTO health_probe (id, probed_at) VALUES (1, '');
