-- keel store, schema 7: the audit log and the event stream refuse UPDATE and
-- DELETE; audit entries of a record change carry the hash of the version
-- they wrote; webhook secrets are sealed, replays refused, refusals counted.

-- The sha256 of the version row (record_id, record_version) named by the
-- entry, part of the entry's own hash. NULL on entries written before this
-- schema, and on entries that name no version.
ALTER TABLE audit ADD COLUMN version_hash TEXT;

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event stream is append-only');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event stream is append-only');
END;

-- A hook's secret, sealed under the home's secrets key (nonce first).
-- `secret` keeps an earlier keel's plaintext only until `keel up` seals it;
-- it is '' otherwise.
ALTER TABLE webhooks ADD COLUMN sealed BLOB;
ALTER TABLE webhooks ADD COLUMN created_at TEXT;

-- Signatures accepted, remembered until their timestamp leaves the replay
-- window: the same signed request is accepted once.
CREATE TABLE webhook_nonces (
    plugin      TEXT NOT NULL,
    hook        TEXT NOT NULL,
    signature   TEXT NOT NULL,
    expires     INTEGER NOT NULL,   -- Unix seconds
    PRIMARY KEY (plugin, hook, signature)
) STRICT, WITHOUT ROWID;

-- Refused requests to a known hook, counted by reason instead of one audit
-- row each: bounded by hooks times reasons.
CREATE TABLE webhook_refusals (
    plugin      TEXT NOT NULL,
    hook        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    count       INTEGER NOT NULL,
    first_at    TEXT NOT NULL,
    last_at     TEXT NOT NULL,
    PRIMARY KEY (plugin, hook, reason)
) STRICT, WITHOUT ROWID;
