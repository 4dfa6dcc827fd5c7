package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// Request is one request to a model's workflow that must not be acted on twice, keyed by the Temporal
// update ID it arrived under (see the requests table, migration 00005).
type Request struct {
	Model     string     `db:"model" json:"model"`
	ID        string     `db:"id" json:"id"`
	Name      string     `db:"name" json:"name"`
	Token     string     `db:"token" json:"token"`
	ClaimedAt time.Time  `db:"claimed_at" json:"claimedAt"`
	Target    *int       `db:"target" json:"target,omitempty"`
	Prior     *int       `db:"prior" json:"prior,omitempty"`
	Outcome   *string    `db:"outcome" json:"outcome,omitempty"`
	DoneAt    *time.Time `db:"done_at" json:"doneAt,omitempty"`
}

const requestColumns = `model, id, name, token, claimed_at, target, prior, outcome, done_at`

// Claim is ClaimRequest's answer.
type Claim struct {
	// Mine: the caller may act on the request. It is the first delivery, a retry by the handler that
	// claimed it (same token), or a delivery after one that never finished (TakenOver): its run was
	// reset or ended while it handled the request, and Prior.Target, when set, is the switch it had
	// decided on and may have half made, which the caller finishes.
	Mine      bool `json:"mine"`
	TakenOver bool `json:"takenOver,omitempty"`
	// Prior is the claim as it was stored before this call (when there was one): what became of it
	// when Mine is false.
	Prior Request `json:"prior"`
	// Production is the model's production pointer as the catalog has it (0: none).
	Production int `json:"production"`
}

// MaxRequestOutcome bounds what is kept of a request's outcome.
const MaxRequestOutcome = 1024

// ErrRequestNotMine is returned by writes on behalf of a request whose claim another handler holds.
var ErrRequestNotMine = errors.New("the request is claimed by another handler")

// ClaimRequest claims request id of model for the handler holding token. A request already finished,
// under another token, is not the caller's: Mine is false and Prior says what became of it.
func (c *Catalog) ClaimRequest(ctx context.Context, model, name, id, token string) (Claim, error) {
	if model == "" || id == "" || token == "" {
		return Claim{}, fmt.Errorf("catalog: claim of request %q on model %q: model, id and token must be set", id, model)
	}
	var out Claim
	err := c.inTx(ctx, func(tx *sqlx.Tx) error {
		out = Claim{}
		var pv sql.NullInt64
		if err := tx.GetContext(ctx, &pv, tx.Rebind(`SELECT production_version FROM models WHERE name = ?`), model); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		out.Production = int(pv.Int64)
		res, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO requests (model, id, name, token, claimed_at)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, id) DO NOTHING`), model, id, name, token, now())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 1 {
			out.Mine = true
			return nil
		}
		r, err := getRequest(ctx, tx, model, id)
		if err != nil {
			return err
		}
		out.Prior = r
		switch {
		case r.Token == token:
			out.Mine = true
		case r.Outcome == nil:
			// Claimed by a handler that has not finished: its run was reset or ended under it (two
			// deliveries of one update ID to runs alive at once is not something Temporal does). The
			// swap is conditional, so a switch of that handler committing at this instant either wrote
			// its outcome first (and the request is done) or finds the claim gone and moves nothing.
			res, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE requests SET token = ?, claimed_at = ?
				WHERE model = ? AND id = ? AND token = ? AND outcome IS NULL`), token, now(), model, id, r.Token)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 1 {
				out.Mine, out.TakenOver = true, true
				return nil
			}
			if out.Prior, err = getRequest(ctx, tx, model, id); err != nil {
				return err
			}
			out.Mine = out.Prior.Token == token
		}
		return nil
	})
	if err != nil {
		return Claim{}, fmt.Errorf("catalog: claim of request %q on model %q: %w", id, model, err)
	}
	return out, nil
}

func getRequest(ctx context.Context, db sqlx.ExtContext, model, id string) (Request, error) {
	var r Request
	if err := sqlx.GetContext(ctx, db, &r, db.Rebind(`SELECT `+requestColumns+`
		FROM requests WHERE model = ? AND id = ?`), model, id); err != nil {
		return Request{}, err
	}
	r.ClaimedAt = r.ClaimedAt.UTC()
	if r.DoneAt != nil {
		t := r.DoneAt.UTC()
		r.DoneAt = &t
	}
	return r, nil
}

// SetRequestTarget records the switch the handler holding token decided on for the request: target
// replacing prior (0: none). ErrRequestNotMine when the claim is not the caller's, or is finished.
func (c *Catalog) SetRequestTarget(ctx context.Context, model, id, token string, target, prior int) error {
	res, err := c.db.ExecContext(ctx, c.db.Rebind(`UPDATE requests SET target = ?, prior = ?
		WHERE model = ? AND id = ? AND token = ? AND outcome IS NULL`), target, prior, model, id, token)
	if err == nil {
		var n int64
		if n, err = res.RowsAffected(); err == nil && n == 0 {
			err = ErrRequestNotMine
		}
	}
	if err != nil {
		return fmt.Errorf("catalog: target of request %q on model %q: %w", id, model, err)
	}
	return nil
}

// FinishRequest records the outcome of a request the caller claimed with token. A request whose outcome
// is written already is left as it is; one another handler took over is ErrRequestNotMine.
func (c *Catalog) FinishRequest(ctx context.Context, model, id, token, outcome string) error {
	err := finishRequest(ctx, c.db, model, id, token, outcome)
	if err != nil {
		return fmt.Errorf("catalog: finish request %q on model %q: %w", id, model, err)
	}
	return nil
}

// finishRequest writes the outcome unless one is written (a retry of the same finish keeps the first).
func finishRequest(ctx context.Context, db sqlx.ExtContext, model, id, token, outcome string) error {
	res, err := db.ExecContext(ctx, db.Rebind(`UPDATE requests SET outcome = COALESCE(outcome, ?), done_at = COALESCE(done_at, ?)
		WHERE model = ? AND id = ? AND token = ?`), truncate(outcome, MaxRequestOutcome), now(), model, id, token)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return ErrRequestNotMine
	}
	return nil
}

// GetRequest returns the stored claim of request id of model, ErrNotFound if there is none.
func (c *Catalog) GetRequest(ctx context.Context, model, id string) (Request, error) {
	r, err := getRequest(ctx, c.db, model, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Request{}, fmt.Errorf("catalog: request %q on model %q: %w", id, model, ErrNotFound)
	}
	if err != nil {
		return Request{}, fmt.Errorf("catalog: request %q on model %q: %w", id, model, err)
	}
	return r, nil
}
