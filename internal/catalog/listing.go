package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// MaxPageSize bounds one page of a listing, whatever a caller asks for.
const MaxPageSize = 500

// ModelSummary is a model as the API's model list shows it.
type ModelSummary struct {
	Name              string    `db:"name" json:"name"`
	ProductionVersion *int      `db:"production_version" json:"productionVersion,omitempty"`
	LatestVersion     int       `db:"last_version" json:"latestVersion"`
	Waiting           int       `db:"waiting" json:"waitingForApproval"`
	UpdatedAt         time.Time `db:"updated_at" json:"updatedAt"`
}

// ListModelSummaries returns up to limit models whose names sort after after, in name order. A name
// cursor is stable while models are added: a new model lands either before the cursor (already paged
// past) or after it (still to come), never shifting what a page holds.
func (c *Catalog) ListModelSummaries(ctx context.Context, after string, limit int) ([]ModelSummary, error) {
	return c.modelSummaries(ctx, "m.name > ? ORDER BY m.name LIMIT ?", after, clampLimit(limit))
}

// GetModelSummary is one model's ModelSummary, or ErrNotFound.
func (c *Catalog) GetModelSummary(ctx context.Context, name string) (ModelSummary, error) {
	ms, err := c.modelSummaries(ctx, "m.name = ?", name)
	if err != nil {
		return ModelSummary{}, err
	}
	if len(ms) == 0 {
		return ModelSummary{}, fmt.Errorf("catalog: model %q: %w", name, ErrNotFound)
	}
	return ms[0], nil
}

func (c *Catalog) modelSummaries(ctx context.Context, where string, args ...any) ([]ModelSummary, error) {
	var out []ModelSummary
	err := c.db.SelectContext(ctx, &out, c.db.Rebind(`SELECT m.name, m.production_version, m.last_version, m.updated_at,
			(SELECT COUNT(*) FROM versions v WHERE v.model = m.name AND v.stage = 'PendingApproval') AS waiting
		FROM models m WHERE `+where), args...)
	if err != nil {
		return nil, fmt.Errorf("catalog: list models: %w", err)
	}
	for i := range out {
		out[i].UpdatedAt = out[i].UpdatedAt.UTC()
	}
	return out, nil
}

// TagFilter matches versions with tag Key; with HasValue, only those whose value is Value.
type TagFilter struct {
	Key      string
	Value    string
	HasValue bool
}

// MetricFilter matches versions whose metric Name compares with Value by Op (>=, >, <=, <, =).
type MetricFilter struct {
	Name  string
	Op    string
	Value float64
}

// VersionCursor is where a page of versions ended: the last version returned. Listings of one model
// are in descending version order and need only Version; listings across models are in descending
// (CreatedAt, Model, Version) order.
type VersionCursor struct {
	CreatedAt time.Time `json:"t,omitzero"`
	Model     string    `json:"m,omitempty"`
	Version   int       `json:"v"`
}

// VersionFilter selects versions for a listing. Newest first, so versions registered while a caller
// pages land before its cursor and never move what the following pages hold.
type VersionFilter struct {
	Model        string // "" lists every model's versions
	Stages       []string
	Tags         []TagFilter
	Metrics      []MetricFilter
	RegisteredBy string
	After        *VersionCursor
	Limit        int
}

var metricOps = map[string]string{">=": ">=", ">": ">", "<=": "<=", "<": "<", "=": "="}

// FindVersions returns one page of the versions f selects.
func (c *Catalog) FindVersions(ctx context.Context, f VersionFilter) ([]Version, error) {
	var where []string
	var args []any
	if f.Model != "" {
		where = append(where, "v.model = ?")
		args = append(args, f.Model)
	}
	if len(f.Stages) > 0 {
		for _, s := range f.Stages {
			if !ValidStage(s) {
				return nil, fmt.Errorf("catalog: unknown stage %q (stages are %s)", s, strings.Join(Stages, ", "))
			}
		}
		q, a, err := sqlx.In("v.stage IN (?)", f.Stages)
		if err != nil {
			return nil, err
		}
		where = append(where, q)
		args = append(args, a...)
	}
	if f.RegisteredBy != "" {
		where = append(where, "v.registered_by = ?")
		args = append(args, f.RegisteredBy)
	}
	for _, t := range f.Tags {
		switch {
		case c.dialect == DialectPostgres && t.HasValue:
			where = append(where, "v.tags->>? = ?")
			args = append(args, t.Key, t.Value)
		case c.dialect == DialectPostgres:
			where = append(where, "v.tags->>? IS NOT NULL")
			args = append(args, t.Key)
		case t.HasValue:
			where = append(where, "EXISTS (SELECT 1 FROM json_each(v.tags) j WHERE j.key = ? AND j.value = ?)")
			args = append(args, t.Key, t.Value)
		default:
			where = append(where, "EXISTS (SELECT 1 FROM json_each(v.tags) j WHERE j.key = ?)")
			args = append(args, t.Key)
		}
	}
	for _, m := range f.Metrics {
		op, ok := metricOps[m.Op]
		if !ok {
			return nil, fmt.Errorf("catalog: metric filter on %q: unknown operator %q (use >=, >, <=, < or =)", m.Name, m.Op)
		}
		if c.dialect == DialectPostgres {
			where = append(where, "(v.metrics->>?)::float8 "+op+" ?")
		} else {
			where = append(where, "EXISTS (SELECT 1 FROM json_each(v.metrics) j WHERE j.key = ? AND j.value "+op+" ?)")
		}
		args = append(args, m.Name, m.Value)
	}
	order := "v.created_at DESC, v.model DESC, v.version DESC"
	if f.Model != "" {
		order = "v.version DESC"
	}
	if f.After != nil {
		if f.Model != "" {
			where = append(where, "v.version < ?")
			args = append(args, f.After.Version)
		} else {
			// Row-value comparison: both PostgreSQL and SQLite (3.15+) compare tuples lexicographically.
			where = append(where, "(v.created_at, v.model, v.version) < (?, ?, ?)")
			args = append(args, utc(f.After.CreatedAt), f.After.Model, f.After.Version)
		}
	}
	q := `SELECT ` + versionColumnsV + ` FROM versions v`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY " + order + " LIMIT ?"
	args = append(args, clampLimit(f.Limit))
	var rows []versionRow
	if err := c.db.SelectContext(ctx, &rows, c.db.Rebind(q), args...); err != nil {
		return nil, fmt.Errorf("catalog: find versions: %w", err)
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

func clampLimit(n int) int {
	if n <= 0 {
		return 50
	}
	return min(n, MaxPageSize)
}

// ProductionState is what a deployer's watch compares: the pointer, its fencing sequence and the
// stage of the version it names. Any switch, rollback or repair changes the first two; the stage
// catches up with the pointer a moment later (two activities write them), and a watch must see that.
type ProductionState struct {
	Model   string `db:"name"`
	Version *int   `db:"production_version"`
	Seq     int64  `db:"seq"`
	Stage   string `db:"stage"`
}

// AllProductionStates returns every model's production state, for the API's production views.
func (c *Catalog) AllProductionStates(ctx context.Context) ([]ProductionState, error) {
	var out []ProductionState
	err := c.db.SelectContext(ctx, &out, `SELECT m.name, m.production_version, m.seq, COALESCE(v.stage, '') AS stage
		FROM models m LEFT JOIN versions v ON v.model = m.name AND v.version = m.production_version`)
	if err != nil {
		return nil, fmt.Errorf("catalog: production states: %w", err)
	}
	return out, nil
}

// Ping checks the catalog answers, for readiness probes.
func (c *Catalog) Ping(ctx context.Context) error { return c.db.PingContext(ctx) }

// ProductionView is the production state and, when the pointer names a version, that version's row,
// read in one query: the API's hottest read.
func (c *Catalog) ProductionView(ctx context.Context, model string) (ProductionState, *Version, error) {
	var r struct {
		Name              string        `db:"m_name"`
		ProductionVersion *int          `db:"m_production_version"`
		Seq               int64         `db:"m_seq"`
		Present           sql.NullInt64 `db:"present"`
		// Times are selected as they are (NULL without a version): SQLite types a COALESCE by its
		// value, so the driver would hand back text instead of a time.
		CreatedAt *time.Time `db:"v_created_at"`
		UpdatedAt *time.Time `db:"v_updated_at"`
		versionRow
	}
	err := c.db.GetContext(ctx, &r, c.db.Rebind(`SELECT m.name AS m_name, m.production_version AS m_production_version, m.seq AS m_seq,
			v.version AS present, `+versionColumnsNullable+`
		FROM models m LEFT JOIN versions v ON v.model = m.name AND v.version = m.production_version
		WHERE m.name = ?`), model)
	if errors.Is(err, sql.ErrNoRows) {
		return ProductionState{}, nil, fmt.Errorf("catalog: model %q: %w", model, ErrNotFound)
	}
	if err != nil {
		return ProductionState{}, nil, fmt.Errorf("catalog: production of model %q: %w", model, err)
	}
	st := ProductionState{Model: r.Name, Version: r.ProductionVersion, Seq: r.Seq}
	if !r.Present.Valid {
		return st, nil, nil
	}
	st.Stage = r.Stage
	if r.CreatedAt != nil && r.UpdatedAt != nil {
		r.versionRow.CreatedAt, r.versionRow.UpdatedAt = *r.CreatedAt, *r.UpdatedAt
	}
	v, err := r.versionRow.version()
	if err != nil {
		return st, nil, err
	}
	return st, &v, nil
}

// versionColumnsNullable selects the version columns of alias v so that a missing row (LEFT JOIN)
// scans: text as the empty string, JSON as {}, numbers as 0, and times as NULL under other names (v_created_at).
var versionColumnsNullable = nullableVersionColumns()

func nullableVersionColumns() string {
	var out []string
	for _, c := range strings.Split(versionColumns, ",") {
		c = strings.TrimSpace(c)
		def := "''"
		switch c {
		case "version", "seq":
			def = "0"
		case "created_at", "updated_at":
			out = append(out, "v."+c+" AS v_"+c)
			continue
		case "metrics", "params", "tags":
			def = "'{}'"
		}
		out = append(out, "COALESCE(v."+c+", "+def+") AS "+c)
	}
	return strings.Join(out, ", ")
}
