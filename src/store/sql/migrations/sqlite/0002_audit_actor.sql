-- tower-api-key schema version 2 (SQLite): every audit entry names its actor (a key or
-- a system actor) and carries the key's prefix.

ALTER TABLE {prefix}audit RENAME COLUMN actor_key_id TO actor_id;
ALTER TABLE {prefix}audit ADD COLUMN actor_kind TEXT NOT NULL DEFAULT 'key'
    CHECK (actor_kind IN ('key', 'system'));
ALTER TABLE {prefix}audit ADD COLUMN prefix TEXT;

-- Version 1 left the actor of request entries implicit: it is the key itself.
UPDATE {prefix}audit SET actor_id = api_key_id WHERE actor_id IS NULL;
-- Version 1 named a lifecycle entry's actor by key id or by system name in one column:
-- a name that is no key's id was a system actor.
UPDATE {prefix}audit SET actor_kind = 'system'
    WHERE actor_id NOT IN (SELECT id FROM {prefix}keys);
UPDATE {prefix}audit SET prefix = (
    SELECT k.prefix FROM {prefix}keys AS k WHERE k.id = {prefix}audit.api_key_id
);
