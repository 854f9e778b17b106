-- tower-api-key schema version 1 (PostgreSQL 11 or newer).
-- `{prefix}` is replaced with the store's table prefix and `{channel}` with its
-- notification channel before this runs.

CREATE TABLE {prefix}keys (
    id                   text        NOT NULL PRIMARY KEY,
    -- SHA-256 of the full key. The key itself is never stored.
    digest               bytea       NOT NULL UNIQUE CHECK (octet_length(digest) = 32),
    prefix               text        NOT NULL,
    name                 text        NOT NULL,
    owner_kind           text        NOT NULL CHECK (owner_kind IN ('organization', 'user')),
    owner_id             text        NOT NULL,
    environment          text,
    scopes               text[]      NOT NULL DEFAULT '{}',
    created_at           timestamptz NOT NULL,
    created_by           text,
    expires_at           timestamptz,
    revoked_at           timestamptz,
    superseded_by        text,
    rotation_valid_until timestamptz,
    family               text        NOT NULL,
    last_used_at         timestamptz,
    rate_limit_policy    text,
    metadata             jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    imported             boolean     NOT NULL DEFAULT false,
    CHECK ((superseded_by IS NULL) = (rotation_valid_until IS NULL))
);

-- Lookup by id is the primary key; lookup by digest is the UNIQUE index above.
CREATE INDEX {prefix}keys_owner_idx ON {prefix}keys (owner_kind, owner_id, created_at DESC);

CREATE TABLE {prefix}audit (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at      timestamptz NOT NULL,
    action           text        NOT NULL,
    api_key_id       text        NOT NULL,
    actor_key_id     text,
    owner_kind       text        NOT NULL,
    owner_id         text        NOT NULL,
    environment      text,
    scopes           text[]      NOT NULL DEFAULT '{}',
    method           text,
    path             text,
    route            text,
    status           integer,
    request_id       text,
    successor_key_id text
);

CREATE INDEX {prefix}audit_owner_idx ON {prefix}audit (owner_kind, owner_id, occurred_at DESC, id DESC);
CREATE INDEX {prefix}audit_key_idx ON {prefix}audit (api_key_id, occurred_at DESC, id DESC);

-- Cache invalidation across instances. Every change to a key, whoever makes it (this
-- crate, another instance, or an operator in psql), notifies `{channel}` with
-- '<key id> <hex digest>' in the same transaction: listeners hear of it when, and only
-- if, it commits. A change to `last_used_at` alone notifies nobody.
CREATE FUNCTION {prefix}keys_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('{channel}', '*');
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('{channel}', OLD.id || ' ' || encode(OLD.digest, 'hex'));
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('{channel}', NEW.id || ' ' || encode(NEW.digest, 'hex'));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER {prefix}keys_notify_write
    AFTER INSERT OR DELETE ON {prefix}keys
    FOR EACH ROW EXECUTE FUNCTION {prefix}keys_notify();

CREATE TRIGGER {prefix}keys_notify_update
    AFTER UPDATE ON {prefix}keys
    FOR EACH ROW
    WHEN ((to_jsonb(OLD) - 'last_used_at') IS DISTINCT FROM (to_jsonb(NEW) - 'last_used_at'))
    EXECUTE FUNCTION {prefix}keys_notify();

CREATE TRIGGER {prefix}keys_notify_truncate
    AFTER TRUNCATE ON {prefix}keys
    FOR EACH STATEMENT EXECUTE FUNCTION {prefix}keys_notify();
