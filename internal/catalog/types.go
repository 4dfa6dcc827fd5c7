package catalog

import (
	"errors"
	"time"
)

// Stage names are a public contract (docs/architecture.md); the catalog stores them as text.
const (
	StageRegistered      = "Registered"
	StageValidating      = "Validating"
	StagePendingApproval = "PendingApproval"
	StageApproved        = "Approved"
	StageProduction      = "Production"
	StageArchived        = "Archived"
	StageRejected        = "Rejected"
	StageFailed          = "Failed"
)

var (
	// ErrNotFound is returned (wrapped) for an unknown model or version.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when a write contradicts what is stored (e.g. the same version number
	// registered under another idempotency key, or a second Production version).
	ErrConflict = errors.New("conflict")
	// ErrInconsistent is returned when what is stored contradicts itself (the production pointer names
	// a version that is not in Production); starter check reports how.
	ErrInconsistent = errors.New("inconsistent")
)

// Policy is what a model's versions must satisfy; it is stored per model as JSON.
type Policy struct {
	// Thresholds are metric gates, e.g. {"metric":"accuracy","op":">=","value":0.9}.
	Thresholds []Threshold `json:"thresholds,omitempty"`
	// RequiredFiles must be present in every version's manifest.
	RequiredFiles []string `json:"requiredFiles,omitempty"`
	// ChampionMetric is compared with the production version's; empty disables the comparison.
	ChampionMetric string `json:"championMetric,omitempty"`
	// ChampionLowerIsBetter says smaller values of ChampionMetric are better (e.g. a loss); by default larger are.
	ChampionLowerIsBetter bool `json:"championLowerIsBetter,omitempty"`
	// ChampionTolerance is how much worse than the champion a challenger may be.
	ChampionTolerance float64 `json:"championTolerance,omitempty"`
	// Webhooks receive deployment events.
	Webhooks []string `json:"webhooks,omitempty"`
	// ApprovalTimeoutSeconds, when > 0, rejects a version left undecided that long.
	ApprovalTimeoutSeconds int64 `json:"approvalTimeoutSeconds,omitempty"`
	// RequiredApprovals is the quorum of distinct approvers (0 means 1).
	RequiredApprovals int `json:"requiredApprovals,omitempty"`
	// AllowedApprovers, when not empty, are the only people whose decisions count.
	AllowedApprovers []string `json:"allowedApprovers,omitempty"`
	// AllowSelfApproval lets the registrant approve their own version (default: not allowed).
	AllowSelfApproval bool `json:"allowSelfApproval,omitempty"`
	// ReminderIntervalSeconds, when > 0, sends a reminder event to the webhooks each time a version has
	// waited that long without a decision.
	ReminderIntervalSeconds int64 `json:"reminderIntervalSeconds,omitempty"`
	// Validators are external validation gates (CI jobs, load tests, fairness checks) that must pass.
	Validators []ExternalValidator `json:"validators,omitempty"`
	// RehashArtifacts makes validation read every byte of every blob back from the store and hash it,
	// instead of accepting a blob the store attests with its own SHA-256 checksum (S3). README,
	// "Integrity", says what each guarantees.
	RehashArtifacts bool `json:"rehashArtifacts,omitempty"`
}

// ExternalValidator is a validation gate run by another system: the registry POSTs a validation request
// to URL and waits up to TimeoutSeconds for its verdict.
type ExternalValidator struct {
	Name           string `json:"name"`
	URL            string `json:"url"`
	TimeoutSeconds int64  `json:"timeoutSeconds"`
}

// Decision is one row of the decisions audit table: every approve, reject or validator verdict a version
// received, accepted or refused, with why.
type Decision struct {
	Model   string `json:"model"`
	Version int    `json:"version"`
	// ID is unique per version and stable across activity retries (the workflow assigns it).
	ID       string    `json:"id"`
	Kind     string    `json:"kind"` // approve, reject or verdict
	Via      string    `json:"via"`  // update or signal
	Approver string    `json:"approver,omitempty"`
	Comment  string    `json:"comment,omitempty"`
	Digest   string    `json:"digest,omitempty"`
	Accepted bool      `json:"accepted"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
}

// Threshold is one metric gate.
type Threshold struct {
	Metric string  `json:"metric"`
	Op     string  `json:"op"` // one of >=, >, <=, <
	Value  float64 `json:"value"`
}

// Model is one row of the models table.
type Model struct {
	Name              string    `db:"name" json:"name"`
	ProductionVersion *int      `db:"production_version" json:"productionVersion,omitempty"`
	Seq               int64     `db:"seq" json:"seq"`
	Policy            Policy    `db:"-" json:"policy"`
	CreatedAt         time.Time `db:"created_at" json:"createdAt"`
	UpdatedAt         time.Time `db:"updated_at" json:"updatedAt"`
}

// Version is one row of the versions table.
type Version struct {
	Model          string             `json:"model"`
	Version        int                `json:"version"`
	Stage          string             `json:"stage"`
	IdempotencyKey string             `json:"idempotencyKey"`
	WorkflowID     string             `json:"workflowId"`
	ManifestURI    string             `json:"manifestUri,omitempty"`
	ManifestDigest string             `json:"manifestDigest,omitempty"`
	Metrics        map[string]float64 `json:"metrics,omitempty"`
	Params         map[string]string  `json:"params,omitempty"`
	Tags           map[string]string  `json:"tags,omitempty"`
	SourceRun      string             `json:"sourceRun,omitempty"`
	RegisteredBy   string             `json:"registeredBy,omitempty"`
	Seq            int64              `json:"seq"`
	CreatedAt      time.Time          `json:"createdAt"`
	UpdatedAt      time.Time          `json:"updatedAt"`
}

// Transition is one row of the append-only audit trail.
type Transition struct {
	Model   string    `json:"model"`
	Version int       `json:"version"`
	Seq     int64     `json:"seq"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	Actor   string    `json:"actor"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}
