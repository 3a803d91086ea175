-- One preview wildcard (`*.{preview_domain}`) per node: its row is reissued in place.
CREATE UNIQUE INDEX certificates_one_preview ON certificates (node_id) WHERE kind = 'preview';
-- The expiry a `certificate.expiry_noticed` event was recorded for (once per certificate and expiry).
ALTER TABLE certificates ADD COLUMN expiring_announced_for TEXT;
