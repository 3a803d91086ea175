-- The WordPress administrator of an environment: the login magic login signs in as.
-- Per site (chosen or random) from now on; every environment before this migration
-- got the one name all sites shared.
ALTER TABLE environments ADD COLUMN admin_user TEXT NOT NULL DEFAULT 'pressluft-admin'
    CHECK (length(admin_user) BETWEEN 1 AND 60);
