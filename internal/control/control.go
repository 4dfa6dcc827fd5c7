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
	"strings"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc/codes"

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
	return c.NewWithStartWorkflowOperation(modelStartOptions(model),
		workflows.ModelWorkflowType, workflows.ModelInput{SchemaVersion: workflows.SchemaVersion, Model: model})
}

func modelStartOptions(model string) client.StartWorkflowOptions {
	summary, details := workflows.ModelStartMetadata(model)
	return client.StartWorkflowOptions{
		StaticSummary:            summary,
		StaticDetails:            details,
		ID:                       workflows.ModelWorkflowID(model),
		TaskQueue:                workflows.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		TypedSearchAttributes:    temporal.NewSearchAttributes(workflows.SAModelName.ValueSet(model)),
	}
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

// Register asks the model's workflow for a new version (or the one req's idempotency key names). It
// sends the register signal and asks the registration query until the outcome is there: unlike the
// register update, a signal does not take one of the 10 updates Temporal lets a workflow have in flight,
// so any number of training jobs may register on one model at the same moment without being refused
// for lack of slots (README, "Registering on a busy model"). A model whose workflow run began before
// the signal existed answers the query as unknown to it, and gets the update instead.
func Register(ctx context.Context, c client.Client, req workflows.RegisterRequest) (workflows.RegisterResult, error) {
	res, answered, err := registerBySignal(ctx, c, req)
	if answered {
		return res, err
	}
	if err := updateWithStart(ctx, c, req.Model, workflows.UpdateRegister, req, &res); err != nil {
		return res, classify("register", err)
	}
	return res, nil
}

// Polling the registration query: a registration takes one or two workflow tasks (about 0.1-0.5 s on a
// busy two-core machine), so the first asks come soon and the later ones back off.
const (
	RegistrationPollFirst = 30 * time.Millisecond
	RegistrationPollMax   = 500 * time.Millisecond
	// A registration without an outcome this long after its signal was sent is sent again (the same key:
	// the catalog answers it if it was registered meanwhile): its run was terminated before it finished,
	// or the outcome left the window of recent ones.
	registrationResend = 5 * time.Second
)

// registerBySignal registers through the register signal and the registration query. answered is false
// when the model's workflow run does not take the signal (it began before modelV3); the caller then
// sends the update.
func registerBySignal(ctx context.Context, c client.Client, req workflows.RegisterRequest) (res workflows.RegisterResult, answered bool, err error) {
	id := workflows.ModelWorkflowID(req.Model)
	send := func() error {
		for attempt := 1; ; attempt++ {
			_, err := c.SignalWithStartWorkflow(ctx, id, workflows.SignalRegister, req, modelStartOptions(req.Model),
				workflows.ModelWorkflowType, workflows.ModelInput{SchemaVersion: workflows.SchemaVersion, Model: req.Model})
			// While a run continues as new, Temporal refuses its signals with "workflow is closing" for a
			// moment, and the next run takes them; while Temporal restarts, it is unavailable.
			if err == nil || !transient(ctx, err) {
				return err
			}
			select {
			case <-ctx.Done():
				return err
			case <-time.After(min(time.Duration(attempt)*100*time.Millisecond, time.Second)):
			}
		}
	}
	if err := send(); err != nil {
		return res, true, err
	}
	sent, wait := time.Now(), RegistrationPollFirst
	for {
		select {
		case <-ctx.Done():
			return res, true, fmt.Errorf("register: waiting for the outcome of %s on %s: %w", req.IdempotencyKey, id, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*3/2, RegistrationPollMax)
		st, err := registration(ctx, c, id, req.IdempotencyKey)
		var nf *serviceerror.NotFound
		var qf *serviceerror.QueryFailed
		resend := time.Since(sent) >= registrationResend
		switch {
		case errors.As(err, &qf) && strings.Contains(qf.Error(), "unknown queryType"):
			return res, false, nil
		case errors.As(err, &nf):
			resend = true // terminated since and gone: start it again
		case errors.As(err, &qf), err != nil && transient(ctx, err):
			// Rebuilding from the catalog, Temporal restarting, no worker to answer yet, or a run that
			// ended (terminated, failed) without reading the signal and cannot answer: the signal is
			// recorded, and the outcome comes once they are back, as an update's would; a run that ended
			// takes the request again when it is sent again, which starts a new run.
		case err != nil:
			return res, true, fmt.Errorf("register: asking %s for the outcome of %s: %w", id, req.IdempotencyKey, err)
		case st.State == workflows.RegistrationRegistered:
			return *st.Result, true, nil
		case st.State == workflows.RegistrationFailed:
			return res, true, &RefusedError{What: "register", Message: st.Error}
		}
		// Pending for a while is sent again too: a query of a run that ended (terminated) after the
		// signal arrived replays it to pending for ever, and sending again is what starts a new run.
		// To a run that is working on it, the same key again only waits for the first.
		if resend {
			if err := send(); err != nil {
				return res, true, err
			}
			sent = time.Now()
		}
	}
}

// transient is true for an error that asking again may cure, while ctx lasts.
func transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var nr *serviceerror.WorkflowNotReady
	if errors.As(err, &nr) || strings.Contains(err.Error(), "workflow is closing") {
		return true
	}
	switch serviceerror.ToStatus(err).Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted, codes.Canceled:
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}

func registration(ctx context.Context, c client.Client, id, key string) (workflows.RegistrationStatus, error) {
	var st workflows.RegistrationStatus
	v, err := c.QueryWorkflow(ctx, id, "", workflows.QueryRegistration, key)
	if err != nil {
		return st, err
	}
	if err := v.Get(&st); err != nil {
		return st, err
	}
	if st.State == workflows.RegistrationRegistered && st.Result == nil {
		return st, fmt.Errorf("%s answered registered without a result", id)
	}
	return st, nil
}

// Rollback puts an archived version back into production.
func Rollback(ctx context.Context, c client.Client, model string, req workflows.RollbackRequest) (workflows.ProductionResult, error) {
	var res workflows.ProductionResult
	// An ID of its own, so that the answer can be followed into the run a reset starts: Temporal
	// delivers the update there again, under the same ID, and the model's workflow finishes it there
	// (README, "Resets"), while the reset run answers its caller that it completed first.
	id := "rollback-" + uuid.NewString()
	h, err := c.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: modelStart(c, model),
		UpdateOptions: client.UpdateWorkflowOptions{
			UpdateID: id, UpdateName: workflows.UpdateRollback, Args: []any{req}, WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	for attempt := 0; err == nil; attempt++ {
		err = h.Get(ctx, &res)
		var appErr *temporal.ApplicationError
		if err == nil || attempt == 3 || !errors.As(err, &appErr) || appErr.Type() != errTypeUpdateOutlivedRun {
			break
		}
		h, err = c.GetWorkflowUpdateHandle(client.GetWorkflowUpdateHandleOptions{WorkflowID: workflows.ModelWorkflowID(model), UpdateID: id}), nil
	}
	if err != nil {
		return res, classify("rollback", err)
	}
	return res, nil
}

// errTypeUpdateOutlivedRun is the server's failure for an update whose run ended (a reset, say) before
// the update completed.
const errTypeUpdateOutlivedRun = "AcceptedUpdateCompletedWorkflow"

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
