-- Model calls through the host: one row per call that was answered
-- (from a provider or the cache), the meter for budgets and `keel usage`.
-- Refused and failed calls are in the audit log only.
CREATE TABLE llm_calls (
    id          INTEGER PRIMARY KEY,
    run_id      TEXT,
    plugin      TEXT NOT NULL,
    day         TEXT NOT NULL,
    at          TEXT NOT NULL,
    op          TEXT NOT NULL,
    tier        TEXT NOT NULL,
    provider    TEXT NOT NULL,
    model       TEXT NOT NULL,
    tokens_in   INTEGER NOT NULL,
    tokens_out  INTEGER NOT NULL,
    cost_micros INTEGER NOT NULL,
    cacheable   INTEGER NOT NULL,
    cached      INTEGER NOT NULL,
    attempts    INTEGER NOT NULL,
    wall_ms     INTEGER NOT NULL
) STRICT;
CREATE INDEX llm_calls_plugin_day ON llm_calls(plugin, day);
CREATE INDEX llm_calls_run ON llm_calls(run_id);

-- Answers to temperature-0 completions, keyed by the request and the
-- models that would serve it (a change of model is a new key).
CREATE TABLE llm_cache (
    key         TEXT PRIMARY KEY,
    provider    TEXT NOT NULL,
    answer      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    hits        INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
