-- The promotion preset of an environment (reference 7.4: what a later push to
-- live protects), chosen when a staging or clone environment is created.
ALTER TABLE environments ADD COLUMN promotion_preset TEXT NOT NULL DEFAULT 'content-protect'
    CHECK (promotion_preset IN ('content-protect', 'commerce-protect'));
