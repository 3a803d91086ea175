-- Projection of settings.* events: the control plane's own settings (one row).
CREATE TABLE settings (
    id                    INTEGER PRIMARY KEY CHECK (id = 1),
    control_plane_domain  TEXT,
    preview_domain        TEXT,
    dns01_provider        TEXT
        CHECK (dns01_provider IN ('cloudflare', 'digitalocean', 'hetzner', 'route53')),
    dns01_credentials_ref TEXT,
    state_version         INTEGER NOT NULL CHECK (state_version >= 1),
    updated_at            TEXT NOT NULL,
    -- A preview domain needs a wildcard certificate, which needs DNS-01.
    CHECK (preview_domain IS NULL
           OR (dns01_provider IS NOT NULL AND dns01_credentials_ref IS NOT NULL))
) STRICT;
