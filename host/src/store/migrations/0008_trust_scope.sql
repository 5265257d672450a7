-- Which plugins a trusted key may sign: a comma-separated list of plugin
-- ids, or `*` for any plugin. Keys trusted before scopes existed keep NULL
-- and count as trusted for any plugin (install says so, with the fix).
ALTER TABLE trusted_keys ADD COLUMN plugins TEXT;
