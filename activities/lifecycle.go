package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/temporal"

	"github.com/modelreg/modelreg/internal/catalog"
)

// MintResult is the version MintVersion registered or found.
type MintResult struct {
	Version  catalog.Version `json:"version"`
	Existing bool            `json:"existing"`
}

// MintVersion gives a registration its version number in the catalog, or finds the version its
// idempotency key already registered (catalog.MintVersion).
func (a *Activities) MintVersion(ctx context.Context, v catalog.Version) (MintResult, error) {
	out, existing, err := a.Catalog.MintVersion(ctx, v)
	if err != nil {
		return MintResult{}, err
	}
	a.Metrics.Registered(existing)
	return MintResult{Version: out, Existing: existing}, nil
}

// ArchivedWindow is how many of a model's most recently archived versions its workflow keeps in memory;
// older ones are looked up in the catalog.
const ArchivedWindow = 50

// LoadModel reads what a model's workflow rebuilds itself from (catalog.Snapshot).
func (a *Activities) LoadModel(ctx context.Context, model string) (catalog.ModelSnapshot, error) {
	return a.Catalog.Snapshot(ctx, model, ArchivedWindow)
}

// GetVersionRow reads one version's catalog row; ok is false for an unknown version.
func (a *Activities) GetVersionRow(ctx context.Context, model string, version int) (VersionRow, error) {
	v, err := a.Catalog.GetVersion(ctx, model, version)
	if errors.Is(err, catalog.ErrNotFound) {
		return VersionRow{}, nil
	}
	if err != nil {
		return VersionRow{}, err
	}
	return VersionRow{Found: true, Stage: v.Stage, ManifestDigest: v.ManifestDigest}, nil
}

// VersionRow is the part of a version's catalog row that the model's workflow checks.
type VersionRow struct {
	Found          bool   `json:"found"`
	Stage          string `json:"stage,omitempty"`
	ManifestDigest string `json:"manifestDigest,omitempty"`
}

// RecordRefusal appends a refused message to the catalog's audit.
func (a *Activities) RecordRefusal(ctx context.Context, r catalog.Refusal) error {
	return a.Catalog.RecordRefusal(ctx, r)
}

// RecordDecisions appends several decisions to the audit in order (one activity for a burst of refused
// signals instead of one each).
func (a *Activities) RecordDecisions(ctx context.Context, ds []catalog.Decision) error {
	for _, d := range ds {
		if err := a.Catalog.RecordDecision(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// QueryInput asks a workflow's query; the workflow must be running unless AllowClosed is set.
type QueryInput struct {
	WorkflowID string `json:"workflowId"`
	Query      string `json:"query"`
}

// QueryResult is the query's JSON answer and the workflow's status (Running, Completed, Terminated, …).
type QueryResult struct {
	Status string          `json:"status"`
	Result json.RawMessage `json:"result,omitempty"`
}

// QueryWorkflow describes the workflow's latest run and, when it is running, asks it the query. Workflows
// use it to check a claim another workflow's message makes (a promotion asked for by a version that is
// really Approved, an archive sent by a switch the model's workflow is really running): a closed
// workflow still answers queries with its last state, so its status is part of the answer.
func (a *Activities) QueryWorkflow(ctx context.Context, in QueryInput) (QueryResult, error) {
	d, err := a.Temporal.DescribeWorkflowExecution(ctx, in.WorkflowID, "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return QueryResult{Status: "NotFound"}, nil
	}
	if err != nil {
		return QueryResult{}, err
	}
	st := d.GetWorkflowExecutionInfo().GetStatus()
	res := QueryResult{Status: statusName(st)}
	if st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return res, nil
	}
	v, err := a.Temporal.QueryWorkflow(ctx, in.WorkflowID, "", in.Query)
	if err != nil {
		return QueryResult{}, err
	}
	if err := v.Get(&res.Result); err != nil {
		return QueryResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("query %s of %s: %v", in.Query, in.WorkflowID, err), ErrTypeBadRequest, nil)
	}
	return res, nil
}

func statusName(s enumspb.WorkflowExecutionStatus) string {
	switch s {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return "Running"
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		return "Completed"
	case enumspb.WORKFLOW_EXECUTION_STATUS_FAILED:
		return "Failed"
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return "Canceled"
	case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
		return "Terminated"
	case enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW:
		return "ContinuedAsNew"
	case enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return "TimedOut"
	}
	return s.String()
}

// ChampionInput asks whether a version still beats the model's current production version on the
// champion metric of the policy it was validated under.
type ChampionInput struct {
	Model         string   `json:"model"`
	Version       int      `json:"version"`
	Metric        string   `json:"metric"`
	LowerIsBetter bool     `json:"lowerIsBetter,omitempty"`
	Tolerance     float64  `json:"tolerance,omitempty"`
	Value         *float64 `json:"value,omitempty"`
}

// ChampionResult is the comparison against the current production version.
type ChampionResult struct {
	Champion int             `json:"champion"`
	Check    ValidationCheck `json:"check"`
}

// RecheckChampion re-runs the champion comparison against the current production version; the model's
// workflow runs it before a switch when production changed since the version was validated.
func (a *Activities) RecheckChampion(ctx context.Context, in ChampionInput) (ChampionResult, error) {
	p := catalog.Policy{ChampionMetric: in.Metric, ChampionLowerIsBetter: in.LowerIsBetter, ChampionTolerance: in.Tolerance}
	metrics := map[string]float64{}
	if in.Value != nil && !math.IsNaN(*in.Value) {
		metrics[in.Metric] = *in.Value
	}
	var rep ValidationReport
	if err := a.compareChampion(ctx, &rep, ValidateInput{Model: in.Model, Version: in.Version, Metrics: metrics}, p); err != nil {
		return ChampionResult{}, err
	}
	if len(rep.Checks) != 1 {
		return ChampionResult{}, fmt.Errorf("champion comparison of %s v%d produced %d checks", in.Model, in.Version, len(rep.Checks))
	}
	return ChampionResult{Champion: rep.ChampionVersion, Check: rep.Checks[0]}, nil
}

// SetProductionFenced moves the catalog's production pointer, fenced by the model's seq, and reports
// whether it did: a write the fence turned away is not a success for the switch that asked for it.
func (a *Activities) SetProductionFenced(ctx context.Context, in SetProductionInput) (bool, error) {
	v := in.Version
	var p *int
	if v > 0 {
		p = &v
	}
	if in.Request != nil {
		applied, err := a.Catalog.SetProductionFinishing(ctx, in.Model, p, in.Seq, *in.Request)
		return applied, notMine(err)
	}
	if in.Promoted != nil && v > 0 {
		applied, err := a.Catalog.SetProductionPromoting(ctx, in.Model, v, in.Seq, *in.Promoted)
		if err == nil && applied {
			a.observeTransition(ctx, catalog.Transition{Model: in.Model, Version: v, From: catalog.StageApproved, To: catalog.StageProduction, Actor: in.Promoted.Actor, At: in.Promoted.At})
		}
		return applied, err
	}
	return a.Catalog.SetProduction(ctx, in.Model, p, in.Seq)
}

// ClaimRequestInput names a request to a model's workflow by its update ID, and the handler claiming it.
type ClaimRequestInput struct {
	Model string `json:"model"`
	Name  string `json:"name"`
	ID    string `json:"id"`
	Token string `json:"token"`
}

// ClaimRequest claims a request for the handler holding Token (catalog.ClaimRequest).
func (a *Activities) ClaimRequest(ctx context.Context, in ClaimRequestInput) (catalog.Claim, error) {
	return a.Catalog.ClaimRequest(ctx, in.Model, in.Name, in.ID, in.Token)
}

// FinishRequestInput is the outcome of a claimed request that did not move the production pointer.
type FinishRequestInput struct {
	Model   string `json:"model"`
	ID      string `json:"id"`
	Token   string `json:"token"`
	Outcome string `json:"outcome"`
}

// FinishRequest records the outcome of a claimed request (catalog.FinishRequest).
func (a *Activities) FinishRequest(ctx context.Context, in FinishRequestInput) error {
	return notMine(a.Catalog.FinishRequest(ctx, in.Model, in.ID, in.Token, in.Outcome))
}

// RequestTargetInput is the switch a claimed request's handler decided on: Target replacing Prior.
type RequestTargetInput struct {
	Model  string `json:"model"`
	ID     string `json:"id"`
	Token  string `json:"token"`
	Target int    `json:"target"`
	Prior  int    `json:"prior"`
}

// SetRequestTarget records a claimed request's switch before it is made (catalog.SetRequestTarget).
func (a *Activities) SetRequestTarget(ctx context.Context, in RequestTargetInput) error {
	return notMine(a.Catalog.SetRequestTarget(ctx, in.Model, in.ID, in.Token, in.Target, in.Prior))
}

// notMine makes catalog.ErrRequestNotMine final: retrying cannot give the claim back.
func notMine(err error) error {
	if errors.Is(err, catalog.ErrRequestNotMine) {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeNotMine, err)
	}
	return err
}

// RecordDelivery writes the state of a deployment event to the catalog.
func (a *Activities) RecordDelivery(ctx context.Context, d catalog.Delivery) error {
	if err := a.Catalog.RecordDelivery(ctx, d); err != nil {
		return err
	}
	if d.Status != catalog.DeliveryPending {
		a.Metrics.Delivered(d.Status)
	}
	return nil
}

// ArchiveClosedInput names a version whose lifecycle workflow is closed while its catalog row says
// Production, and the switch that replaces it.
type ArchiveClosedInput struct {
	Model   string `json:"model"`
	Version int    `json:"version"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
}

// ArchiveClosedVersion archives, in the catalog and the store, a production version whose workflow an
// operator ended (terminated, cancelled): nothing else will ever move it, and a switch must not wait for
// it for ever. Its workflow being closed, the model's workflow is the only writer left; the transition
// takes the row's next sequence number, so a late write from anywhere else is fenced off.
func (a *Activities) ArchiveClosedVersion(ctx context.Context, in ArchiveClosedInput) error {
	v, err := a.Catalog.GetVersion(ctx, in.Model, in.Version)
	if err != nil {
		return err
	}
	if v.Stage != catalog.StageProduction {
		return nil // done already (a retry), or never in production
	}
	return a.RecordTransition(ctx, catalog.Transition{
		Model: in.Model, Version: in.Version, Seq: v.Seq + 1, From: catalog.StageProduction, To: catalog.StageArchived,
		Actor: "registry", Reason: fmt.Sprintf("its lifecycle workflow is %s; %s", in.Status, in.Reason),
	})
}
