-- Sites and their environments (specs/sites.md): projections of site.* and
-- environment.* events. A site's status mirrors its most impactful environment
-- mutation in flight; `failed → active` only through reset.
CREATE TABLE sites (
    id                     TEXT PRIMARY KEY,
    name                   TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    slug                   TEXT NOT NULL
        CHECK (length(slug) BETWEEN 1 AND 40 AND slug GLOB '[a-z0-9]*' AND slug NOT GLOB '*-'
               AND slug NOT GLOB '*[^a-z0-9-]*'),
    status                 TEXT NOT NULL CHECK (status IN
        ('creating', 'active', 'cloning', 'deploying', 'restoring', 'failed', 'deleting',
         'deleted')),
    primary_environment_id TEXT,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL,
    deleted_at             TEXT,
    state_version          INTEGER NOT NULL CHECK (state_version >= 1),
    CHECK ((status = 'deleted') = (deleted_at IS NOT NULL))
) STRICT;

-- A slug is taken while its site lives; a deleted site's slug can be reused.
CREATE UNIQUE INDEX sites_live_slug ON sites (slug) WHERE status != 'deleted';

CREATE TABLE environments (
    id                     TEXT PRIMARY KEY,
    site_id                TEXT NOT NULL REFERENCES sites (id),
    name                   TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    slug                   TEXT NOT NULL
        CHECK (length(slug) BETWEEN 1 AND 40 AND slug GLOB '[a-z0-9]*' AND slug NOT GLOB '*-'
               AND slug NOT GLOB '*[^a-z0-9-]*'),
    environment_type       TEXT NOT NULL
        CHECK (environment_type IN ('production', 'staging', 'clone')),
    status                 TEXT NOT NULL CHECK (status IN
        ('creating', 'active', 'cloning', 'deploying', 'restoring', 'failed', 'deleting',
         'deleted')),
    node_id                TEXT NOT NULL,
    source_environment_id  TEXT REFERENCES environments (id),
    preview_url            TEXT NOT NULL CHECK (preview_url GLOB 'http*://*'),
    -- Sealed secrets (vault ids): the database password, the WordPress admin password.
    db_secret_id           TEXT,
    admin_secret_id        TEXT,
    fastcgi_cache_enabled  INTEGER NOT NULL DEFAULT 1 CHECK (fastcgi_cache_enabled IN (0, 1)),
    redis_cache_enabled    INTEGER NOT NULL DEFAULT 1 CHECK (redis_cache_enabled IN (0, 1)),
    current_release_id     TEXT,
    wordpress_version      TEXT,
    health_status          TEXT NOT NULL DEFAULT 'unknown'
        CHECK (health_status IN ('unknown', 'healthy', 'unhealthy')),
    health_checked_at      TEXT,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL,
    deleted_at             TEXT,
    state_version          INTEGER NOT NULL CHECK (state_version >= 1),
    CHECK ((status = 'deleted') = (deleted_at IS NOT NULL)),
    CHECK ((environment_type = 'production') = (source_environment_id IS NULL)),
    -- a deleted environment keeps no secrets
    CHECK (status != 'deleted' OR (db_secret_id IS NULL AND admin_secret_id IS NULL))
) STRICT;

CREATE UNIQUE INDEX environments_live_slug ON environments (site_id, slug)
    WHERE status != 'deleted';
-- Exactly one live production environment per site (at most one here; the
-- site_create command records it with the site).
CREATE UNIQUE INDEX environments_one_production ON environments (site_id)
    WHERE environment_type = 'production' AND status != 'deleted';
CREATE INDEX environments_by_node ON environments (node_id, status);

-- Releases: immutable snapshots of an environment's code (`releases/<id>`).
CREATE TABLE releases (
    id             TEXT PRIMARY KEY,
    environment_id TEXT NOT NULL REFERENCES environments (id),
    source_type    TEXT NOT NULL CHECK (source_type IN ('wordpress', 'clone', 'git', 'upload')),
    source_ref     TEXT NOT NULL,
    path           TEXT NOT NULL,
    health_status  TEXT NOT NULL DEFAULT 'unknown'
        CHECK (health_status IN ('unknown', 'healthy', 'unhealthy')),
    created_at     TEXT NOT NULL
) STRICT;
CREATE INDEX releases_by_environment ON releases (environment_id, created_at);
