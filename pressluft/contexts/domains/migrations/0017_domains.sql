-- Custom domains of environments, the certificates the control plane holds and its
-- ACME accounts (specs/domains.md). Projections of domain.*, certificate.* and
-- acme.* events.
CREATE TABLE domains (
    id               TEXT PRIMARY KEY,
    environment_id   TEXT NOT NULL,
    site_id          TEXT NOT NULL,
    node_id          TEXT NOT NULL,
    -- As served: lower case, punycode (unique across the control plane).
    hostname         TEXT NOT NULL UNIQUE COLLATE NOCASE
                     CHECK (length(hostname) BETWEEN 1 AND 253 AND hostname NOT GLOB '*[^a-z0-9.-]*'),
    unicode_hostname TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'active', 'failed', 'removing')),
    tls_status       TEXT NOT NULL CHECK (tls_status IN ('pending', 'active', 'failed', 'disabled')),
    is_primary       INTEGER NOT NULL DEFAULT 0 CHECK (is_primary IN (0, 1)),
    -- The hostname this one answers 301 to when it is a `www` twin.
    twin_of          TEXT,
    hsts             INTEGER NOT NULL DEFAULT 0 CHECK (hsts IN (0, 1)),
    certificate_id   TEXT,
    job_id           TEXT,
    last_error_code  TEXT,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    state_version    INTEGER NOT NULL
) STRICT;
-- At most one primary domain per environment.
CREATE UNIQUE INDEX domains_one_primary ON domains (environment_id) WHERE is_primary = 1;
CREATE INDEX domains_by_environment ON domains (environment_id, hostname);

CREATE TABLE certificates (
    id               TEXT PRIMARY KEY,
    node_id          TEXT NOT NULL,
    environment_id   TEXT,
    -- `domain` (custom domains of one environment) or `preview` (a node's wildcard).
    kind             TEXT NOT NULL CHECK (kind IN ('domain', 'preview', 'control_plane')),
    names_json       TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'active', 'failed')),
    issuer           TEXT,
    serial           TEXT,
    not_before       TEXT,
    not_after        TEXT,
    renew_at         TEXT,
    key_secret_id    TEXT,
    chain_pem        TEXT,
    last_attempt_at  TEXT,
    last_error_code  TEXT,
    last_error       TEXT,
    renewal_failed   INTEGER NOT NULL DEFAULT 0 CHECK (renewal_failed IN (0, 1)),
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    CHECK (status != 'active' OR (serial IS NOT NULL AND not_after IS NOT NULL
                                  AND key_secret_id IS NOT NULL AND chain_pem IS NOT NULL))
) STRICT;
CREATE INDEX certificates_by_renewal ON certificates (renew_at) WHERE status = 'active';

CREATE TABLE acme_accounts (
    directory_url    TEXT PRIMARY KEY,
    account_uri      TEXT NOT NULL,
    key_secret_id    TEXT NOT NULL,
    created_at       TEXT NOT NULL
) STRICT;
