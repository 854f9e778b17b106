-- tower-api-key schema version 4 (SQLite): usage per key, one row per key and hour
-- (`hour` is the number of whole hours since 1970-01-01 UTC), with the verifications
-- of that hour by outcome. Written behind by `Usage`, added to (never replaced), and
-- pruned past the retention. No foreign key: a deleted key's usage stays readable
-- until the retention drops it.

CREATE TABLE {prefix}key_usage (
    key_id             TEXT    NOT NULL,
    hour               INTEGER NOT NULL,
    admitted           INTEGER NOT NULL DEFAULT 0 CHECK (admitted >= 0),
    refused_scope      INTEGER NOT NULL DEFAULT 0 CHECK (refused_scope >= 0),
    refused_rate_limit INTEGER NOT NULL DEFAULT 0 CHECK (refused_rate_limit >= 0),
    refused_quota      INTEGER NOT NULL DEFAULT 0 CHECK (refused_quota >= 0),
    PRIMARY KEY (key_id, hour)
);

CREATE INDEX {prefix}key_usage_hour ON {prefix}key_usage (hour);
