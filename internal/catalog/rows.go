package catalog

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Stages lists every stage a version can be in, in lifecycle order.
var Stages = []string{
	StageRegistered, StageValidating, StagePendingApproval, StageApproved,
	StageProduction, StageArchived, StageRejected, StageFailed,
}

// ValidStage reports whether s is one of Stages.
func ValidStage(s string) bool { return slices.Contains(Stages, s) }

// modelRow and versionRow mirror the tables; JSON columns are scanned as text and decoded in Go so the
// same code reads PostgreSQL's JSONB and SQLite's TEXT.
type modelRow struct {
	Name              string         `db:"name"`
	ProductionVersion sql.NullInt64  `db:"production_version"`
	Seq               int64          `db:"seq"`
	Policy            sql.NullString `db:"policy"`
	CreatedAt         time.Time      `db:"created_at"`
	UpdatedAt         time.Time      `db:"updated_at"`
}

const modelColumns = `name, production_version, seq, policy, created_at, updated_at`

func (r modelRow) model() (Model, error) {
	m := Model{
		Name:      r.Name,
		Seq:       r.Seq,
		CreatedAt: r.CreatedAt.UTC(),
		UpdatedAt: r.UpdatedAt.UTC(),
	}
	if r.ProductionVersion.Valid {
		v := int(r.ProductionVersion.Int64)
		m.ProductionVersion = &v
	}
	p, err := decodePolicy(r.Name, r.Policy)
	if err != nil {
		return Model{}, err
	}
	m.Policy = p
	return m, nil
}

func decodePolicy(model string, s sql.NullString) (Policy, error) {
	var p Policy
	if !s.Valid || s.String == "" {
		return p, nil
	}
	if err := json.Unmarshal([]byte(s.String), &p); err != nil {
		return Policy{}, fmt.Errorf("catalog: decode policy of model %q: %w", model, err)
	}
	return p, nil
}

type versionRow struct {
	Model          string    `db:"model"`
	Version        int       `db:"version"`
	Stage          string    `db:"stage"`
	IdempotencyKey string    `db:"idempotency_key"`
	WorkflowID     string    `db:"workflow_id"`
	ManifestURI    string    `db:"manifest_uri"`
	ManifestDigest string    `db:"manifest_digest"`
	Metrics        string    `db:"metrics"`
	Params         string    `db:"params"`
	Tags           string    `db:"tags"`
	SourceRun      string    `db:"source_run"`
	RegisteredBy   string    `db:"registered_by"`
	Seq            int64     `db:"seq"`
	CreatedAt      time.Time `db:"created_at"`
	UpdatedAt      time.Time `db:"updated_at"`
}

const versionColumns = `model, version, stage, idempotency_key, workflow_id, manifest_uri, manifest_digest,
	metrics, params, tags, source_run, registered_by, seq, created_at, updated_at`

// versionColumnsV is versionColumns of the alias v, the one every join uses.
var versionColumnsV = versionColumnsOf("v")

// versionColumnsOf is versionColumns qualified by a table alias, for joins.
func versionColumnsOf(alias string) string {
	cols := strings.Split(versionColumns, ",")
	for i, c := range cols {
		cols[i] = alias + "." + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}

// insertVersionSQL inserts a versionRow; CreateVersion appends its conflict clause.
const insertVersionSQL = `INSERT INTO versions (` + versionColumns + `) VALUES (
	:model, :version, :stage, :idempotency_key, :workflow_id, :manifest_uri, :manifest_digest,
	:metrics, :params, :tags, :source_run, :registered_by, :seq, :created_at, :updated_at)`

func newVersionRow(v Version, at time.Time) (versionRow, error) {
	metrics, err := encodeMetrics(v.Metrics)
	if err != nil {
		return versionRow{}, fmt.Errorf("catalog: model %q v%d: %w", v.Model, v.Version, err)
	}
	params, err := json.Marshal(nonNil(v.Params))
	if err != nil {
		return versionRow{}, fmt.Errorf("catalog: model %q v%d: encode params: %w", v.Model, v.Version, err)
	}
	tags, err := json.Marshal(nonNil(v.Tags))
	if err != nil {
		return versionRow{}, fmt.Errorf("catalog: model %q v%d: encode tags: %w", v.Model, v.Version, err)
	}
	return versionRow{
		Model:          v.Model,
		Version:        v.Version,
		Stage:          v.Stage,
		IdempotencyKey: v.IdempotencyKey,
		WorkflowID:     v.WorkflowID,
		ManifestURI:    v.ManifestURI,
		ManifestDigest: v.ManifestDigest,
		Metrics:        metrics,
		Params:         string(params),
		Tags:           string(tags),
		SourceRun:      v.SourceRun,
		RegisteredBy:   v.RegisteredBy,
		Seq:            v.Seq,
		CreatedAt:      at,
		UpdatedAt:      at,
	}, nil
}

func (r versionRow) version() (Version, error) {
	v := Version{
		Model:          r.Model,
		Version:        r.Version,
		Stage:          r.Stage,
		IdempotencyKey: r.IdempotencyKey,
		WorkflowID:     r.WorkflowID,
		ManifestURI:    r.ManifestURI,
		ManifestDigest: r.ManifestDigest,
		SourceRun:      r.SourceRun,
		RegisteredBy:   r.RegisteredBy,
		Seq:            r.Seq,
		CreatedAt:      r.CreatedAt.UTC(),
		UpdatedAt:      r.UpdatedAt.UTC(),
	}
	if err := json.Unmarshal([]byte(r.Metrics), &v.Metrics); err != nil {
		return Version{}, fmt.Errorf("catalog: decode metrics of model %q v%d: %w", r.Model, r.Version, err)
	}
	if err := json.Unmarshal([]byte(r.Params), &v.Params); err != nil {
		return Version{}, fmt.Errorf("catalog: decode params of model %q v%d: %w", r.Model, r.Version, err)
	}
	if r.Tags != "" {
		if err := json.Unmarshal([]byte(r.Tags), &v.Tags); err != nil {
			return Version{}, fmt.Errorf("catalog: decode tags of model %q v%d: %w", r.Model, r.Version, err)
		}
	}
	// An empty JSON object decodes to an empty map; nil keeps "no metrics" equal to what was written
	// when the caller passed none.
	if len(v.Metrics) == 0 {
		v.Metrics = nil
	}
	if len(v.Params) == 0 {
		v.Params = nil
	}
	if len(v.Tags) == 0 {
		v.Tags = nil
	}
	return v, nil
}

type transitionRow struct {
	Model   string    `db:"model"`
	Version int       `db:"version"`
	Seq     int64     `db:"seq"`
	From    string    `db:"from_stage"`
	To      string    `db:"to_stage"`
	Actor   string    `db:"actor"`
	Reason  string    `db:"reason"`
	At      time.Time `db:"at"`
}

const transitionColumns = `model, version, seq, from_stage, to_stage, actor, reason, at`

func (r transitionRow) transition() Transition {
	t := Transition(r)
	t.At = r.At.UTC()
	return t
}

// encodeMetrics refuses NaN and ±Inf by name: JSON cannot hold them, and encoding/json's own error does
// not say which metric was at fault.
func encodeMetrics(m map[string]float64) (string, error) {
	for k, v := range m {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return "", fmt.Errorf("metric %q is %v: metrics must be finite numbers", k, v)
		}
	}
	b, err := json.Marshal(nonNil(m))
	if err != nil {
		return "", fmt.Errorf("encode metrics: %w", err)
	}
	return string(b), nil
}

func encodePolicy(model string, p Policy) (string, error) {
	if err := ValidatePolicy(p); err != nil {
		return "", fmt.Errorf("catalog: policy of model %q: %w", model, err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("catalog: encode policy of model %q: %w", model, err)
	}
	return string(b), nil
}

// nonNil makes a nil map encode as {} rather than null, matching the columns' default.
func nonNil[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return m
}
