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
	Outcome   *string    `db:"outcome" json:"outcome,omitempty"`
	DoneAt    *time.Time `db:"done_at" json:"doneAt,omitempty"`
}

// Claim is ClaimRequest's answer.
type Claim struct {
	// Mine: the caller may act on the request. It is the first delivery, a retry by the handler that
	// claimed it (same token), or a delivery after one that never finished (TakenOver): a handler cut off
	// by a reset before it moved anything.
	Mine      bool `json:"mine"`
	TakenOver bool `json:"takenOver,omitempty"`
	// Prior is the claim already stored when Mine is false: its outcome and when it was handled.
	Prior Request `json:"prior"`
}

// MaxRequestOutcome bounds what is kept of a request's outcome.
const MaxRequestOutcome = 1024

// ClaimRequest claims request id of model for the handler holding token. A request already finished,
// under another token, is not the caller's: Mine is false and Prior says what became of it.
func (c *Catalog) ClaimRequest(ctx context.Context, model, name, id, token string) (Claim, error) {
	if model == "" || id == "" || token == "" {
		return Claim{}, fmt.Errorf("catalog: claim of request %q on model %q: model, id and token must be set", id, model)
	}
	var out Claim
	err := c.inTx(ctx, func(tx *sqlx.Tx) error {
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
		var r Request
		if err := tx.GetContext(ctx, &r, tx.Rebind(`SELECT model, id, name, token, claimed_at, outcome, done_at
			FROM requests WHERE model = ? AND id = ?`), model, id); err != nil {
			return err
		}
		r.ClaimedAt = r.ClaimedAt.UTC()
		if r.DoneAt != nil {
			t := r.DoneAt.UTC()
			r.DoneAt = &t
		}
		switch {
		case r.Token == token:
			out.Mine = true
		case r.Outcome == nil:
			// Claimed by a handler that neither finished nor moved the pointer (the switch writes the
			// outcome with the pointer): its run was reset or ended under it.
			if _, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE requests SET token = ?, claimed_at = ? WHERE model = ? AND id = ?`),
				token, now(), model, id); err != nil {
				return err
			}
			out.Mine, out.TakenOver = true, true
		default:
			out.Prior = r
		}
		return nil
	})
	if err != nil {
		return Claim{}, fmt.Errorf("catalog: claim of request %q on model %q: %w", id, model, err)
	}
	return out, nil
}

// FinishRequest records the outcome of a request the caller claimed with token. A request whose outcome
// is written already, or that another handler took over, is left as it is.
func (c *Catalog) FinishRequest(ctx context.Context, model, id, token, outcome string) error {
	err := finishRequest(ctx, c.db, model, id, token, outcome)
	if err != nil {
		return fmt.Errorf("catalog: finish request %q on model %q: %w", id, model, err)
	}
	return nil
}

func finishRequest(ctx context.Context, db sqlx.ExtContext, model, id, token, outcome string) error {
	_, err := db.ExecContext(ctx, db.Rebind(`UPDATE requests SET outcome = ?, done_at = ?
		WHERE model = ? AND id = ? AND token = ? AND outcome IS NULL`), truncate(outcome, MaxRequestOutcome), now(), model, id, token)
	return err
}

// GetRequest returns the stored claim of request id of model, ErrNotFound if there is none.
func (c *Catalog) GetRequest(ctx context.Context, model, id string) (Request, error) {
	var r Request
	err := c.db.GetContext(ctx, &r, c.db.Rebind(`SELECT model, id, name, token, claimed_at, outcome, done_at
		FROM requests WHERE model = ? AND id = ?`), model, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Request{}, fmt.Errorf("catalog: request %q on model %q: %w", id, model, ErrNotFound)
	}
	if err != nil {
		return Request{}, fmt.Errorf("catalog: request %q on model %q: %w", id, model, err)
	}
	r.ClaimedAt = r.ClaimedAt.UTC()
	if r.DoneAt != nil {
		t := r.DoneAt.UTC()
		r.DoneAt = &t
	}
	return r, nil
}
