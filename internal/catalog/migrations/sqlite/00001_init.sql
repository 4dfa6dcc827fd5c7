-- Same schema as migrations/postgres, in SQLite's dialect: TIMESTAMP (which modernc.org/sqlite scans back
-- into time.Time) for TIMESTAMPTZ, TEXT checked with json_valid for JSONB, and the production pointer's
-- foreign key declared inline because SQLite resolves foreign keys when rows change, not when tables are
-- created.

-- +goose Up
CREATE TABLE models (
    name               TEXT PRIMARY KEY NOT NULL,
    production_version INTEGER,
    seq                BIGINT    NOT NULL DEFAULT 0,
    policy             TEXT CHECK (policy IS NULL OR json_valid(policy)),
    created_at         TIMESTAMP NOT NULL,
    updated_at         TIMESTAMP NOT NULL,
    FOREIGN KEY (name, production_version) REFERENCES versions (model, version)
);

CREATE TABLE versions (
    model           TEXT      NOT NULL REFERENCES models (name),
    version         INTEGER   NOT NULL CHECK (version > 0),
    stage           TEXT      NOT NULL CHECK (stage IN ('Registered', 'Validating', 'PendingApproval',
                                  'Approved', 'Production', 'Archived', 'Rejected', 'Failed')),
    idempotency_key TEXT      NOT NULL CHECK (idempotency_key <> ''),
    workflow_id     TEXT      NOT NULL DEFAULT '',
    manifest_uri    TEXT      NOT NULL DEFAULT '',
    manifest_digest TEXT      NOT NULL DEFAULT '',
    metrics         TEXT      NOT NULL DEFAULT '{}' CHECK (json_valid(metrics)),
    params          TEXT      NOT NULL DEFAULT '{}' CHECK (json_valid(params)),
    source_run      TEXT      NOT NULL DEFAULT '',
    registered_by   TEXT      NOT NULL DEFAULT '',
    seq             BIGINT    NOT NULL DEFAULT 0,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (model, version),
    UNIQUE (model, idempotency_key)
);

-- Invariant 1: whatever runs concurrently or crashes, the database refuses a second Production row.
CREATE UNIQUE INDEX versions_one_production ON versions (model) WHERE stage = 'Production';

CREATE TABLE transitions (
    model      TEXT      NOT NULL,
    version    INTEGER   NOT NULL,
    seq        BIGINT    NOT NULL,
    from_stage TEXT      NOT NULL,
    to_stage   TEXT      NOT NULL,
    actor      TEXT      NOT NULL DEFAULT '',
    reason     TEXT      NOT NULL DEFAULT '',
    at         TIMESTAMP NOT NULL,
    -- The key is what makes a retried activity record a transition once (invariant 4).
    PRIMARY KEY (model, version, seq),
    FOREIGN KEY (model, version) REFERENCES versions (model, version)
);

CREATE INDEX transitions_model_at ON transitions (model, at);

-- +goose Down
DROP TABLE transitions;
DROP TABLE models;
DROP TABLE versions;
