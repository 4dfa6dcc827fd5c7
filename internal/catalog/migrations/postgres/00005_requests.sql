-- requests records each request to a model's workflow that is not idempotent by its content (a
-- rollback without --to means "the last archived version", which the rollback itself changes), under
-- the Temporal update ID it arrived with. Temporal delivers an update again when a workflow is reset
-- (every update accepted after the reset point is re-applied to the new run) and when a client retries
-- it across a continue-as-new; the model's workflow claims the ID before acting and records the
-- outcome, so a second delivery is refused instead of acted on (docs/architecture.md, "Resets").
--
-- token is chosen by the handler that claimed it (a side effect, so a reset that keeps the handler
-- replays the same token, and an activity retry presents it again). target and prior are the switch the
-- handler decided on, written before it moves anything, so that a handler taking over a request whose
-- run a reset ended finishes that switch instead of deciding another. outcome is NULL while the request
-- is being handled; the switch that moves the production pointer writes it in the same transaction, and
-- only while the token is still the claim's, so a switch of a run that lost its claim moves nothing.

-- +goose Up
CREATE TABLE requests (
    model      TEXT        NOT NULL,
    id         TEXT        NOT NULL CHECK (id <> ''),
    name       TEXT        NOT NULL,
    token      TEXT        NOT NULL CHECK (token <> ''),
    claimed_at TIMESTAMPTZ NOT NULL,
    target     INTEGER,
    prior      INTEGER,
    outcome    TEXT,
    done_at    TIMESTAMPTZ,
    PRIMARY KEY (model, id)
);

-- +goose Down
DROP TABLE requests;
