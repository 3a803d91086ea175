-- Releases are removed from the node by pruning (keep the newest few, specs/releases.md):
-- the row stays, as history, with the time it went.
ALTER TABLE releases ADD COLUMN pruned_at TEXT;
