-- What the HTTP API lists and filters by (docs/architecture.md, "HTTP API").
--
-- versions.tags are key/value labels a training job gives a version (team, dataset, framework…); the
-- API filters on them, so they are a column, not a param. The index on (created_at, model, version)
-- serves the cross-model listing, whose keyset cursor is exactly that tuple.

-- +goose Up
ALTER TABLE versions ADD COLUMN tags JSONB NOT NULL DEFAULT '{}';
CREATE INDEX versions_created ON versions (created_at, model, version);
CREATE INDEX versions_stage_created ON versions (stage, created_at, model, version);

-- +goose Down
DROP INDEX versions_stage_created;
DROP INDEX versions_created;
ALTER TABLE versions DROP COLUMN tags;
