// Package control sends the registry's public messages to its workflows: register, decide, roll back,
// describe. The starter and the HTTP API both use it, so a version is registered or approved the same
// way whichever door a user comes through.
package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/workflows"
)

// ErrNotRunning is returned (wrapped) when the workflow a message is for is not running: the version's
// lifecycle has ended (Rejected, Failed) or the workflow does not exist.
var ErrNotRunning = errors.New("not running")

// RefusedError is a message the workflow refused: its update validator or handler said no, and why.
type RefusedError struct {
	What    string
	Message string
}

func (e *RefusedError) Error() string { return e.What + " refused: " + e.Message }

// classify turns what the SDK returns for an update into ErrNotRunning, a RefusedError or the error
// itself (Temporal unreachable, timeouts).
func classify(what string, err error) error {
	if err == nil {
		return nil
	}
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return fmt.Errorf("%s: %w", what, ErrNotRunning)
	}
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return &RefusedError{What: what, Message: app.Message()}
	}
	return err
}

// modelStart is the start of a model's workflow for update-with-start: it works before the workflow
// exists and after an operator terminated it (a fresh run rebuilds itself from the catalog).
func modelStart(c client.Client, model string) client.WithStartWorkflowOperation {
	summary, details := workflows.ModelStartMetadata(model)
	return c.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
		StaticSummary:            summary,
		StaticDetails:            details,
		ID:                       workflows.ModelWorkflowID(model),
		TaskQueue:                workflows.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		TypedSearchAttributes:    temporal.NewSearchAttributes(workflows.SAModelName.ValueSet(model)),
	}, workflows.ModelWorkflowType, workflows.ModelInput{SchemaVersion: workflows.SchemaVersion, Model: model})
}

func updateWithStart(ctx context.Context, c client.Client, model, name string, arg, result any) error {
	h, err := c.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: modelStart(c, model),
		UpdateOptions: client.UpdateWorkflowOptions{
			// No fixed update ID: the handlers are idempotent themselves (register on its key) and
			// report it, which a server-side deduplicated update would not.
			UpdateName: name, Args: []any{arg}, WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	if err != nil {
		return err
	}
	return h.Get(ctx, result)
}

// Register asks the model's workflow for a new version (or the one req's idempotency key names).
func Register(ctx context.Context, c client.Client, req workflows.RegisterRequest) (workflows.RegisterResult, error) {
	var res workflows.RegisterResult
	if err := updateWithStart(ctx, c, req.Model, workflows.UpdateRegister, req, &res); err != nil {
		return res, classify("register", err)
	}
	return res, nil
}

// Rollback puts an archived version back into production.
func Rollback(ctx context.Context, c client.Client, model string, req workflows.RollbackRequest) (workflows.ProductionResult, error) {
	var res workflows.ProductionResult
	if err := updateWithStart(ctx, c, model, workflows.UpdateRollback, req, &res); err != nil {
		return res, classify("rollback", err)
	}
	return res, nil
}

// Decide sends an approve or reject update to the version's workflow and waits for its result.
func Decide(ctx context.Context, c client.Client, model string, version int, kind string, d workflows.Decision) (workflows.DecisionResult, error) {
	var res workflows.DecisionResult
	if kind != workflows.UpdateApprove && kind != workflows.UpdateReject {
		return res, fmt.Errorf("decision kind %q is neither %s nor %s", kind, workflows.UpdateApprove, workflows.UpdateReject)
	}
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: workflows.VersionWorkflowID(model, version), UpdateName: kind, Args: []any{d},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, &res)
	}
	return res, classify(kind, err)
}

// DescribeVersion runs the describe query on a version's workflow.
func DescribeVersion(ctx context.Context, c client.Client, model string, version int) (workflows.VersionDescription, error) {
	var d workflows.VersionDescription
	v, err := c.QueryWorkflow(ctx, workflows.VersionWorkflowID(model, version), "", workflows.QueryDescribe)
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return d, fmt.Errorf("model %q has no version %d (no workflow %s): %w", model, version, workflows.VersionWorkflowID(model, version), ErrNotRunning)
		}
		return d, err
	}
	return d, v.Get(&d)
}

// ContentKey derives an idempotency key from what is registered, so re-running the same training job's
// registration returns its version instead of minting a duplicate. files are the version's files,
// which a request with a listing does not carry inline: the key of a set of files is the same whether
// they travel inline or in a listing.
func ContentKey(r workflows.RegisterRequest, files []artifact.FileEntry) string {
	h := sha256.New()
	files = append([]artifact.FileEntry(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	b, _ := json.Marshal(struct {
		M  string
		U  string
		F  []artifact.FileEntry
		Me map[string]float64
		P  map[string]string
		S  string
	}{r.Model, r.Source.URI, files, r.Metrics, r.Params, r.SourceRun})
	h.Write(b)
	return "content-" + hex.EncodeToString(h.Sum(nil))[:40]
}
