-- Write quotas: the writes each plugin has taken from its daily quota. A
-- run takes writes in blocks and gives back what it did not use when it
-- ends, so concurrent runs never exceed the day's quota.
CREATE TABLE write_quota (
    plugin TEXT NOT NULL,
    day    TEXT NOT NULL,   -- UTC, YYYY-MM-DD
    used   INTEGER NOT NULL,
    PRIMARY KEY (plugin, day)
) STRICT;

-- A run that reached a write quota: what it reached, and when the operator
-- dismissed the review item it raised.
ALTER TABLE runs ADD COLUMN quota TEXT;
ALTER TABLE runs ADD COLUMN quota_reviewed_at TEXT;
CREATE INDEX runs_quota ON runs(plugin) WHERE quota IS NOT NULL AND quota_reviewed_at IS NULL;

-- The bytes of each working-memory entry (key and value), so a plugin's
-- total is a sum of integers, not a read of every value it holds.
ALTER TABLE working_memory ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
UPDATE working_memory SET bytes = length(CAST(key AS BLOB)) + length(CAST(value AS BLOB));

-- Model tokens held for calls in flight: a call reserves its most before
-- it runs, so concurrent calls cannot overrun a daily budget. A reservation
-- whose run ended without releasing it lapses at `until_ms`.
CREATE TABLE token_reservations (
    id       INTEGER PRIMARY KEY,
    plugin   TEXT NOT NULL,
    day      TEXT NOT NULL,
    tokens   INTEGER NOT NULL,
    until_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX token_reservations_plugin ON token_reservations(plugin, day);

-- Fair share between plugins: every queued plugin job (not the operator's)
-- gets a key one past the larger of the smallest key waiting and its own
-- plugin's largest key waiting, and due jobs are leased in key order. So a
-- plugin with a backlog of thousands takes turns with a plugin that has one
-- job, instead of making it wait behind the whole backlog (start-time fair
-- queueing, one job the unit of work).
ALTER TABLE jobs ADD COLUMN fair_key INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_fair ON jobs(state, fair_key, id);
CREATE INDEX jobs_plugin_fair ON jobs(plugin, state, fair_key);
-- (`+priority` keeps the planner on jobs_fair, walked in key order: one
-- step, not a scan of the queue.)
CREATE TRIGGER jobs_fair_key AFTER INSERT ON jobs
WHEN NEW.state = 'queued' AND NEW.priority > 0
BEGIN
    UPDATE jobs SET fair_key = 1 + max(
        COALESCE((SELECT fair_key FROM jobs
                  WHERE state = 'queued' AND +priority > 0 AND id != NEW.id
                  ORDER BY fair_key LIMIT 1), 0),
        COALESCE((SELECT fair_key FROM jobs
                  WHERE plugin = NEW.plugin AND state = 'queued' AND id != NEW.id
                  ORDER BY fair_key DESC LIMIT 1), 0))
    WHERE id = NEW.id;
END;
