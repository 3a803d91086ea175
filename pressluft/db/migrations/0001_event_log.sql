-- The event log: the source of truth. Every mutation is an event; state tables
-- are projections of it. Rows are hash-chained (see pressluft/events/chain.py).
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY,
    stream         TEXT NOT NULL CHECK (length(stream) BETWEEN 1 AND 200),
    stream_version INTEGER NOT NULL CHECK (stream_version >= 1),
    type           TEXT NOT NULL CHECK (type GLOB '[a-z]*.[a-z]*'),
    schema_version INTEGER NOT NULL CHECK (schema_version >= 1),
    data           TEXT NOT NULL CHECK (json_valid(data)),
    meta           TEXT NOT NULL CHECK (json_valid(meta)),
    recorded_at    TEXT NOT NULL,
    prev_hash      TEXT NOT NULL CHECK (length(prev_hash) = 64),
    hash           TEXT NOT NULL CHECK (length(hash) = 64),
    UNIQUE (stream, stream_version)
) STRICT;

CREATE INDEX events_by_type ON events (type, seq);

-- Append-only, enforced by the database itself.
CREATE TRIGGER events_are_immutable BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

CREATE TRIGGER events_are_permanent BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

-- The newest event's seq and hash, written in the same transaction as every
-- append: `events verify` compares it with the log to detect a removed tail.
CREATE TABLE event_log_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL CHECK (seq >= 0),
    hash TEXT NOT NULL CHECK (length(hash) = 64)
) STRICT;

INSERT INTO event_log_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Sealed secrets (AES-GCM; see pressluft/vault.py). Events and state tables hold
-- only the id of a secret, never its plaintext.
CREATE TABLE secrets (
    id         TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL CHECK (length(purpose) BETWEEN 1 AND 100),
    key_id     TEXT NOT NULL,
    nonce      BLOB NOT NULL CHECK (length(nonce) = 12),
    ciphertext BLOB NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
