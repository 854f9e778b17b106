-- tower-api-key schema version 3 (PostgreSQL): the secrets that tag native keys, so that
-- a key the server never minted is refused before any lookup. Every instance reads them
-- from here; `migrate()` adds the first one. `generation` orders them (the newest tags
-- new keys) and `id` is the one character written into each key a secret tags.

CREATE TABLE {prefix}tag_secrets (
    generation bigint      NOT NULL PRIMARY KEY CHECK (generation > 0),
    id         text        NOT NULL UNIQUE CHECK (id ~ '^[A-Za-z0-9]$'),
    secret     bytea       NOT NULL CHECK (octet_length(secret) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
