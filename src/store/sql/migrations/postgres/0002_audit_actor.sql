-- tower-api-key schema version 2 (PostgreSQL): every audit entry names its actor (a key
-- or a system actor) and carries the key's prefix.

ALTER TABLE {prefix}audit RENAME COLUMN actor_key_id TO actor_id;
ALTER TABLE {prefix}audit ADD COLUMN actor_kind text NOT NULL DEFAULT 'key'
    CHECK (actor_kind IN ('key', 'system'));
ALTER TABLE {prefix}audit ADD COLUMN prefix text;

-- Version 1 left the actor of request entries implicit: it is the key itself.
UPDATE {prefix}audit SET actor_id = api_key_id WHERE actor_id IS NULL;
-- Version 1 named a lifecycle entry's actor by key id or by system name in one column:
-- a name that is no key's id was a system actor.
UPDATE {prefix}audit AS a SET actor_kind = 'system'
    WHERE NOT EXISTS (SELECT 1 FROM {prefix}keys AS k WHERE k.id = a.actor_id);
UPDATE {prefix}audit AS a SET prefix = k.prefix
    FROM {prefix}keys AS k WHERE k.id = a.api_key_id;
ALTER TABLE {prefix}audit ALTER COLUMN actor_id SET NOT NULL;
