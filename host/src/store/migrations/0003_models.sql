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

-- Working memory that outlives a run: per plugin, optionally expiring
-- (unix milliseconds).
CREATE TABLE working_memory (
    plugin      TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    expires_at  INTEGER,
    PRIMARY KEY (plugin, key)
) STRICT, WITHOUT ROWID;

-- Long-term memories: immutable texts with metadata and sources, each with
-- its embedding (little-endian f32) from the model named beside it. A
-- correction is a new memory that supersedes the old one.
CREATE TABLE memories (
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    plugin        TEXT NOT NULL,
    by_label      TEXT NOT NULL,
    run_id        TEXT,
    text          TEXT NOT NULL,
    metadata      TEXT NOT NULL,
    sources       TEXT NOT NULL,
    at            TEXT NOT NULL,
    supersedes    TEXT,
    superseded_by TEXT,
    model         TEXT NOT NULL,
    vector        BLOB NOT NULL
) STRICT;

-- The kinds of each memory's sources, so recall shows a plugin only the
-- memories learned from records it may read.
CREATE TABLE memory_sources (
    seq       INTEGER NOT NULL,
    record_id TEXT NOT NULL,
    kind      TEXT NOT NULL,
    PRIMARY KEY (seq, record_id)
) STRICT, WITHOUT ROWID;

-- Full-text index of the memories (BM25 ranking), kept by trigger.
CREATE VIRTUAL TABLE memories_fts USING fts5(text, content = 'memories', content_rowid = 'seq');
CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, text) VALUES (new.seq, new.text);
END;
