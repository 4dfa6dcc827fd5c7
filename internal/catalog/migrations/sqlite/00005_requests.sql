-- Same as migrations/postgres/00005_requests.sql, in SQLite's dialect.

-- +goose Up
CREATE TABLE requests (
    model      TEXT      NOT NULL,
    id         TEXT      NOT NULL CHECK (id <> ''),
    name       TEXT      NOT NULL,
    token      TEXT      NOT NULL CHECK (token <> ''),
    claimed_at TIMESTAMP NOT NULL,
    target     INTEGER,
    prior      INTEGER,
    outcome    TEXT,
    done_at    TIMESTAMP,
    PRIMARY KEY (model, id)
);

-- +goose Down
DROP TABLE requests;
