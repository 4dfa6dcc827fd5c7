package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
	"github.com/modelreg/modelreg/internal/names"
)

const insertTransitionSQL = `INSERT INTO transitions (` + transitionColumns + `)
	VALUES (:model, :version, :seq, :from_stage, :to_stage, :actor, :reason, :at)
	ON CONFLICT (model, version, seq) DO NOTHING`

// CreateVersion registers v: it creates the model if needed and, in the same transaction, inserts the
// version at v.Stage (Registered when empty) with sequence number v.Seq and its first audit row (from ""
// to v.Stage by v.RegisteredBy, reason "registered").
//
// Re-running it with the same model, version and idempotency key is a successful no-op, whatever the
// version has gone through since. The same version under another key, or the same key under another
// version, is ErrConflict: version numbers are minted once (invariant 5).
func (c *Catalog) CreateVersion(ctx context.Context, v Version) error {
	if err := names.ValidateModel(v.Model); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	if v.Version <= 0 {
		return fmt.Errorf("catalog: model %q: version number %d is not positive", v.Model, v.Version)
	}
	if v.IdempotencyKey == "" {
		return fmt.Errorf("catalog: model %q v%d: idempotency key is empty", v.Model, v.Version)
	}
	if v.Stage == "" {
		v.Stage = StageRegistered
	}
	if !ValidStage(v.Stage) {
		return fmt.Errorf("catalog: model %q v%d: unknown stage %q", v.Model, v.Version, v.Stage)
	}
	at := now()
	row, err := newVersionRow(v, at)
	if err != nil {
		return err
	}
	first := transitionRow{
		Model: v.Model, Version: v.Version, Seq: v.Seq,
		From: "", To: v.Stage, Actor: v.RegisteredBy, Reason: "registered", At: at,
	}
	return c.inTx(ctx, func(tx *sqlx.Tx) error {
		if err := ensureModel(ctx, tx, v.Model); err != nil {
			return err
		}
		// DO NOTHING with no conflict target covers the primary key, the idempotency key and the
		// one-Production index alike; which one held is worked out below, from what is stored.
		res, err := tx.NamedExecContext(ctx, insertVersionSQL+` ON CONFLICT DO NOTHING`, row)
		if err != nil {
			return fmt.Errorf("catalog: create model %q v%d: %w", v.Model, v.Version, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("catalog: create model %q v%d: %w", v.Model, v.Version, err)
		}
		if n == 0 {
			return explainCreateConflict(ctx, tx, v)
		}
		if _, err := tx.NamedExecContext(ctx, insertTransitionSQL, first); err != nil {
			return fmt.Errorf("catalog: record registration of model %q v%d: %w", v.Model, v.Version, err)
		}
		return nil
	})
}

// explainCreateConflict decides whether an insert that did nothing was a retry (nil) or a contradiction
// (ErrConflict). On PostgreSQL the conflicting row is committed by now: ON CONFLICT waits for it.
func explainCreateConflict(ctx context.Context, tx *sqlx.Tx, v Version) error {
	var existing []struct {
		Version        int    `db:"version"`
		IdempotencyKey string `db:"idempotency_key"`
	}
	err := tx.SelectContext(ctx, &existing, tx.Rebind(`SELECT version, idempotency_key FROM versions
		WHERE model = ? AND (version = ? OR idempotency_key = ?) ORDER BY version`),
		v.Model, v.Version, v.IdempotencyKey)
	if err != nil {
		return fmt.Errorf("catalog: create model %q v%d: %w", v.Model, v.Version, err)
	}
	for _, e := range existing {
		switch {
		case e.Version == v.Version && e.IdempotencyKey == v.IdempotencyKey:
			return nil
		case e.Version == v.Version:
			return fmt.Errorf("catalog: model %q v%d is already registered under another idempotency key (%q, not %q): %w",
				v.Model, v.Version, e.IdempotencyKey, v.IdempotencyKey, ErrConflict)
		default:
			return fmt.Errorf("catalog: idempotency key %q of model %q already registered v%d, not v%d: %w",
				v.IdempotencyKey, v.Model, e.Version, v.Version, ErrConflict)
		}
	}
	return fmt.Errorf("catalog: model %q v%d cannot be registered in %s: another version is in %s: %w",
		v.Model, v.Version, v.Stage, StageProduction, ErrConflict)
}

// errProductionTaken carries a unique violation of versions_one_production out of the transaction, so
// the holder is looked up after the rollback.
var errProductionTaken = errors.New("production taken")

// RecordTransition projects one lifecycle transition, in one transaction:
//
//   - the version's stage and seq become t.To and t.Seq, unless the stored seq is already >= t.Seq
//     (the fence: a late retry never overwrites newer state);
//   - the audit row (model, version, seq) is inserted unless it exists (recorded once, invariant 4).
//
// A transition that arrives after a newer one is therefore still recorded in the audit trail, where it
// belongs in seq order, but does not change the version's stage. applied reports whether the stage was
// changed; it is false for a fenced-off or repeated transition.
//
// An unknown version is ErrNotFound. Moving a version to Production while another version of the model
// is there is ErrConflict (the database's one-Production index refuses it), and nothing is written.
func (c *Catalog) RecordTransition(ctx context.Context, t Transition) (applied bool, err error) {
	if !ValidStage(t.To) {
		return false, fmt.Errorf("catalog: model %q v%d: unknown target stage %q", t.Model, t.Version, t.To)
	}
	if t.From != "" && !ValidStage(t.From) {
		return false, fmt.Errorf("catalog: model %q v%d: unknown source stage %q", t.Model, t.Version, t.From)
	}
	row := transitionRow(t)
	if t.At.IsZero() {
		row.At = now()
	} else {
		row.At = utc(t.At)
	}
	err = c.inTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE versions SET stage = ?, seq = ?, updated_at = ?
			WHERE model = ? AND version = ? AND seq < ?`),
			t.To, t.Seq, now(), t.Model, t.Version, t.Seq)
		if isUniqueViolation(err) {
			return errProductionTaken
		}
		if err != nil {
			return fmt.Errorf("catalog: transition model %q v%d to %s: %w", t.Model, t.Version, t.To, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("catalog: transition model %q v%d to %s: %w", t.Model, t.Version, t.To, err)
		}
		if n == 0 {
			var exists int
			err := tx.GetContext(ctx, &exists, tx.Rebind(`SELECT 1 FROM versions WHERE model = ? AND version = ?`),
				t.Model, t.Version)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("catalog: transition model %q v%d to %s: version %w", t.Model, t.Version, t.To, ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("catalog: transition model %q v%d to %s: %w", t.Model, t.Version, t.To, err)
			}
		}
		if _, err := tx.NamedExecContext(ctx, insertTransitionSQL, row); err != nil {
			return fmt.Errorf("catalog: record transition of model %q v%d to %s: %w", t.Model, t.Version, t.To, err)
		}
		applied = n > 0
		return nil
	})
	if errors.Is(err, errProductionTaken) {
		return false, c.productionConflict(ctx, t)
	}
	if err != nil {
		return false, err
	}
	return applied, nil
}

func (c *Catalog) productionConflict(ctx context.Context, t Transition) error {
	var holder int
	err := c.db.GetContext(ctx, &holder, c.db.Rebind(`SELECT version FROM versions WHERE model = ? AND stage = ?`),
		t.Model, StageProduction)
	who := "another version"
	if err == nil {
		who = fmt.Sprintf("v%d", holder)
	}
	return fmt.Errorf("catalog: model %q v%d cannot enter %s: %s is already in %s: %w",
		t.Model, t.Version, StageProduction, who, StageProduction, ErrConflict)
}

// SetManifest records where the version's manifest is and its digest. Manifests are write-once
// (invariant 3): repeating the same values succeeds, different ones once set are ErrConflict.
func (c *Catalog) SetManifest(ctx context.Context, model string, version int, uri, digest string) error {
	if uri == "" || digest == "" {
		return fmt.Errorf("catalog: manifest of model %q v%d: uri and digest must both be set", model, version)
	}
	res, err := c.db.ExecContext(ctx, c.db.Rebind(`UPDATE versions
		SET manifest_uri = ?, manifest_digest = ?, updated_at = ?
		WHERE model = ? AND version = ? AND manifest_digest = ''`),
		uri, digest, now(), model, version)
	if err != nil {
		return fmt.Errorf("catalog: set manifest of model %q v%d: %w", model, version, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("catalog: set manifest of model %q v%d: %w", model, version, err)
	}
	if n > 0 {
		return nil
	}
	var stored struct {
		URI    string `db:"manifest_uri"`
		Digest string `db:"manifest_digest"`
	}
	err = c.db.GetContext(ctx, &stored, c.db.Rebind(`SELECT manifest_uri, manifest_digest FROM versions
		WHERE model = ? AND version = ?`), model, version)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("catalog: set manifest of model %q v%d: version %w", model, version, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("catalog: set manifest of model %q v%d: %w", model, version, err)
	}
	if stored.URI != uri || stored.Digest != digest {
		return fmt.Errorf("catalog: model %q v%d already has manifest %s (%s); refusing %s (%s): %w",
			model, version, stored.URI, stored.Digest, uri, digest, ErrConflict)
	}
	return nil
}

// GetVersion returns one version.
func (c *Catalog) GetVersion(ctx context.Context, model string, version int) (Version, error) {
	var r versionRow
	err := c.db.GetContext(ctx, &r, c.db.Rebind(`SELECT `+versionColumns+` FROM versions
		WHERE model = ? AND version = ?`), model, version)
	if errors.Is(err, sql.ErrNoRows) {
		return Version{}, fmt.Errorf("catalog: model %q v%d: %w", model, version, ErrNotFound)
	}
	if err != nil {
		return Version{}, fmt.Errorf("catalog: get model %q v%d: %w", model, version, err)
	}
	return r.version()
}

// GetVersionByKey returns the version registered under the idempotency key.
func (c *Catalog) GetVersionByKey(ctx context.Context, model, idempotencyKey string) (Version, error) {
	var r versionRow
	err := c.db.GetContext(ctx, &r, c.db.Rebind(`SELECT `+versionColumns+` FROM versions
		WHERE model = ? AND idempotency_key = ?`), model, idempotencyKey)
	if errors.Is(err, sql.ErrNoRows) {
		return Version{}, fmt.Errorf("catalog: model %q, idempotency key %q: %w", model, idempotencyKey, ErrNotFound)
	}
	if err != nil {
		return Version{}, fmt.Errorf("catalog: get model %q by idempotency key %q: %w", model, idempotencyKey, err)
	}
	return r.version()
}

// ListVersions returns the model's versions in stage (all of them when stage is ""), ordered by
// version number. An unknown model has no versions.
func (c *Catalog) ListVersions(ctx context.Context, model string, stage string) ([]Version, error) {
	var rows []versionRow
	var err error
	if stage == "" {
		err = c.db.SelectContext(ctx, &rows, c.db.Rebind(`SELECT `+versionColumns+` FROM versions
			WHERE model = ? ORDER BY version`), model)
	} else {
		if !ValidStage(stage) {
			return nil, fmt.Errorf("catalog: list versions of model %q: unknown stage %q", model, stage)
		}
		err = c.db.SelectContext(ctx, &rows, c.db.Rebind(`SELECT `+versionColumns+` FROM versions
			WHERE model = ? AND stage = ? ORDER BY version`), model, stage)
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: list versions of model %q: %w", model, err)
	}
	out := make([]Version, 0, len(rows))
	for _, r := range rows {
		v, err := r.version()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Transitions returns the audit trail of one version, or of every version of the model when version
// is 0, ordered by time, then version, then seq.
func (c *Catalog) Transitions(ctx context.Context, model string, version int) ([]Transition, error) {
	var rows []transitionRow
	var err error
	if version == 0 {
		err = c.db.SelectContext(ctx, &rows, c.db.Rebind(`SELECT `+transitionColumns+` FROM transitions
			WHERE model = ? ORDER BY at, version, seq`), model)
	} else {
		err = c.db.SelectContext(ctx, &rows, c.db.Rebind(`SELECT `+transitionColumns+` FROM transitions
			WHERE model = ? AND version = ? ORDER BY at, version, seq`), model, version)
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: transitions of model %q: %w", model, err)
	}
	out := make([]Transition, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.transition())
	}
	return out, nil
}

// MaxVersion returns the highest registered version number of the model, 0 when it has none (or does
// not exist).
func (c *Catalog) MaxVersion(ctx context.Context, model string) (int, error) {
	var n int
	err := c.db.GetContext(ctx, &n, c.db.Rebind(`SELECT COALESCE(MAX(version), 0) FROM versions WHERE model = ?`), model)
	if err != nil {
		return 0, fmt.Errorf("catalog: max version of model %q: %w", model, err)
	}
	return n, nil
}
