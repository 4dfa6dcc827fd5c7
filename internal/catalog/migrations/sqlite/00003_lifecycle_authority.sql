-- Same schema change as migrations/postgres/00003_lifecycle_authority.sql, in SQLite's dialect.
-- What the model workflow needs to rebuild itself from the catalog (docs/architecture.md, "Where state
-- lives"), and an audit of refused messages.
--
-- models.last_version is the highest version number ever minted for the model. Minting reads and raises
-- it in the same transaction that inserts the version row, so a number is never minted twice, even if
-- the model's workflow was terminated and a fresh run starts with no memory, and even if a row were
-- deleted by hand.
--
-- refused_messages records every update or signal a workflow refused that is not a human decision (those
-- are in decisions): a forged promote, archive or restore, an unknown signal name. id is chosen by the
-- workflow and is unique per workflow run, so an activity retry is a no-op.

-- +goose Up
ALTER TABLE models ADD COLUMN last_version INTEGER NOT NULL DEFAULT 0;
UPDATE models SET last_version = COALESCE((SELECT MAX(version) FROM versions WHERE versions.model = models.name), 0);

CREATE TABLE refused_messages (
    workflow_id TEXT        NOT NULL,
    id          TEXT        NOT NULL CHECK (id <> ''),
    model       TEXT        NOT NULL,
    version     INTEGER     NOT NULL DEFAULT 0,
    name        TEXT        NOT NULL,
    via         TEXT        NOT NULL,
    reason      TEXT        NOT NULL,
    payload     TEXT        NOT NULL DEFAULT '',
    at          TIMESTAMP   NOT NULL,
    PRIMARY KEY (workflow_id, id)
);

CREATE INDEX refused_messages_model_at ON refused_messages (model, at);

-- deliveries is the state of each deployment event: pending while it is retried, then delivered,
-- refused (a receiver answered 4xx), failed (the retry limit passed) or superseded (a newer switch
-- happened first). starter check reports the ones not delivered; the model's redeliver update retries.
CREATE TABLE deliveries (
    model      TEXT        NOT NULL,
    event_id   TEXT        NOT NULL,
    version    INTEGER     NOT NULL,
    kind       TEXT        NOT NULL,
    previous   INTEGER     NOT NULL DEFAULT 0,
    status     TEXT        NOT NULL CHECK (status IN ('pending', 'delivered', 'refused', 'failed', 'superseded')),
    error      TEXT        NOT NULL DEFAULT '',
    at         TIMESTAMP   NOT NULL,
    updated_at TIMESTAMP   NOT NULL,
    PRIMARY KEY (model, event_id)
);

CREATE INDEX deliveries_model_version ON deliveries (model, version);

-- +goose Down
DROP TABLE deliveries;
DROP TABLE refused_messages;
ALTER TABLE models DROP COLUMN last_version;
