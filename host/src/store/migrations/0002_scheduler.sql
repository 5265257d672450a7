-- keel store, schema 2: delivery, causation depth, rate limits, webhooks, provided actions, review of unsure versions, plugin origins and trusted keys.

-- The job that delivers a queued or approved send, once one is queued; the
-- receipt once the channel has it out.
ALTER TABLE outbox ADD COLUMN delivery_job TEXT;
ALTER TABLE outbox ADD COLUMN delivered_at TEXT;
ALTER TABLE outbox ADD COLUMN delivered_by TEXT;   -- channel plugin id@version
ALTER TABLE outbox ADD COLUMN receipt TEXT;        -- the channel's id for what it delivered
CREATE INDEX outbox_undelivered ON outbox(state) WHERE delivery_job IS NULL;

-- Causation: which job a run ran, and how deep in a cascade each job is
-- (0 for the operator's and time triggers' jobs, +1 per event or schedule
-- hop). `keel up` stops jobs past its depth limit, and a plugin's wake-up
-- by its own writes, as `stopped` jobs for the operator to review.
ALTER TABLE runs ADD COLUMN job_id TEXT;
ALTER TABLE jobs ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;

-- Leasing walks the due index in order, so it ends with the id.
DROP INDEX jobs_due;
CREATE INDEX jobs_due ON jobs(state, priority, run_at, id);

-- Per-plugin rate limits: a token bucket per plugin, shared by every
-- worker and process, refilled by elapsed time when read.
CREATE TABLE rate_buckets (
    plugin      TEXT PRIMARY KEY,
    tokens      REAL NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT, WITHOUT ROWID;

-- Webhooks a plugin declares: POST /hooks/<plugin>/<hook> on `keel up
-- --listen`, authenticated by the hook's secret (made at install, kept
-- across reinstalls).
CREATE TABLE webhooks (
    plugin      TEXT NOT NULL,
    hook        TEXT NOT NULL,
    secret      TEXT NOT NULL,
    max_bytes   INTEGER NOT NULL,
    PRIMARY KEY (plugin, hook)
) STRICT, WITHOUT ROWID;

-- A provider's run started by another run's `invoke`: the caller's run.
ALTER TABLE runs ADD COLUMN parent_run TEXT;

-- A version written with less confidence than its writer's review
-- threshold waits for the operator: pending, then approved, edited or
-- rejected.
ALTER TABLE versions ADD COLUMN review TEXT;
CREATE INDEX versions_review ON versions(review) WHERE review = 'pending';

-- Where each installed plugin came from (a folder, a package file) and who
-- signed its package; the public keys the operator trusts to sign.
ALTER TABLE plugins ADD COLUMN source TEXT;
ALTER TABLE plugins ADD COLUMN signer TEXT;
ALTER TABLE plugins ADD COLUMN package_digest TEXT;  -- over manifest, component, readme
CREATE TABLE trusted_keys (
    name        TEXT PRIMARY KEY,
    key         TEXT NOT NULL UNIQUE,   -- ed25519:<hex>
    added_at    TEXT NOT NULL
) STRICT;

-- Installs an update or reinstall replaced, newest last: what
-- `keel plugin rollback` goes back to (its files are kept beside the
-- plugin's folder).
CREATE TABLE plugin_versions (
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL,
    version       TEXT NOT NULL,
    world         TEXT NOT NULL,
    digest        TEXT NOT NULL,
    manifest      TEXT NOT NULL,
    grant_json    TEXT NOT NULL,
    source        TEXT,
    signer        TEXT,
    package_digest TEXT,
    installed_at  TEXT NOT NULL,
    replaced_at   TEXT NOT NULL
) STRICT;
CREATE INDEX plugin_versions_id ON plugin_versions(id, seq);
