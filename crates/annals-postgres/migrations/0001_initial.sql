-- annals-postgres schema version 1.
--
-- Runs once per store schema, in one transaction, with search_path set to that schema (so the
-- names below are unqualified). Times are milliseconds (or microseconds, *_us) since the Unix
-- epoch, from the server's clock. Keep it to portable SQL: no triggers, no stored procedures.

-- One row per migration applied; the highest version is the schema's version.
CREATE TABLE schema_version (
    version integer PRIMARY KEY,
    applied_ms bigint NOT NULL,
    applied_by text NOT NULL
);

CREATE TABLE sessions (
    id uuid PRIMARY KEY,
    created_ms bigint NOT NULL,
    -- Moves with attachments; segments keep their own modification time.
    modified_us bigint NOT NULL
);

-- A segment and its tip. `next_seq` is the entry count (the next entry's sequence number) and
-- `generation` the rewrite generation: the concurrent-writer detector compares both, and every
-- append checks and advances them in the same statement that inserts the entries.
CREATE TABLE segments (
    key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session uuid NOT NULL REFERENCES sessions (id),
    id uuid NOT NULL,
    next_seq bigint NOT NULL DEFAULT 0 CHECK (next_seq >= 0),
    generation bigint NOT NULL DEFAULT 0 CHECK (generation >= 0),
    -- Sum over entries of (JSON text length + 1), as a JSONL file of them would hold.
    bytes bigint NOT NULL DEFAULT 0,
    trace_next bigint NOT NULL DEFAULT 0,
    created_ms bigint NOT NULL,
    modified_us bigint NOT NULL,
    fork_of uuid,
    fork_at bigint,
    UNIQUE (session, id)
);
CREATE INDEX segments_by_id ON segments (id);

-- Entries, keyed by (segment, seq): a duplicate sequence number cannot exist. `body` is the
-- entry's JSON text exactly as given (text, not jsonb, which would reorder keys and rewrite
-- numbers), or for an entry kept as a blob the first bytes of it, with `blob` its SHA-256.
-- `crc` is the CRC-32 (IEEE) of body, or of blob || len || body for blob
-- entries, computed by the writer and checked by every replay and verify.
CREATE TABLE entries (
    segment bigint NOT NULL,
    seq bigint NOT NULL,
    appended_ms bigint NOT NULL,
    crc integer NOT NULL,
    len bigint NOT NULL,
    body text NOT NULL,
    blob bytea,
    PRIMARY KEY (segment, seq)
);
CREATE INDEX entries_by_blob ON entries (blob) WHERE blob IS NOT NULL;

-- The debug trace of a segment: the same shape, its own numbering, untouched by truncate.
CREATE TABLE trace_events (
    segment bigint NOT NULL,
    seq bigint NOT NULL,
    appended_ms bigint NOT NULL,
    crc integer NOT NULL,
    len bigint NOT NULL,
    body text NOT NULL,
    blob bytea,
    PRIMARY KEY (segment, seq)
);
CREATE INDEX trace_events_by_blob ON trace_events (blob) WHERE blob IS NOT NULL;

-- Content-addressed blobs of a session: entries too long for a line of the filesystem store,
-- and attachments. `crc` (CRC-32 of data) is checked on every read, the SHA-256 by verify and
-- get_blob.
CREATE TABLE blobs (
    session uuid NOT NULL REFERENCES sessions (id),
    sha256 bytea NOT NULL,
    len bigint NOT NULL,
    crc integer NOT NULL,
    data bytea NOT NULL,
    created_ms bigint NOT NULL,
    PRIMARY KEY (session, sha256)
);

CREATE TABLE attachments (
    session uuid NOT NULL REFERENCES sessions (id),
    ord bigint GENERATED ALWAYS AS IDENTITY,
    blob bytea NOT NULL,
    len bigint NOT NULL,
    -- The AttachmentMeta as JSON.
    meta text NOT NULL,
    created_ms bigint NOT NULL,
    PRIMARY KEY (session, ord)
);
