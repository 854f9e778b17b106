-- tower-api-key schema version 3 (SQLite): the secrets that tag native keys, so that a
-- key the server never minted is refused before any lookup. `migrate()` adds the first
-- one. `generation` orders them (the newest tags new keys) and `id` is the one
-- character written into each key a secret tags.

CREATE TABLE {prefix}tag_secrets (
    generation INTEGER NOT NULL PRIMARY KEY CHECK (generation > 0),
    id         TEXT    NOT NULL UNIQUE CHECK (length(id) = 1 AND id GLOB '[A-Za-z0-9]'),
    secret     BLOB    NOT NULL CHECK (length(secret) >= 32)
);
