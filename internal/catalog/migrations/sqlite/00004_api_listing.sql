-- Same as migrations/postgres/00004_api_listing.sql, in SQLite's dialect.

-- +goose Up
ALTER TABLE versions ADD COLUMN tags TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(tags));
CREATE INDEX versions_created ON versions (created_at, model, version);
CREATE INDEX versions_stage_created ON versions (stage, created_at, model, version);

-- +goose Down
DROP INDEX versions_stage_created;
DROP INDEX versions_created;
ALTER TABLE versions DROP COLUMN tags;
