-- The container of a `docker` lab node, projected from node.container_* events
-- (specs/nodes.md, "Providers"). NULL for `ssh` nodes.
ALTER TABLE nodes ADD COLUMN resources_json TEXT CHECK (resources_json IS NULL OR json_valid(resources_json));
ALTER TABLE nodes ADD COLUMN container_id TEXT;
-- running (created or started), stopped (by an admin), exited (died), removed.
ALTER TABLE nodes ADD COLUMN container_state TEXT
    CHECK (container_state IN ('running', 'stopped', 'exited', 'removed'));
ALTER TABLE nodes ADD COLUMN container_exit_code INTEGER;
-- The engine's time of the newest recorded death (Unix seconds): the watcher
-- resumes there after a restart, and never records one death twice.
ALTER TABLE nodes ADD COLUMN container_died_at INTEGER;
-- {ssh, http, https}: the 127.0.0.1 ports, new at every start.
ALTER TABLE nodes ADD COLUMN ports_json TEXT CHECK (ports_json IS NULL OR json_valid(ports_json));
