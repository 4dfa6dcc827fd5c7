-- Decisions and an insertion order for the audit trail.
--
-- decisions is the append-only record of every human decision and validator verdict a version received,
-- accepted or refused, with why: the workflows' message history outlives Temporal's retention only here.
--
-- transitions.id is the order in which transitions were recorded. Timestamps alone cannot order the
-- trail: the model workflow stamps the archiving of the old production version and the promotion of the
-- new one with the same workflow time, and seq numbers belong to each version, so neither (at, seq) nor
-- (at, version, seq) says which of two versions' transitions at one instant came first. ProductionAt
-- replays the trail in (at, id) order. The primary key stays (model, version, seq): it is what makes a
-- retried activity record a transition once.

-- +goose Up
CREATE TABLE decisions (
    model    TEXT        NOT NULL,
    version  INTEGER     NOT NULL,
    -- Assigned by the workflow, stable across activity retries: the key makes a retry a no-op.
    id       TEXT        NOT NULL CHECK (id <> ''),
    kind     TEXT        NOT NULL CHECK (kind IN ('approve', 'reject', 'verdict')),
    via      TEXT        NOT NULL CHECK (via IN ('update', 'signal')),
    approver TEXT        NOT NULL DEFAULT '',
    comment  TEXT        NOT NULL DEFAULT '',
    digest   TEXT        NOT NULL DEFAULT '',
    accepted BOOLEAN     NOT NULL,
    reason   TEXT        NOT NULL DEFAULT '',
    at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (model, version, id),
    FOREIGN KEY (model, version) REFERENCES versions (model, version)
);

CREATE INDEX decisions_model_at ON decisions (model, at);

-- Rows recorded before this migration are numbered in their physical order, which for a table that is
-- only ever appended to is the order they were inserted in (an explicit ORDER BY ctid rather than
-- whatever order ADD COLUMN's rewrite happens to scan in: synchronized scans may start mid-table).
ALTER TABLE transitions ADD COLUMN id BIGINT;
UPDATE transitions t SET id = o.n
    FROM (SELECT ctid AS row_ctid, row_number() OVER (ORDER BY ctid) AS n FROM transitions) o
    WHERE t.ctid = o.row_ctid;
CREATE SEQUENCE transitions_id_seq AS BIGINT OWNED BY transitions.id;
SELECT setval('transitions_id_seq', COALESCE(MAX(id), 0) + 1, false) FROM transitions;
ALTER TABLE transitions
    ALTER COLUMN id SET DEFAULT nextval('transitions_id_seq'),
    ALTER COLUMN id SET NOT NULL;
CREATE UNIQUE INDEX transitions_id ON transitions (id);

-- +goose Down
DROP INDEX transitions_id;
-- Drops the sequence too (OWNED BY).
ALTER TABLE transitions DROP COLUMN id;
DROP TABLE decisions;
