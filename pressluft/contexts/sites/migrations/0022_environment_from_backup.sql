-- An environment can be a copy of its source filled from a backup of it (restore into a
-- new environment, specs/backups.md): the backup it was filled from.
ALTER TABLE environments ADD COLUMN source_backup_id TEXT;
