-- keel store, schema 1. Released migrations are never edited: add a new file.

CREATE TABLE plugins (
    id            TEXT PRIMARY KEY,
    version       TEXT NOT NULL,
    world         TEXT NOT NULL,
    digest        TEXT NOT NULL,
    manifest      TEXT NOT NULL,   -- keel.toml as JSON
    grant_json    TEXT NOT NULL,   -- the grant in force
    installed_at  TEXT NOT NULL,
    cursor        TEXT             -- a connector's last cursor
) STRICT;

CREATE TABLE runs (
    id            TEXT PRIMARY KEY,
    plugin        TEXT NOT NULL,
    plugin_version TEXT NOT NULL,
    digest        TEXT NOT NULL,
    export        TEXT NOT NULL,   -- sync | handle
    trigger_json  TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    ended_at      TEXT,
    outcome       TEXT NOT NULL,   -- running | ok | error | trap | deadline | fuel | memory
    detail        TEXT,
    fuel_consumed INTEGER,
    memory_peak   INTEGER,
    wall_us       INTEGER
) STRICT;
CREATE INDEX runs_plugin ON runs(plugin, started_at);

CREATE TABLE records (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    body        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    updated_by  TEXT NOT NULL
) STRICT;
CREATE INDEX records_kind ON records(kind, id);

-- Every version, with its provenance. A rowid table: rows carry whole
-- bodies, which WITHOUT ROWID b-trees handle poorly.
CREATE TABLE versions (
    seq         INTEGER PRIMARY KEY,
    record_id   TEXT NOT NULL REFERENCES records(id),
    version     INTEGER NOT NULL,
    body        TEXT NOT NULL,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,   -- plugin id@version, or operator
    run_id      TEXT REFERENCES runs(id),
    digest      TEXT,
    trigger_json TEXT,
    sources     TEXT NOT NULL,   -- JSON array of record ids
    models      TEXT NOT NULL,   -- JSON array
    confidence  REAL,
    note        TEXT,
    UNIQUE (record_id, version)
) STRICT;

CREATE TABLE identities (
    source      TEXT NOT NULL,
    external_id TEXT NOT NULL,
    record_id   TEXT NOT NULL REFERENCES records(id),
    PRIMARY KEY (source, external_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE links (
    from_id     TEXT NOT NULL REFERENCES records(id),
    to_id       TEXT NOT NULL REFERENCES records(id),
    rel         TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    run_id      TEXT REFERENCES runs(id),
    PRIMARY KEY (from_id, rel, to_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX links_to ON links(to_id);

-- Append-only: no row is ever deleted, so rowids never repeat.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    record_id   TEXT,
    version     INTEGER,
    run_id      TEXT,
    at          TEXT NOT NULL,
    data        TEXT
) STRICT;

-- Durable jobs: written by `schedule`, leased by workers with a deadline,
-- retried with backoff, dead-lettered after their last attempt.
CREATE TABLE jobs (
    id            TEXT PRIMARY KEY,
    plugin        TEXT NOT NULL,
    input         TEXT NOT NULL,
    run_at        TEXT NOT NULL,   -- due (RFC 3339 UTC, millisecond precision)
    priority      INTEGER NOT NULL DEFAULT 2,  -- 0 operator, 1 event, 2 schedule
    state         TEXT NOT NULL,   -- queued | leased | done | dead
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL DEFAULT 5,
    lease_owner   TEXT,
    lease_until   TEXT,
    last_error    TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    created_by_run TEXT REFERENCES runs(id),
    cause         TEXT NOT NULL DEFAULT 'schedule',  -- schedule | interval | cron | event
    event_seq     INTEGER,         -- for cause = event: the event
    fire_key      TEXT UNIQUE,     -- one job per trigger firing, across restarts
    reviewed_at   TEXT             -- a dead job the operator dismissed
) STRICT;
CREATE INDEX jobs_due ON jobs(state, priority, run_at);

-- When each time trigger fires next: (plugin, index in its manifest).
CREATE TABLE trigger_state (
    plugin      TEXT NOT NULL,
    trigger     INTEGER NOT NULL,
    next_fire   TEXT NOT NULL,
    PRIMARY KEY (plugin, trigger)
) STRICT, WITHOUT ROWID;

-- How far the scheduler has read the event stream.
CREATE TABLE cursors (
    name        TEXT PRIMARY KEY,
    value       INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE outbox (
    id          TEXT PRIMARY KEY,
    channel     TEXT NOT NULL,
    message     TEXT NOT NULL,
    state       TEXT NOT NULL,   -- queued | needs-review | approved | rejected
    confidence  REAL,
    plugin      TEXT NOT NULL,
    run_id      TEXT REFERENCES runs(id),
    created_at  TEXT NOT NULL,
    sources     TEXT NOT NULL DEFAULT '[]',  -- JSON array of record ids
    note        TEXT,
    original_message TEXT,       -- the plugin's draft, when the operator edited it
    decided_at  TEXT,
    decision_note TEXT
) STRICT;

-- A retried call with the same key returns the first result.
CREATE TABLE idempotency (
    plugin      TEXT NOT NULL,
    key         TEXT NOT NULL,
    action      TEXT NOT NULL,
    result      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (plugin, key)
) STRICT;

-- Append-only, hash-chained. No code path updates or deletes a row.
CREATE TABLE audit (
    seq           INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    run_id        TEXT,
    plugin        TEXT NOT NULL,
    plugin_version TEXT,
    digest        TEXT,
    action        TEXT NOT NULL,
    record_id     TEXT,
    record_version INTEGER,
    outcome       TEXT NOT NULL,   -- allowed | denied | error
    detail        TEXT NOT NULL,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
) STRICT;
CREATE INDEX audit_record ON audit(record_id);
CREATE INDEX audit_run ON audit(run_id);
CREATE INDEX audit_plugin ON audit(plugin);
