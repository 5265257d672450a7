-- Which plugins a trusted key may sign: a comma-separated list of plugin
-- ids, or `*` for any plugin. Keys trusted before scopes existed keep NULL
-- and count as trusted for any plugin (install says so, with the fix).
ALTER TABLE trusted_keys ADD COLUMN plugins TEXT;

-- A manifest's policy.review_below is now only a proposal on top of the
-- operator's review gate, and its default is 0.0 (none). Rows stored before
-- hold the old default 1.0 whether or not the manifest said it; read as a
-- proposal it would keep every relaxed gate at 1.0. The next install or
-- update of a plugin stores its manifest's own value again.
UPDATE plugins SET manifest = json_set(manifest, '$.policy.review_below', 0.0)
    WHERE json_extract(manifest, '$.policy.review_below') = 1.0;
UPDATE plugin_versions SET manifest = json_set(manifest, '$.policy.review_below', 0.0)
    WHERE json_extract(manifest, '$.policy.review_below') = 1.0;
