package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/modelreg/modelreg/internal/names"
)

const insertModelSQL = `INSERT INTO models (name, seq, created_at, updated_at) VALUES (?, 0, ?, ?)
	ON CONFLICT (name) DO NOTHING`

// EnsureModel creates the model if it does not exist yet.
func (c *Catalog) EnsureModel(ctx context.Context, name string) error {
	if err := names.ValidateModel(name); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	return ensureModel(ctx, c.db, name)
}

func ensureModel(ctx context.Context, e sqlx.ExtContext, name string) error {
	at := now()
	if _, err := e.ExecContext(ctx, e.Rebind(insertModelSQL), name, at, at); err != nil {
		return fmt.Errorf("catalog: ensure model %q: %w", name, err)
	}
	return nil
}

// GetModel returns the model, with its policy.
func (c *Catalog) GetModel(ctx context.Context, name string) (Model, error) {
	var r modelRow
	err := c.db.GetContext(ctx, &r, c.db.Rebind(`SELECT `+modelColumns+` FROM models WHERE name = ?`), name)
	if errors.Is(err, sql.ErrNoRows) {
		return Model{}, fmt.Errorf("catalog: model %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Model{}, fmt.Errorf("catalog: get model %q: %w", name, err)
	}
	return r.model()
}

// ListModels returns every model, ordered by name.
func (c *Catalog) ListModels(ctx context.Context) ([]Model, error) {
	var rows []modelRow
	if err := c.db.SelectContext(ctx, &rows, `SELECT `+modelColumns+` FROM models ORDER BY name`); err != nil {
		return nil, fmt.Errorf("catalog: list models: %w", err)
	}
	out := make([]Model, 0, len(rows))
	for _, r := range rows {
		m, err := r.model()
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// SetPolicy replaces the model's policy, creating the model if it does not exist yet.
func (c *Catalog) SetPolicy(ctx context.Context, name string, p Policy) error {
	if err := names.ValidateModel(name); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	policy, err := encodePolicy(name, p)
	if err != nil {
		return err
	}
	at := now()
	_, err = c.db.ExecContext(ctx, c.db.Rebind(`
		INSERT INTO models (name, seq, policy, created_at, updated_at) VALUES (?, 0, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at`),
		name, policy, at, at)
	if err != nil {
		return fmt.Errorf("catalog: set policy of model %q: %w", name, err)
	}
	return nil
}

// GetPolicy returns the model's policy: the zero Policy if none was set, ErrNotFound if the model does
// not exist.
func (c *Catalog) GetPolicy(ctx context.Context, name string) (Policy, error) {
	var s sql.NullString
	err := c.db.GetContext(ctx, &s, c.db.Rebind(`SELECT policy FROM models WHERE name = ?`), name)
	if errors.Is(err, sql.ErrNoRows) {
		return Policy{}, fmt.Errorf("catalog: model %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Policy{}, fmt.Errorf("catalog: get policy of model %q: %w", name, err)
	}
	return decodePolicy(name, s)
}

// SetProduction points the model's production pointer at version (nil clears it), unless the model
// already holds a change with a sequence number >= seq: applied is false then, and nothing is written.
// The same change again (seq and version both equal to what is stored) is applied: a retry of a write
// whose answer was lost, which for a local activity is any worker dying before its workflow task
// completes, must not read as a newer change. The version must exist (ErrNotFound otherwise); its
// stage is recorded separately, by RecordTransition.
func (c *Catalog) SetProduction(ctx context.Context, model string, version *int, seq int64) (applied bool, err error) {
	return setProduction(ctx, c.db, model, version, seq)
}

// Promoted is the audit of a promotion that SetProductionPromoting records with the pointer: who
// decided it and why (the version's own transition says the same).
type Promoted struct {
	Actor  string    `json:"actor"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// SetProductionPromoting is SetProduction for a promotion: when it moves the pointer to version it also
// moves that version from Approved to Production (its next seq, with p's audit row) in the same
// transaction, so that the pointer never names a version the catalog still has waiting, whatever becomes
// of the version's workflow (an operator can terminate it in the instant of its switch). The version's
// workflow records the same transition afterwards, which then finds it done. A version not Approved
// (already moved) is left as it is. It reports whether the pointer moved.
func (c *Catalog) SetProductionPromoting(ctx context.Context, model string, version int, seq int64, p Promoted) (bool, error) {
	var applied bool
	err := c.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		v := version
		if applied, err = setProduction(ctx, tx, model, &v, seq); err != nil || !applied {
			return err
		}
		res, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE versions SET stage = ?, seq = seq + 1, updated_at = ?
			WHERE model = ? AND version = ? AND stage = ?`), StageProduction, now(), model, version, StageApproved)
		if isUniqueViolation(err) {
			return errProductionTaken
		}
		if err != nil {
			return fmt.Errorf("catalog: promote model %q v%d: %w", model, version, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		var vseq int64
		if err := tx.GetContext(ctx, &vseq, tx.Rebind(`SELECT seq FROM versions WHERE model = ? AND version = ?`), model, version); err != nil {
			return fmt.Errorf("catalog: promote model %q v%d: %w", model, version, err)
		}
		at := now()
		if !p.At.IsZero() {
			at = utc(p.At)
		}
		row := transitionRow(Transition{Model: model, Version: version, Seq: vseq, From: StageApproved, To: StageProduction, Actor: p.Actor, Reason: p.Reason})
		row.At = at
		if _, err := tx.NamedExecContext(ctx, insertTransitionSQL, row); err != nil {
			return fmt.Errorf("catalog: record promotion of model %q v%d: %w", model, version, err)
		}
		return nil
	})
	if errors.Is(err, errProductionTaken) {
		return false, c.productionConflict(ctx, Transition{Model: model, Version: version, To: StageProduction})
	}
	if err != nil {
		return false, err
	}
	return applied, nil
}

// RequestDone names a claimed request (ClaimRequest) and its outcome.
type RequestDone struct {
	ID, Token, Outcome string
}

// SetProductionFinishing is SetProduction on behalf of a claimed request (ClaimRequest): when it applies
// the change it records done as the request's outcome in the same transaction, and it applies nothing
// when the claim is no longer done.Token's (ErrRequestNotMine). So a request whose switch moved the
// pointer is never seen as unfinished, and a switch of a run a reset ended, committing after another
// delivery took its request over, moves nothing.
func (c *Catalog) SetProductionFinishing(ctx context.Context, model string, version *int, seq int64, done RequestDone) (bool, error) {
	var applied bool
	err := c.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		if applied, err = setProduction(ctx, tx, model, version, seq); err != nil || !applied {
			return err
		}
		if err := finishRequest(ctx, tx, model, done.ID, done.Token, done.Outcome); err != nil {
			return fmt.Errorf("catalog: finish request %q on model %q: %w", done.ID, model, err)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return applied, nil
}

func setProduction(ctx context.Context, db sqlx.ExtContext, model string, version *int, seq int64) (applied bool, err error) {
	var pv sql.NullInt64
	label := "none"
	if version != nil {
		pv = sql.NullInt64{Int64: int64(*version), Valid: true}
		label = fmt.Sprintf("v%d", *version)
	}
	res, err := db.ExecContext(ctx, db.Rebind(`
		UPDATE models SET production_version = ?, seq = ?, updated_at = ?
		WHERE name = ? AND (seq < ? OR seq = ? AND production_version IS NOT DISTINCT FROM ?)`),
		pv, seq, now(), model, seq, seq, pv)
	if isForeignKeyViolation(err) {
		return false, fmt.Errorf("catalog: set production of model %q to %s: version %w", model, label, ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("catalog: set production of model %q to %s: %w", model, label, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("catalog: set production of model %q: %w", model, err)
	}
	if n > 0 {
		return true, nil
	}
	// Nothing changed: either the fence held (a newer change is stored) or there is no such model.
	var exists int
	err = sqlx.GetContext(ctx, db, &exists, db.Rebind(`SELECT 1 FROM models WHERE name = ?`), model)
	if errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("catalog: set production of model %q: model %w", model, ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("catalog: set production of model %q: %w", model, err)
	}
	return false, nil
}

// Production returns the version the model's production pointer names, or ErrNotFound if the model
// does not exist or has nothing in production.
func (c *Catalog) Production(ctx context.Context, model string) (Version, error) {
	var r versionRow
	err := c.db.GetContext(ctx, &r, c.db.Rebind(`
		SELECT `+versionColumnsV+`
		FROM models m JOIN versions v ON v.model = m.name AND v.version = m.production_version
		WHERE m.name = ?`), model)
	if errors.Is(err, sql.ErrNoRows) {
		return Version{}, fmt.Errorf("catalog: no production version of model %q: %w", model, ErrNotFound)
	}
	if err != nil {
		return Version{}, fmt.Errorf("catalog: production version of model %q: %w", model, err)
	}
	// The pointer and the version's stage are written by two activities; between them, or after a
	// hand edit, they can disagree. A deployer must never be handed a version that is not in Production.
	if r.Stage != StageProduction {
		return Version{}, fmt.Errorf("catalog: the production pointer of model %q names v%d, whose stage is %s, not %s: %w",
			model, r.Version, r.Stage, StageProduction, ErrInconsistent)
	}
	return r.version()
}
