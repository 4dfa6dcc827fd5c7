// Package workflows holds the registry's two long-lived workflows and their public contract: the
// workflow types, the names of their updates, signals and queries, and the JSON shapes of their inputs
// and results. Every struct carries a schemaVersion so that a Python or Java job can start and drive
// these workflows with plain JSON.
package workflows

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/modelreg/modelreg/activities"
	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/names"
)

// SchemaVersion is the version of every input and result struct in this package.
const SchemaVersion = 1

// Names that make up the public contract (README documents each).
const (
	TaskQueue           = "model-registry"
	ModelWorkflowType   = "ModelWorkflow"
	VersionWorkflowType = "ModelVersionWorkflow"

	// On ModelWorkflow. register is an update and (since modelV3) a signal: the signal queues a
	// registration without holding one of Temporal's 10 in-flight updates of the model's workflow, and
	// QueryRegistration answers what became of it (README, "Registering on a busy model").
	UpdateRegister    = "register"
	SignalRegister    = "register"
	QueryRegistration = "registration"
	UpdateRollback    = "rollback"
	UpdateRedeliver   = "redeliver"
	QueryProduction   = "production"

	// On ModelVersionWorkflow. approve and reject are both updates and signals.
	UpdateApprove = "approve"
	UpdateReject  = "reject"
	SignalApprove = "approve"
	SignalReject  = "reject"
	QueryStage    = "stage"
	UpdateVerdict = "verdict"

	// On both.
	QueryDescribe = "describe"

	// Internal (docs/architecture.md, "Internal messages"): sent by one of the registry's workflows to
	// another during a step it is running, and refused from anyone else. archive and restore are sent by
	// ModelWorkflow to a version's workflow during a production switch and are checked against the
	// switch the model's workflow is running (QuerySwitch); promote is sent by a version's workflow once
	// it is Approved and is checked against that version's state (QueryPromotion).
	//
	// The SDK lists a workflow's handlers sorted by name and the Temporal UI offers them in that order,
	// so promote carries a "system:" prefix that puts it after the model's public updates. Runs from
	// before modelV2 accept the old name too (UpdatePromoteLegacy), and activities.UpdateWorkflow sends
	// an update scheduled under the old name by the new one.
	UpdatePromote       = "system:promote"
	UpdatePromoteLegacy = "promote"
	UpdateArchive       = "archive"
	UpdateRestore       = "restore"
	QuerySwitch         = "internal:switch"
	QueryPromotion      = "internal:promotion"
)

// Stage names (a public contract: docs/architecture.md).
const (
	StageRegistered      = catalog.StageRegistered
	StageValidating      = catalog.StageValidating
	StagePendingApproval = catalog.StagePendingApproval
	StageApproved        = catalog.StageApproved
	StageProduction      = catalog.StageProduction
	StageArchived        = catalog.StageArchived
	StageRejected        = catalog.StageRejected
	StageFailed          = catalog.StageFailed
)

// ModelWorkflowID is the ID of a model's entity workflow.
func ModelWorkflowID(model string) string { return "model/" + model }

// VersionWorkflowID is the ID of one version's lifecycle workflow.
func VersionWorkflowID(model string, version int) string {
	return fmt.Sprintf("model/%s/v%d", model, version)
}

// ArtifactSource says where a version's files come from: exactly one of URI, Files or Listing.
type ArtifactSource struct {
	// URI is an s3://bucket/prefix whose objects are imported (copied into content-addressed blobs).
	URI string `json:"uri,omitempty"`
	// Files are blobs already uploaded to the registry's store (what `starter register DIR` does), at
	// most MaxInlineFiles of them.
	Files []artifact.FileEntry `json:"files,omitempty"`
	// Listing names a list of such files stored as a blob in the registry's store, for versions of more
	// than MaxInlineFiles files: the list itself never travels through Temporal.
	Listing *artifact.ListingRef `json:"listing,omitempty"`
}

// Limits of a RegisterRequest (README: "Request limits"). The request travels through Temporal as an
// update and as the version workflow's input, which Temporal refuses above 2 MB (and warns about above
// 512 KB); these bounds keep every request well below that and are checked before anything is uploaded.
const (
	// MaxInlineFiles is the most files source.files may list; more go by reference (source.listing).
	MaxInlineFiles = 1000
	// MaxListingFiles is the most files a version may have.
	MaxListingFiles = artifact.MaxListingFiles
	// MaxMetrics and MaxParams bound the number of metrics and params.
	MaxMetrics = 1000
	MaxParams  = 1000
	// MaxTags bounds tags; a tag's key is 1-128 bytes and its value at most 256 (ValidateTags).
	MaxTags = 64
	// MaxRequestBytes bounds the whole request encoded as JSON.
	MaxRequestBytes = 256 << 10
	// MaxActorBytes bounds registeredBy; MaxSourceRunBytes bounds sourceRun.
	MaxActorBytes     = 200
	MaxSourceRunBytes = 1024
)

// RegisterRequest is the input of the register update on ModelWorkflow.
type RegisterRequest struct {
	SchemaVersion int    `json:"schemaVersion"`
	Model         string `json:"model"`
	// IdempotencyKey makes retries safe: the same key always returns the same version.
	IdempotencyKey string             `json:"idempotencyKey"`
	Source         ArtifactSource     `json:"source"`
	Metrics        map[string]float64 `json:"metrics,omitempty"`
	Params         map[string]string  `json:"params,omitempty"`
	// Tags are labels to find versions by (team, dataset, framework); the HTTP API filters on them.
	Tags         map[string]string `json:"tags,omitempty"`
	SourceRun    string            `json:"sourceRun,omitempty"`
	RegisteredBy string            `json:"registeredBy,omitempty"`
}

var keyRe = regexp.MustCompile(`^[A-Za-z0-9._:/@+=-]{1,200}$`)

// Validate reports the first problem that makes r unusable, naming it.
func (r RegisterRequest) Validate() error {
	if r.SchemaVersion != SchemaVersion {
		return fmt.Errorf("schemaVersion %d is not supported (want %d)", r.SchemaVersion, SchemaVersion)
	}
	if err := names.ValidateModel(r.Model); err != nil {
		return err
	}
	if !keyRe.MatchString(r.IdempotencyKey) {
		return fmt.Errorf("idempotencyKey %q must be 1-200 characters from A-Z a-z 0-9 . _ : / @ + = -", r.IdempotencyKey)
	}
	if len(r.Metrics) > MaxMetrics {
		return fmt.Errorf("metrics: %d metrics, at most %d are allowed", len(r.Metrics), MaxMetrics)
	}
	if err := ValidateMetrics(r.Metrics); err != nil {
		return err
	}
	if len(r.Params) > MaxParams {
		return fmt.Errorf("params: %d params, at most %d are allowed", len(r.Params), MaxParams)
	}
	// Sorted, so the first problem reported is the same on every run (workflowcheck: no map iteration).
	//workflowcheck:ignore
	for _, k := range slices.Sorted(maps.Keys(r.Params)) {
		if v := r.Params[k]; k == "" || len(k) > 200 || len(v) > 4096 {
			return fmt.Errorf("param %q: names must be 1-200 bytes and values at most 4096 bytes", k)
		}
	}
	if err := ValidateTags(r.Tags); err != nil {
		return err
	}
	if len(r.SourceRun) > MaxSourceRunBytes || len(r.RegisteredBy) > MaxActorBytes {
		return fmt.Errorf("sourceRun (max %d bytes) or registeredBy (max %d bytes) is too long", MaxSourceRunBytes, MaxActorBytes)
	}
	hasURI, hasFiles, hasListing := r.Source.URI != "", len(r.Source.Files) > 0, r.Source.Listing != nil
	switch {
	case hasURI && hasFiles, hasURI && hasListing, hasFiles && hasListing:
		return errors.New("source: give exactly one of uri, files or listing")
	case !hasURI && !hasFiles && !hasListing:
		return errors.New("source: no artifacts (give source.uri = s3://bucket/prefix, source.files or source.listing)")
	case hasListing:
		if err := r.Source.Listing.Validate(); err != nil {
			return err
		}
	case len(r.Source.Files) > MaxInlineFiles:
		return fmt.Errorf("source.files: %d files listed inline, at most %d are allowed: store the list as a listing blob and give source.listing = {sha256, count} instead (README: Request limits)",
			len(r.Source.Files), MaxInlineFiles)
	case hasURI:
		// The worker imports the prefix with ParseS3URI: refuse here what it would refuse only after a
		// version number was minted (s3://, s3:///x, a bucket with spaces).
		if _, _, err := artifact.ParseS3URI(r.Source.URI); err != nil {
			return fmt.Errorf("source.uri: %w", err)
		}
	default:
		seen := map[string]bool{}
		for _, f := range r.Source.Files {
			if _, err := names.CleanArtifactPath(f.Path); err != nil {
				return fmt.Errorf("source.files: %w", err)
			}
			if seen[f.Path] {
				return fmt.Errorf("source.files: path %q listed twice", f.Path)
			}
			seen[f.Path] = true
			if !isSHA256(f.SHA256) || f.Size < 0 {
				return fmt.Errorf("source.files: %q needs a size >= 0 and a 64-hex-digit lowercase sha256", f.Path)
			}
		}
		// The files become the version's manifest, which refuses a path that is both a file and a
		// directory ("a" and "a/b"); refuse it here rather than after the version was minted.
		for _, f := range r.Source.Files {
			for dir := path.Dir(f.Path); dir != "."; dir = path.Dir(dir) {
				if seen[dir] {
					return fmt.Errorf("source.files: %q is listed both as a file and as a directory (%q)", dir, f.Path)
				}
			}
		}
		// Nor may two paths be one name on a case-insensitive filesystem (macOS, Windows), where pulling
		// the version would overwrite one file with the other. A validator: tightening it is replay-safe.
		paths := make([]string, len(r.Source.Files))
		for i, f := range r.Source.Files {
			paths[i] = f.Path
		}
		if err := names.CaseCollision(paths); err != nil {
			return fmt.Errorf("source.files: %w", err)
		}
	}
	// Last, so that a request refused for its size has no other problem to report first. Marshalling
	// sorts map keys, so the figure is the same on every run.
	b, err := json.Marshal(r) //workflowcheck:ignore
	if err != nil {
		return fmt.Errorf("request cannot be encoded as JSON: %w", err)
	}
	if len(b) > MaxRequestBytes {
		return fmt.Errorf("request is %d bytes as JSON, at most %d are allowed (long params, metrics or paths; many files go in source.listing)", len(b), MaxRequestBytes)
	}
	// PostgreSQL stores no NUL in text or jsonb: accepted, such a request failed its catalog write for
	// as long as that was retried, as if the catalog were down.
	if bytes.Contains(b, []byte(`\u0000`)) {
		return errors.New("request contains a NUL character (U+0000) in a tag, param, metric name, source run or registrant, which the catalog cannot store")
	}
	return nil
}

// ValidateMetrics rejects metric names that are unusable and values JSON cannot carry.
func ValidateMetrics(m map[string]float64) error {
	//workflowcheck:ignore
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		if k == "" || len(k) > 200 {
			return fmt.Errorf("metric name %q must be 1-200 bytes", k)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("metric %q is %v: metrics must be finite numbers", k, v)
		}
	}
	return nil
}

// ValidateTags reports the first tag that breaks the bounds, in key order. A key may not contain '='
// (the API filters versions with tag=key=value, split at the first '='), control characters, or white
// space at either end (invisible in every listing).
func ValidateTags(t map[string]string) error {
	if len(t) > MaxTags {
		return fmt.Errorf("tags: %d tags, at most %d are allowed", len(t), MaxTags)
	}
	//workflowcheck:ignore
	for _, k := range slices.Sorted(maps.Keys(t)) {
		switch {
		case k == "" || len(k) > 128 || len(t[k]) > 256 || !utf8.ValidString(k) || !utf8.ValidString(t[k]):
			return fmt.Errorf("tag %q: keys must be 1-128 bytes and values at most 256 bytes, both UTF-8", k)
		case strings.Contains(k, "="):
			return fmt.Errorf("tag %q: keys may not contain '=' (versions are filtered with tag=key=value)", k)
		case strings.IndexFunc(k, unicode.IsControl) >= 0:
			return fmt.Errorf("tag %q: keys may not contain control characters", k)
		case strings.TrimSpace(k) != k:
			return fmt.Errorf("tag %q: keys may not begin or end with white space", k)
		}
	}
	return nil
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// RegisterResult is what the register update returns.
type RegisterResult struct {
	SchemaVersion int    `json:"schemaVersion"`
	Model         string `json:"model"`
	Version       int    `json:"version"`
	WorkflowID    string `json:"workflowId"`
	// Existing is true when the idempotency key had already registered this version.
	Existing bool `json:"existing"`
	// Stage is the version's stage when the key was found registered (Existing), e.g. Rejected: the same
	// key never registers a new version; register the content again under a new idempotency key.
	Stage string `json:"stage,omitempty"`
}

// ModelInput starts ModelWorkflow. State is set only by continue-as-new.
type ModelInput struct {
	SchemaVersion int         `json:"schemaVersion"`
	Model         string      `json:"model"`
	State         *ModelState `json:"state,omitempty"`
	// MaxHistoryEvents bounds the history before continue-as-new (default 5000; lowered in tests).
	MaxHistoryEvents int `json:"maxHistoryEvents,omitempty"`
}

// ModelState is everything ModelWorkflow knows; it is carried whole across continue-as-new.
type ModelState struct {
	NextVersion int `json:"nextVersion"`
	// Keys maps idempotency keys to versions.
	Keys map[string]int `json:"keys"`
	// Ready marks versions whose catalog row exists and whose workflow has started.
	Ready map[int]bool `json:"ready"`
	// Production is the version in production, 0 for none.
	Production int `json:"production"`
	// Archived lists versions that left production and can be restored.
	Archived []int `json:"archived,omitempty"`
	// Seq fences the catalog's production pointer and numbers deployment events.
	Seq     int64              `json:"seq"`
	History []ProductionChange `json:"history,omitempty"`
	Runs    int                `json:"runs"`

	// Since modelV1 (see model.go) the catalog mints numbers and keeps every key, so Keys, Ready and
	// NextVersion stay empty, Archived and History are bounded windows (the catalog keeps everything),
	// and LastVersion is the highest number minted so far, for validating promote requests.
	LastVersion int `json:"lastVersion,omitempty"`
	// Delivery is the deployment event of the last switch while it is being delivered, and its outcome.
	Delivery *Delivery `json:"delivery,omitempty"`
	// Rebuilt says when this model's state was last rebuilt from the catalog (a run that started
	// without carried state: the first one, or one after a terminate).
	Rebuilt *time.Time `json:"rebuilt,omitempty"`
	// CancelRequests counts cancel requests, which the model's workflow ignores: it must keep running
	// for as long as the model has versions.
	CancelRequests int `json:"cancelRequests,omitempty"`
	// Registrations are the outcomes of the latest registrations (since modelV3, at most
	// registrationWindow, newest last), by update or signal, for QueryRegistration.
	Registrations []RegistrationOutcome `json:"registrations,omitempty"`
}

// RegistrationOutcome is what one registration under an idempotency key came to: its result, or the
// error that refused or failed it.
type RegistrationOutcome struct {
	Key       string          `json:"idempotencyKey"`
	Result    *RegisterResult `json:"result,omitempty"`
	Error     string          `json:"error,omitempty"`
	ErrorType string          `json:"errorType,omitempty"`
	At        time.Time       `json:"at"`
}

// Registration states in RegistrationStatus.
const (
	// RegistrationUnknown: this workflow has no registration under the key in progress or among its
	// latest outcomes: its signal has not arrived yet, or the outcome is older than the window (the
	// catalog has it: the same request again answers it, as existing).
	RegistrationUnknown    = "unknown"
	RegistrationPending    = "pending"
	RegistrationRegistered = "registered"
	RegistrationFailed     = "failed"
)

// RegistrationStatus answers QueryRegistration (argument: the idempotency key).
type RegistrationStatus struct {
	SchemaVersion int    `json:"schemaVersion"`
	Key           string `json:"idempotencyKey"`
	State         string `json:"state"`
	// Result is set when State is registered; Error and ErrorType when it is failed.
	Result    *RegisterResult `json:"result,omitempty"`
	Error     string          `json:"error,omitempty"`
	ErrorType string          `json:"errorType,omitempty"`
}

// Delivery is a deployment event and what became of it. Status is pending (being delivered, with
// retries), delivered (every webhook acknowledged it), refused (a webhook answered 4xx), failed (the
// retry limit passed) or superseded (a newer switch happened before it was delivered).
type Delivery struct {
	Event    activities.DeploymentEvent `json:"event"`
	Status   string                     `json:"status"`
	Error    string                     `json:"error,omitempty"`
	Attempts int                        `json:"attempts,omitempty"`
	At       *time.Time                 `json:"at,omitempty"`
}

// Delivery statuses.
const (
	DeliveryPending    = "pending"
	DeliveryDelivered  = "delivered"
	DeliveryRefused    = "refused"
	DeliveryFailed     = "failed"
	DeliverySuperseded = "superseded"
)

// SwitchInfo answers the internal switch query: the production switch ModelWorkflow is running, if any.
// A version's workflow accepts archive and restore only when they name this switch and this version.
type SwitchInfo struct {
	ID      string `json:"id,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Version int    `json:"version,omitempty"` // the version entering production
	Prior   int    `json:"prior,omitempty"`   // the version leaving it, 0 for none
}

// PromotionInfo answers the internal promotion query on a version's workflow: what ModelWorkflow
// checks before it switches production to the version.
type PromotionInfo struct {
	Stage          string   `json:"stage"`
	ManifestDigest string   `json:"manifestDigest"`
	Validated      bool     `json:"validated"`
	Approvals      int      `json:"approvals"`
	Required       int      `json:"required"`
	Rejected       bool     `json:"rejected"`
	Champion       int      `json:"champion,omitempty"` // production version at validation
	ChampionMetric string   `json:"championMetric,omitempty"`
	LowerIsBetter  bool     `json:"lowerIsBetter,omitempty"`
	Tolerance      float64  `json:"tolerance,omitempty"`
	Value          *float64 `json:"value,omitempty"`
	// Approver is who made the last decision (the one that met the quorum): the promotion's actor in
	// the audit, taken from the version's own state rather than from the promote request.
	Approver string `json:"approver,omitempty"`
}

// ProductionChange is one move of the production pointer.
type ProductionChange struct {
	Seq      int64     `json:"seq"`
	Version  int       `json:"version"`
	Previous int       `json:"previous"`
	Kind     string    `json:"kind"` // promote or rollback
	Actor    string    `json:"actor,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
}

// PromoteRequest asks ModelWorkflow to make an approved version the production version. The version's
// workflow sends it once approval is complete; it is idempotent per version.
type PromoteRequest struct {
	SchemaVersion int    `json:"schemaVersion"`
	Version       int    `json:"version"`
	Actor         string `json:"actor,omitempty"`
	Reason        string `json:"reason,omitempty"`
}

// RollbackRequest re-promotes an archived version. To = 0 means the most recently archived one.
type RollbackRequest struct {
	SchemaVersion int    `json:"schemaVersion"`
	To            int    `json:"to,omitempty"`
	Actor         string `json:"actor"`
	Reason        string `json:"reason,omitempty"`
}

// RedeliverRequest asks ModelWorkflow to deliver the last switch's deployment event again.
type RedeliverRequest struct {
	SchemaVersion int `json:"schemaVersion"`
}

// Limits of what a decision or rollback may carry (README, "Limits"), besides MaxActorBytes: each is
// refused with a message naming it.
const (
	MaxReasonBytes  = 4096
	MaxCommentBytes = 4096
)

// ProductionResult answers promote, rollback and the production query.
type ProductionResult struct {
	SchemaVersion int    `json:"schemaVersion"`
	Model         string `json:"model"`
	Version       int    `json:"version"` // 0: nothing in production
	Previous      int    `json:"previous,omitempty"`
	WorkflowID    string `json:"workflowId,omitempty"`
}

// ModelDescription answers the describe query on ModelWorkflow.
type ModelDescription struct {
	SchemaVersion int        `json:"schemaVersion"`
	Model         string     `json:"model"`
	State         ModelState `json:"state"`
}

// VersionInput starts ModelVersionWorkflow (ModelWorkflow does this). State is set only by
// continue-as-new.
type VersionInput struct {
	SchemaVersion    int             `json:"schemaVersion"`
	Model            string          `json:"model"`
	Version          int             `json:"version"`
	Request          RegisterRequest `json:"request"`
	State            *VersionState   `json:"state,omitempty"`
	MaxHistoryEvents int             `json:"maxHistoryEvents,omitempty"`
	// GateTokens carries the external validators' tokens across continue-as-new (the describe query
	// does not show them).
	GateTokens map[string]string `json:"gateTokens,omitempty"`
	// PendingAudit and PendingRefusals are audit rows the previous run had not written to the catalog.
	PendingAudit    []catalog.Decision `json:"pendingAudit,omitempty"`
	PendingRefusals []catalog.Refusal  `json:"pendingRefusals,omitempty"`
}

// Decision is the payload of the approve and reject updates and signals.
type Decision struct {
	Approver string `json:"approver"`
	Comment  string `json:"comment,omitempty"`
	// Digest binds the decision to what the approver reviewed: the version's manifest digest
	// ("sha256:…", shown by `starter status` and the describe query). Required.
	Digest string `json:"digest,omitempty"`
}

// DecisionResult is what the approve and reject updates return.
type DecisionResult struct {
	SchemaVersion int    `json:"schemaVersion"`
	Stage         string `json:"stage"`
	// Approvals counts the distinct approvers so far, out of Required (the policy's quorum).
	Approvals int `json:"approvals,omitempty"`
	Required  int `json:"required,omitempty"`
}

// Verdict is the payload of the verdict update: an external validator's (CI job's) result.
type Verdict struct {
	Validator string `json:"validator"`
	// Token is the completion token from the validation request; it ties the verdict to this version.
	Token     string `json:"token"`
	Passed    bool   `json:"passed"`
	ReportURL string `json:"reportUrl,omitempty"`
	Detail    string `json:"detail,omitempty"`
}

// Gate is the state of one external validator of a version.
type Gate struct {
	Name     string    `json:"name"`
	URL      string    `json:"url"`
	Token    string    `json:"-"` // secret between the registry and the validator
	Deadline time.Time `json:"deadline"`
	// Status is requested, passed, failed or expired.
	Status    string     `json:"status"`
	ReportURL string     `json:"reportUrl,omitempty"`
	Detail    string     `json:"detail,omitempty"`
	At        *time.Time `json:"at,omitempty"`
}

// ArchiveRequest and RestoreRequest are sent by ModelWorkflow to move a version out of or back into
// production.
type ArchiveRequest struct {
	SchemaVersion int    `json:"schemaVersion"`
	ReplacedBy    int    `json:"replacedBy,omitempty"`
	Actor         string `json:"actor,omitempty"`
	Reason        string `json:"reason,omitempty"`
	// SwitchID names the switch ModelWorkflow is running (its switch query); a request without the
	// current one is refused.
	SwitchID string `json:"switchId,omitempty"`
}

// VersionState is everything a version's workflow knows; it is carried across continue-as-new and
// returned by the describe query.
type VersionState struct {
	Stage          string             `json:"stage"`
	Seq            int64              `json:"seq"`
	History        []StageChange      `json:"history"`
	ManifestURI    string             `json:"manifestUri,omitempty"`
	ManifestDigest string             `json:"manifestDigest,omitempty"`
	Files          int                `json:"files,omitempty"`
	TotalBytes     int64              `json:"totalBytes,omitempty"`
	Validation     *ValidationReport  `json:"validation,omitempty"`
	Decisions      []AcceptedDecision `json:"decisions,omitempty"`
	Rejected       []RejectedMessage  `json:"rejectedMessages,omitempty"`
	Deadline       *time.Time         `json:"approvalDeadline,omitempty"`
	PendingSince   *time.Time         `json:"pendingSince,omitempty"`
	Reminders      int                `json:"reminders,omitempty"`
	Gates          []Gate             `json:"gates,omitempty"`
	// DecisionCount numbers the messages recorded in the catalog's decisions audit.
	DecisionCount int               `json:"decisionCount,omitempty"`
	FailureReason string            `json:"failureReason,omitempty"`
	Pending       *AcceptedDecision `json:"-"`
	// RejectedTotal counts every refused message; Rejected keeps the latest ones (the catalog keeps all).
	RejectedTotal int `json:"rejectedTotal,omitempty"`
	// Step says what the workflow is doing when it waits on an activity that rides out outages.
	Step      string     `json:"step,omitempty"`
	StepSince *time.Time `json:"stepSince,omitempty"`
}

// StageChange is one transition in a version's life.
type StageChange struct {
	From   string    `json:"from"`
	To     string    `json:"to"`
	Actor  string    `json:"actor,omitempty"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// AcceptedDecision is a decision the workflow acted on.
type AcceptedDecision struct {
	Kind     string    `json:"kind"` // approve or reject
	Via      string    `json:"via"`  // update or signal
	Approver string    `json:"approver"`
	Comment  string    `json:"comment,omitempty"`
	At       time.Time `json:"at"`
}

// RejectedMessage records a signal or update the workflow refused, and why.
type RejectedMessage struct {
	Name    string    `json:"name"`
	Via     string    `json:"via"`
	Reason  string    `json:"reason"`
	Payload string    `json:"payload,omitempty"` // at most 512 bytes of what was sent
	At      time.Time `json:"at"`
}

// ValidationReport is the staging validation's verdict (defined with the activity that produces it).
type ValidationReport = activities.ValidationReport

// VersionDescription answers the describe query on ModelVersionWorkflow.
type VersionDescription struct {
	SchemaVersion int             `json:"schemaVersion"`
	Model         string          `json:"model"`
	Version       int             `json:"version"`
	Request       RegisterRequest `json:"request"`
	State         VersionState    `json:"state"`
	// UnhandledSignals names signals sent under a name this workflow does not take, not yet recorded.
	UnhandledSignals []string `json:"unhandledSignals,omitempty"`
}
