-- Same schema change as migrations/postgres/00002_decisions.sql, in SQLite's dialect; see there for why.
--
-- transitions.id is an INTEGER PRIMARY KEY AUTOINCREMENT, i.e. the rowid itself, made explicit. SQLite
-- cannot add such a column (ALTER TABLE ADD COLUMN takes neither PRIMARY KEY nor a non-constant
-- default), so the table is rebuilt: rows recorded before this migration keep their rowid, which is the
-- order they were inserted in (the table was only ever appended to). An implicit rowid would order new
-- rows just as well, but VACUUM may renumber the rowids of a table that has no INTEGER PRIMARY KEY.
-- (model, version, seq) becomes a UNIQUE constraint, which ON CONFLICT (model, version, seq) uses
-- exactly as it did the primary key. Nothing references transitions, so dropping the old table is safe
-- with foreign keys on; the rebuild runs in goose's transaction, so it is all or nothing.

-- +goose Up
CREATE TABLE decisions (
    model    TEXT      NOT NULL,
    version  INTEGER   NOT NULL,
    id       TEXT      NOT NULL CHECK (id <> ''),
    kind     TEXT      NOT NULL CHECK (kind IN ('approve', 'reject', 'verdict')),
    via      TEXT      NOT NULL CHECK (via IN ('update', 'signal')),
    approver TEXT      NOT NULL DEFAULT '',
    comment  TEXT      NOT NULL DEFAULT '',
    digest   TEXT      NOT NULL DEFAULT '',
    accepted BOOLEAN   NOT NULL CHECK (accepted IN (0, 1)),
    reason   TEXT      NOT NULL DEFAULT '',
    at       TIMESTAMP NOT NULL,
    PRIMARY KEY (model, version, id),
    FOREIGN KEY (model, version) REFERENCES versions (model, version)
);

CREATE INDEX decisions_model_at ON decisions (model, at);

CREATE TABLE transitions_new (
    id         INTEGER   PRIMARY KEY AUTOINCREMENT,
    model      TEXT      NOT NULL,
    version    INTEGER   NOT NULL,
    seq        BIGINT    NOT NULL,
    from_stage TEXT      NOT NULL,
    to_stage   TEXT      NOT NULL,
    actor      TEXT      NOT NULL DEFAULT '',
    reason     TEXT      NOT NULL DEFAULT '',
    at         TIMESTAMP NOT NULL,
    -- What makes a retried activity record a transition once (invariant 4).
    UNIQUE (model, version, seq),
    FOREIGN KEY (model, version) REFERENCES versions (model, version)
);

INSERT INTO transitions_new (id, model, version, seq, from_stage, to_stage, actor, reason, at)
    SELECT rowid, model, version, seq, from_stage, to_stage, actor, reason, at
    FROM transitions ORDER BY rowid;

DROP TABLE transitions;
ALTER TABLE transitions_new RENAME TO transitions;
CREATE INDEX transitions_model_at ON transitions (model, at);

-- +goose Down
CREATE TABLE transitions_old (
    model      TEXT      NOT NULL,
    version    INTEGER   NOT NULL,
    seq        BIGINT    NOT NULL,
    from_stage TEXT      NOT NULL,
    to_stage   TEXT      NOT NULL,
    actor      TEXT      NOT NULL DEFAULT '',
    reason     TEXT      NOT NULL DEFAULT '',
    at         TIMESTAMP NOT NULL,
    PRIMARY KEY (model, version, seq),
    FOREIGN KEY (model, version) REFERENCES versions (model, version)
);

-- The rowid carries the insertion order back into the old shape.
INSERT INTO transitions_old (rowid, model, version, seq, from_stage, to_stage, actor, reason, at)
    SELECT id, model, version, seq, from_stage, to_stage, actor, reason, at
    FROM transitions ORDER BY id;

DROP TABLE transitions;
ALTER TABLE transitions_old RENAME TO transitions;
CREATE INDEX transitions_model_at ON transitions (model, at);
DROP TABLE decisions;
