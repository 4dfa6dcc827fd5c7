package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Decision kinds and channels, as stored in the decisions table.
const (
	DecisionApprove = "approve"
	DecisionReject  = "reject"
	DecisionVerdict = "verdict"

	ViaUpdate = "update"
	ViaSignal = "signal"
)

var (
	decisionKinds = []string{DecisionApprove, DecisionReject, DecisionVerdict}
	decisionVias  = []string{ViaUpdate, ViaSignal}
)

type decisionRow struct {
	Model    string    `db:"model"`
	Version  int       `db:"version"`
	ID       string    `db:"id"`
	Kind     string    `db:"kind"`
	Via      string    `db:"via"`
	Approver string    `db:"approver"`
	Comment  string    `db:"comment"`
	Digest   string    `db:"digest"`
	Accepted bool      `db:"accepted"`
	Reason   string    `db:"reason"`
	At       time.Time `db:"at"`
}

const decisionColumns = `model, version, id, kind, via, approver, comment, digest, accepted, reason, at`

// RecordDecision appends d to the decisions audit table. It is idempotent on (model, version, id): a
// retry with the same id is a successful no-op, whatever it carries (the first write wins). A zero At
// is recorded as now. An unknown version is ErrNotFound; an empty id or an unknown kind or via is
// refused before anything is written.
func (c *Catalog) RecordDecision(ctx context.Context, d Decision) error {
	what := fmt.Sprintf("decision %q of model %q v%d", d.ID, d.Model, d.Version)
	switch {
	case d.ID == "":
		return fmt.Errorf("catalog: decision of model %q v%d: id is empty", d.Model, d.Version)
	case !slices.Contains(decisionKinds, d.Kind):
		return fmt.Errorf("catalog: %s: unknown kind %q (want approve, reject or verdict)", what, d.Kind)
	case !slices.Contains(decisionVias, d.Via):
		return fmt.Errorf("catalog: %s: unknown via %q (want update or signal)", what, d.Via)
	}
	row := decisionRow(d)
	if d.At.IsZero() {
		row.At = now()
	} else {
		row.At = utc(d.At)
	}
	_, err := c.db.NamedExecContext(ctx, `INSERT INTO decisions (`+decisionColumns+`)
		VALUES (:model, :version, :id, :kind, :via, :approver, :comment, :digest, :accepted, :reason, :at)
		ON CONFLICT (model, version, id) DO NOTHING`, row)
	if isForeignKeyViolation(err) {
		return fmt.Errorf("catalog: record %s: version %w", what, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("catalog: record %s: %w", what, err)
	}
	return nil
}

// Decisions returns the decisions of one version, or of every version of the model when version is 0,
// ordered by time, then version, then id. An unknown model has none.
func (c *Catalog) Decisions(ctx context.Context, model string, version int) ([]Decision, error) {
	var rows []decisionRow
	var err error
	if version == 0 {
		err = c.db.SelectContext(ctx, &rows, c.db.Rebind(`SELECT `+decisionColumns+` FROM decisions
			WHERE model = ? ORDER BY at, version, id`), model)
	} else {
		err = c.db.SelectContext(ctx, &rows, c.db.Rebind(`SELECT `+decisionColumns+` FROM decisions
			WHERE model = ? AND version = ? ORDER BY at, version, id`), model, version)
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: decisions of model %q: %w", model, err)
	}
	out := make([]Decision, 0, len(rows))
	for _, r := range rows {
		d := Decision(r)
		d.At = r.At.UTC()
		out = append(out, d)
	}
	return out, nil
}

// ProductionAt returns the version of the model that was in production at instant at, 0 if none was.
// It is derived from the audit trail, which outlives Temporal's retention and the production pointer's
// history: the model's transitions up to and including at are replayed in the order they were recorded
// at each instant. A transition to Production makes its version the production version; a transition
// out of Production of that same version leaves none. (The registry archives the old version before
// the new one enters Production, often at the same instant, so recording order decides ties.)
// An unknown model is ErrNotFound.
func (c *Catalog) ProductionAt(ctx context.Context, model string, at time.Time) (int, error) {
	var exists int
	err := c.db.GetContext(ctx, &exists, c.db.Rebind(`SELECT 1 FROM models WHERE name = ?`), model)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("catalog: production version of model %q at %s: model %w", model, at.Format(time.RFC3339Nano), ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("catalog: production version of model %q at %s: %w", model, at.Format(time.RFC3339Nano), err)
	}
	// Stored times are UTC and whole microseconds (see utc), so comparing with at in the same form is
	// exact on both dialects; on SQLite, which compares the text, it is also necessary.
	var rows []struct {
		Version int    `db:"version"`
		From    string `db:"from_stage"`
		To      string `db:"to_stage"`
	}
	err = c.db.SelectContext(ctx, &rows, c.db.Rebind(`SELECT version, from_stage, to_stage FROM transitions
		WHERE model = ? AND at <= ? ORDER BY at, id`), model, utc(at))
	if err != nil {
		return 0, fmt.Errorf("catalog: production version of model %q at %s: %w", model, at.Format(time.RFC3339Nano), err)
	}
	production := 0
	for _, r := range rows {
		switch {
		case r.To == StageProduction:
			production = r.Version
		case r.From == StageProduction && r.Version == production:
			production = 0
		}
	}
	return production, nil
}
