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

// MintVersion registers a new version of v.Model under v.IdempotencyKey and returns it with the number it
// was given, or returns the version that key already registered (existing is true), whatever its stage.
// v.Version is ignored: the number is models.last_version + 1, read and raised in the same transaction
// that inserts the row, so numbers run 1, 2, 3 … with no gaps (a failed insert raises nothing) and are
// never minted twice, whatever happened to the model's workflow (docs/architecture.md, invariant 5).
//
// The first statement writes the model's row, which takes its row lock on PostgreSQL and the database's
// write lock on SQLite: concurrent mints of one model queue there, so the key lookup and the count that
// follow see every mint committed before.
func (c *Catalog) MintVersion(ctx context.Context, v Version) (out Version, existing bool, err error) {
	if err := names.ValidateModel(v.Model); err != nil {
		return Version{}, false, fmt.Errorf("catalog: %w", err)
	}
	if v.IdempotencyKey == "" {
		return Version{}, false, fmt.Errorf("catalog: model %q: idempotency key is empty", v.Model)
	}
	if v.Stage == "" {
		v.Stage = StageRegistered
	}
	if !ValidStage(v.Stage) {
		return Version{}, false, fmt.Errorf("catalog: model %q: unknown stage %q", v.Model, v.Stage)
	}
	err = c.inTx(ctx, func(tx *sqlx.Tx) error {
		if err := ensureModel(ctx, tx, v.Model); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE models SET last_version = last_version WHERE name = ?`), v.Model); err != nil {
			return fmt.Errorf("catalog: mint a version of model %q: %w", v.Model, err)
		}
		var r versionRow
		err := tx.GetContext(ctx, &r, tx.Rebind(`SELECT `+versionColumns+` FROM versions
			WHERE model = ? AND idempotency_key = ?`), v.Model, v.IdempotencyKey)
		switch {
		case err == nil:
			out, err = r.version()
			existing = true
			return err
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("catalog: mint a version of model %q: %w", v.Model, err)
		}
		// The two-argument maximum is GREATEST on PostgreSQL and MAX on SQLite.
		greatest := "MAX"
		if c.dialect == DialectPostgres {
			greatest = "GREATEST"
		}
		var last int
		if err := tx.GetContext(ctx, &last, tx.Rebind(`SELECT `+greatest+`(m.last_version, COALESCE((SELECT MAX(version) FROM versions WHERE model = ?), 0))
			FROM models m WHERE m.name = ?`), v.Model, v.Model); err != nil {
			return fmt.Errorf("catalog: mint a version of model %q: %w", v.Model, err)
		}
		v.Version = last + 1
		if v.WorkflowID == "" {
			v.WorkflowID = fmt.Sprintf("model/%s/v%d", v.Model, v.Version)
		}
		if v.Seq == 0 {
			v.Seq = 1
		}
		at := now()
		if v.CreatedAt.IsZero() {
			v.CreatedAt = at
		}
		row, err := newVersionRow(v, at)
		if err != nil {
			return err
		}
		if _, err := tx.NamedExecContext(ctx, insertVersionSQL, row); err != nil {
			return fmt.Errorf("catalog: create model %q v%d: %w", v.Model, v.Version, err)
		}
		first := transitionRow{Model: v.Model, Version: v.Version, Seq: v.Seq, To: v.Stage, Actor: v.RegisteredBy, Reason: "registered", At: row.CreatedAt}
		if _, err := tx.NamedExecContext(ctx, insertTransitionSQL, first); err != nil {
			return fmt.Errorf("catalog: record registration of model %q v%d: %w", v.Model, v.Version, err)
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE models SET last_version = ?, updated_at = ? WHERE name = ?`), v.Version, at, v.Model); err != nil {
			return fmt.Errorf("catalog: mint model %q v%d: %w", v.Model, v.Version, err)
		}
		out, err = row.version()
		return err
	})
	if err != nil {
		return Version{}, false, err
	}
	return out, existing, nil
}

// ModelSnapshot is what a model's workflow rebuilds itself from when it starts without carried state.
type ModelSnapshot struct {
	Exists bool `json:"exists"`
	// LastVersion is the highest version number minted.
	LastVersion int `json:"lastVersion"`
	// Production is the version the production pointer names, 0 for none; Seq is the pointer's fence.
	Production int   `json:"production"`
	Seq        int64 `json:"seq"`
	// Archived lists the most recently archived versions, oldest first, at most the limit asked for.
	Archived []int `json:"archived,omitempty"`
	// LastDelivery is the model's latest deployment event, if any.
	LastDelivery *Delivery `json:"lastDelivery,omitempty"`
}

// Snapshot reads the model's production pointer, its fence, its highest minted version and up to
// archivedLimit of its most recently archived versions. An unknown model is a zero snapshot.
func (c *Catalog) Snapshot(ctx context.Context, model string, archivedLimit int) (ModelSnapshot, error) {
	var s ModelSnapshot
	var r struct {
		Production  sql.NullInt64 `db:"production_version"`
		Seq         int64         `db:"seq"`
		LastVersion int           `db:"last_version"`
	}
	err := c.db.GetContext(ctx, &r, c.db.Rebind(`SELECT production_version, seq, last_version FROM models WHERE name = ?`), model)
	if errors.Is(err, sql.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("catalog: snapshot of model %q: %w", model, err)
	}
	s.Exists, s.Seq = true, r.Seq
	if r.Production.Valid {
		s.Production = int(r.Production.Int64)
	}
	max, err := c.MaxVersion(ctx, model)
	if err != nil {
		return s, err
	}
	s.LastVersion = r.LastVersion
	if max > s.LastVersion {
		s.LastVersion = max
	}
	ds, err := c.Deliveries(ctx, model, 0)
	if err != nil {
		return s, err
	}
	if n := len(ds); n > 0 {
		s.LastDelivery = &ds[n-1]
	}
	if archivedLimit > 0 {
		// Most recently archived first: the order of their transitions to Archived.
		var rows []int
		err := c.db.SelectContext(ctx, &rows, c.db.Rebind(`SELECT v.version FROM versions v
			JOIN transitions t ON t.model = v.model AND t.version = v.version AND t.seq = v.seq
			WHERE v.model = ? AND v.stage = ? ORDER BY t.at DESC, t.id DESC LIMIT ?`), model, StageArchived, archivedLimit)
		if err != nil {
			return s, fmt.Errorf("catalog: archived versions of model %q: %w", model, err)
		}
		for i := len(rows) - 1; i >= 0; i-- {
			s.Archived = append(s.Archived, rows[i])
		}
	}
	return s, nil
}

// Refusal is one message a workflow refused that is not a human decision (see RecordRefusal).
type Refusal struct {
	WorkflowID string    `db:"workflow_id" json:"workflowId"`
	ID         string    `db:"id" json:"id"`
	Model      string    `db:"model" json:"model"`
	Version    int       `db:"version" json:"version,omitempty"`
	Name       string    `db:"name" json:"name"`
	Via        string    `db:"via" json:"via"`
	Reason     string    `db:"reason" json:"reason"`
	Payload    string    `db:"payload" json:"payload,omitempty"`
	At         time.Time `db:"at" json:"at"`
}

// Refused messages keep at most this much of what was sent and why: the audit row of a 1.9 MB forgery
// must not be 1.9 MB.
const (
	MaxRefusalPayload = 512
	MaxRefusalReason  = 1024
)

// RecordRefusal appends r to the audit of refused messages; a retry with the same (workflow, id) is a
// no-op. Payload and reason are cut to their limits.
func (c *Catalog) RecordRefusal(ctx context.Context, r Refusal) error {
	if r.WorkflowID == "" || r.ID == "" || r.Name == "" {
		return fmt.Errorf("catalog: refusal of model %q: workflow id, id and name must be set", r.Model)
	}
	r.Payload = truncate(r.Payload, MaxRefusalPayload)
	r.Reason = truncate(r.Reason, MaxRefusalReason)
	if r.At.IsZero() {
		r.At = now()
	} else {
		r.At = utc(r.At)
	}
	_, err := c.db.NamedExecContext(ctx, `INSERT INTO refused_messages
		(workflow_id, id, model, version, name, via, reason, payload, at)
		VALUES (:workflow_id, :id, :model, :version, :name, :via, :reason, :payload, :at)
		ON CONFLICT (workflow_id, id) DO NOTHING`, r)
	if err != nil {
		return fmt.Errorf("catalog: record refused %s to %s: %w", r.Name, r.WorkflowID, err)
	}
	return nil
}

// Refusals returns the refused messages of the model (all its workflows), oldest first.
func (c *Catalog) Refusals(ctx context.Context, model string) ([]Refusal, error) {
	var out []Refusal
	err := c.db.SelectContext(ctx, &out, c.db.Rebind(`SELECT workflow_id, id, model, version, name, via, reason, payload, at
		FROM refused_messages WHERE model = ? ORDER BY at, workflow_id, id`), model)
	if err != nil {
		return nil, fmt.Errorf("catalog: refused messages of model %q: %w", model, err)
	}
	for i := range out {
		out[i].At = out[i].At.UTC()
	}
	return out, nil
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…[cut]"
	cut := n - len(mark)
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + mark
}

// Delivery is the state of one deployment event (see the deliveries table).
type Delivery struct {
	Model     string    `db:"model" json:"model"`
	EventID   string    `db:"event_id" json:"eventId"`
	Version   int       `db:"version" json:"version"`
	Kind      string    `db:"kind" json:"kind"`
	Previous  int       `db:"previous" json:"previous,omitempty"`
	Status    string    `db:"status" json:"status"`
	Error     string    `db:"error" json:"error,omitempty"`
	At        time.Time `db:"at" json:"at"`
	UpdatedAt time.Time `db:"updated_at" json:"updatedAt"`
}

// Delivery statuses, as stored.
const (
	DeliveryPending    = "pending"
	DeliveryDelivered  = "delivered"
	DeliveryRefused    = "refused"
	DeliveryFailed     = "failed"
	DeliverySuperseded = "superseded"
)

// RecordDelivery inserts or updates the state of a deployment event. Writes come from one coroutine of
// the model's workflow, one after the other, so the last write is the current state.
func (c *Catalog) RecordDelivery(ctx context.Context, d Delivery) error {
	switch d.Status {
	case DeliveryPending, DeliveryDelivered, DeliveryRefused, DeliveryFailed, DeliverySuperseded:
	default:
		return fmt.Errorf("catalog: delivery %q of model %q: unknown status %q", d.EventID, d.Model, d.Status)
	}
	if d.At.IsZero() {
		d.At = now()
	} else {
		d.At = utc(d.At)
	}
	d.UpdatedAt = now()
	d.Error = truncate(d.Error, MaxRefusalReason)
	_, err := c.db.NamedExecContext(ctx, `INSERT INTO deliveries (model, event_id, version, kind, previous, status, error, at, updated_at)
		VALUES (:model, :event_id, :version, :kind, :previous, :status, :error, :at, :updated_at)
		ON CONFLICT (model, event_id) DO UPDATE SET status = excluded.status, error = excluded.error, updated_at = excluded.updated_at`, d)
	if err != nil {
		return fmt.Errorf("catalog: record delivery %q of model %q: %w", d.EventID, d.Model, err)
	}
	return nil
}

// Deliveries returns the model's deployment events, oldest first; with version > 0 only that version's.
func (c *Catalog) Deliveries(ctx context.Context, model string, version int) ([]Delivery, error) {
	q := `SELECT model, event_id, version, kind, previous, status, error, at, updated_at FROM deliveries WHERE model = ?`
	args := []any{model}
	if version > 0 {
		q += ` AND version = ?`
		args = append(args, version)
	}
	var out []Delivery
	if err := c.db.SelectContext(ctx, &out, c.db.Rebind(q+` ORDER BY at, event_id`), args...); err != nil {
		return nil, fmt.Errorf("catalog: deliveries of model %q: %w", model, err)
	}
	for i := range out {
		out[i].At, out[i].UpdatedAt = out[i].At.UTC(), out[i].UpdatedAt.UTC()
	}
	return out, nil
}
