-- The bytes a run's network requests and connections moved, in and out.
ALTER TABLE runs ADD COLUMN bytes_in INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN bytes_out INTEGER NOT NULL DEFAULT 0;
