-- The catalog is a projection of the workflows' state (docs/architecture.md, "Where state lives"). The constraints
-- here are the last line of defence for the lifecycle invariants, so they live in the database rather
-- than in Go: at most one Production version per model, write-once registrations, an append-only trail.

-- +goose Up
CREATE TABLE models (
    name               TEXT PRIMARY KEY,
    -- Owned by the model workflow; may briefly disagree with versions.stage while the two activities
    -- that write them run, so it is a pointer, not a derived value.
    production_version INTEGER,
    seq                BIGINT      NOT NULL DEFAULT 0,
    policy             JSONB,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);

CREATE TABLE versions (
    model           TEXT        NOT NULL REFERENCES models (name),
    version         INTEGER     NOT NULL CHECK (version > 0),
    stage           TEXT        NOT NULL CHECK (stage IN ('Registered', 'Validating', 'PendingApproval',
                                    'Approved', 'Production', 'Archived', 'Rejected', 'Failed')),
    idempotency_key TEXT        NOT NULL CHECK (idempotency_key <> ''),
    workflow_id     TEXT        NOT NULL DEFAULT '',
    manifest_uri    TEXT        NOT NULL DEFAULT '',
    manifest_digest TEXT        NOT NULL DEFAULT '',
    metrics         JSONB       NOT NULL DEFAULT '{}',
    params          JSONB       NOT NULL DEFAULT '{}',
    source_run      TEXT        NOT NULL DEFAULT '',
    registered_by   TEXT        NOT NULL DEFAULT '',
    seq             BIGINT      NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (model, version),
    UNIQUE (model, idempotency_key)
);

-- Invariant 1: whatever runs concurrently or crashes, the database refuses a second Production row.
CREATE UNIQUE INDEX versions_one_production ON versions (model) WHERE stage = 'Production';

-- The production pointer can only name a version that exists (NULL skips the check).
ALTER TABLE models
    ADD CONSTRAINT models_production_version_fkey
    FOREIGN KEY (name, production_version) REFERENCES versions (model, version);

CREATE TABLE transitions (
    model      TEXT        NOT NULL,
    version    INTEGER     NOT NULL,
    seq        BIGINT      NOT NULL,
    from_stage TEXT        NOT NULL,
    to_stage   TEXT        NOT NULL,
    actor      TEXT        NOT NULL DEFAULT '',
    reason     TEXT        NOT NULL DEFAULT '',
    at         TIMESTAMPTZ NOT NULL,
    -- The key is what makes a retried activity record a transition once (invariant 4).
    PRIMARY KEY (model, version, seq),
    FOREIGN KEY (model, version) REFERENCES versions (model, version)
);

CREATE INDEX transitions_model_at ON transitions (model, at);

-- +goose Down
ALTER TABLE models DROP CONSTRAINT models_production_version_fkey;
DROP TABLE transitions;
DROP TABLE versions;
DROP TABLE models;
