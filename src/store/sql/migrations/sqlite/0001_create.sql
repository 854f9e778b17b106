-- tower-api-key schema version 1 (SQLite).
-- `{prefix}` is replaced with the store's table prefix before this runs.

CREATE TABLE {prefix}keys (
    id                   TEXT    NOT NULL PRIMARY KEY,
    -- SHA-256 of the full key. The key itself is never stored.
    digest               BLOB    NOT NULL UNIQUE CHECK (length(digest) = 32),
    prefix               TEXT    NOT NULL,
    name                 TEXT    NOT NULL,
    owner_kind           TEXT    NOT NULL CHECK (owner_kind IN ('organization', 'user')),
    owner_id             TEXT    NOT NULL,
    environment          TEXT,
    -- A JSON array of strings.
    scopes               TEXT    NOT NULL DEFAULT '[]' CHECK (json_type(scopes) = 'array'),
    -- Timestamps are microseconds since the Unix epoch, UTC.
    created_at           INTEGER NOT NULL,
    created_by           TEXT,
    expires_at           INTEGER,
    revoked_at           INTEGER,
    superseded_by        TEXT,
    rotation_valid_until INTEGER,
    family               TEXT    NOT NULL,
    last_used_at         INTEGER,
    rate_limit_policy    TEXT,
    -- A JSON object.
    metadata             TEXT    NOT NULL DEFAULT '{}' CHECK (json_type(metadata) = 'object'),
    imported             INTEGER NOT NULL DEFAULT 0 CHECK (imported IN (0, 1)),
    CHECK ((superseded_by IS NULL) = (rotation_valid_until IS NULL))
) STRICT;

-- Lookup by id is the primary key; lookup by digest is the UNIQUE index above.
CREATE INDEX {prefix}keys_owner_idx ON {prefix}keys (owner_kind, owner_id, created_at DESC);

CREATE TABLE {prefix}audit (
    id               INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    occurred_at      INTEGER NOT NULL,
    action           TEXT    NOT NULL,
    api_key_id       TEXT    NOT NULL,
    actor_key_id     TEXT,
    owner_kind       TEXT    NOT NULL,
    owner_id         TEXT    NOT NULL,
    environment      TEXT,
    scopes           TEXT    NOT NULL DEFAULT '[]',
    method           TEXT,
    path             TEXT,
    route            TEXT,
    status           INTEGER,
    request_id       TEXT,
    successor_key_id TEXT
) STRICT;

CREATE INDEX {prefix}audit_owner_idx ON {prefix}audit (owner_kind, owner_id, occurred_at DESC, id DESC);
CREATE INDEX {prefix}audit_key_idx ON {prefix}audit (api_key_id, occurred_at DESC, id DESC);
