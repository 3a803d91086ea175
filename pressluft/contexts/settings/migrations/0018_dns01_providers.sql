-- DNS-01 providers are the ones the control plane has an adapter for (rfc2136, cloudflare:
-- pressluft/runners/dns.py). The older names stay allowed here: a settings.changed event
-- that named one still replays (the preview job then fails with a clear message).
CREATE TABLE settings_next (
    id                    INTEGER PRIMARY KEY CHECK (id = 1),
    control_plane_domain  TEXT,
    preview_domain        TEXT,
    dns01_provider        TEXT
        CHECK (dns01_provider IN ('rfc2136', 'cloudflare', 'digitalocean', 'hetzner', 'route53')),
    dns01_credentials_ref TEXT,
    state_version         INTEGER NOT NULL CHECK (state_version >= 1),
    updated_at            TEXT NOT NULL,
    -- A preview domain needs a wildcard certificate, which needs DNS-01.
    CHECK (preview_domain IS NULL
           OR (dns01_provider IS NOT NULL AND dns01_credentials_ref IS NOT NULL))
) STRICT;
INSERT INTO settings_next (id, control_plane_domain, preview_domain, dns01_provider,
                           dns01_credentials_ref, state_version, updated_at)
    SELECT id, control_plane_domain, preview_domain, dns01_provider, dns01_credentials_ref,
           state_version, updated_at FROM settings;
DROP TABLE settings;
ALTER TABLE settings_next RENAME TO settings;
