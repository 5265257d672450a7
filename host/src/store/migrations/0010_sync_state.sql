-- Connectors' keyed sync state: a value per item of a source (a file's
-- hash, a message's uid), so a connector's cursor stays small however
-- large its source grows. Kept per plugin, outliving updates and removal
-- as its records do. Written only by `sync_state`. IF NOT EXISTS: a home
-- set back to an older schema version by hand (install's test of homes
-- from before 0008 does so) meets these tables again.
CREATE TABLE IF NOT EXISTS sync_state (
    plugin TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (plugin, key)
) STRICT, WITHOUT ROWID;

-- What each plugin's sync state holds, kept beside every write so the
-- bounds are checked without reading a million rows.
CREATE TABLE IF NOT EXISTS sync_state_usage (
    plugin TEXT PRIMARY KEY,
    keys   INTEGER NOT NULL,
    bytes  INTEGER NOT NULL
) STRICT;
