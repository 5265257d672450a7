-- Recall narrowed by who remembered a memory and by a source record.
CREATE INDEX memories_plugin ON memories (plugin, seq);
CREATE INDEX memory_sources_record ON memory_sources (record_id, seq);
