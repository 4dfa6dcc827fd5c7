package workflows

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/modelreg/modelreg/activities"
	"github.com/modelreg/modelreg/internal/catalog"
)

// ModelVersionWorkflow is one version's lifecycle (ID model/<name>/v<N>): store artifacts, validate in
// staging, wait for a human decision, get promoted by the model's workflow, sit in production, and be
// archived (and possibly restored by a rollback). Rejected and Failed end it; Archived does not, so the
// version can come back.
func ModelVersionWorkflow(ctx workflow.Context, in VersionInput) error {
	w := &versionWF{in: in, st: VersionState{Stage: StageRegistered, Seq: 1}}
	if in.State != nil {
		w.st = *in.State
		w.st.Gates = slices.Clone(w.st.Gates)
		for i := range w.st.Gates {
			w.st.Gates[i].Token = in.GateTokens[w.st.Gates[i].Name]
		}
	}
	// Histories recorded before approval policies (quorum, allowed approvers, digest binding, decision
	// audit, reminders, external validators) replay with the single-approval behaviour they ran with.
	w.policyV1 = workflow.GetVersion(ctx, changeApprovalPolicy, workflow.DefaultVersion, 1) >= 1
	w.bv = workflow.GetVersion(ctx, changeVersionBehaviour, workflow.DefaultVersion, versionLatest)
	if w.bv >= versionV1 && !w.policyV1 {
		// Only a run that started before approval policies can have policyV1 off; versionV1 needs it.
		w.bv = versionV0
	}
	if w.bv >= versionV1 {
		// A cancel request does not end a lifecycle (a version in production would vanish from under
		// its model); reject it instead, or terminate it, which the model's workflow copes with.
		ctx, _ = workflow.NewDisconnectedContext(ctx)
	}
	w.root = ctx
	if err := w.upsertSearchAttributes(ctx); err != nil {
		return err
	}
	if err := w.setHandlers(ctx); err != nil {
		return err
	}
	w.refreshDetails(ctx)
	if w.bv >= versionV1 {
		w.watchSignals(ctx)
		// Audit rows the previous run had not written yet.
		w.audit, w.refusalsOut = in.PendingAudit, in.PendingRefusals
		for _, d := range w.audit {
			w.auditSize += decisionBytes(d)
		}
		for _, r := range w.refusalsOut {
			w.auditSize += refusalBytes(r)
		}
		if len(w.audit) > 0 || len(w.refusalsOut) > 0 {
			w.kickFlusher(ctx)
		}
	}

	// Signals buffered when a terminal stage is reached are still recorded, for the describe query; and
	// an update handler still answering (a reject that ended the lifecycle) finishes before the workflow
	// does, so its caller gets the answer instead of "workflow completed".
	defer func() {
		if w.continuing {
			return // continueAsNew carried what is pending
		}
		w.drainSignals(ctx)
		_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
		if w.bv >= versionV1 {
			_ = w.auditFlushed(ctx)
		}
	}()

	if w.st.Stage == StageRegistered {
		if len(w.st.History) == 0 {
			w.st.History = append(w.st.History, StageChange{To: StageRegistered, Actor: in.Request.RegisteredBy, Reason: "registered", At: workflow.Now(ctx).UTC()})
		}
		if done, err := w.storeAndValidate(ctx); done || err != nil {
			return w.ended(ctx, err)
		}
	} else if w.st.Stage == StageValidating && w.bv >= versionV1 && len(w.st.Gates) > 0 {
		// Continued as new while waiting for external validators' verdicts.
		if done, err := w.finishGates(ctx); done || err != nil {
			return w.ended(ctx, err)
		}
	}
	if w.st.Stage == StagePendingApproval {
		if done, err := w.awaitDecision(ctx); done || err != nil {
			return w.ended(ctx, err)
		}
	}
	if w.st.Stage == StageApproved {
		if done, err := w.requestPromotion(ctx); done || err != nil {
			return w.ended(ctx, err)
		}
	}
	return w.serve(ctx)
}

// ended turns errContinueAsNew from a waiting stage into the continue-as-new itself.
func (w *versionWF) ended(ctx workflow.Context, err error) error {
	if errors.Is(err, errContinueAsNew) {
		return w.continueAsNew(ctx)
	}
	return err
}

type versionWF struct {
	in VersionInput
	st VersionState
	// archive/restore requests in flight, handled by their update handlers.
	busy bool
	// policyV1: approval policy, decision audit and external validators are in force (see GetVersion).
	policyV1 bool
	// bv is the behaviour version of this run (versionV0, versionV1: see version_v1.go).
	bv   workflow.Version
	root workflow.Context
	// Audit rows waiting for the flusher (versionV1).
	audit       []catalog.Decision
	refusalsOut []catalog.Refusal
	flushing    bool
	continuing  bool
	auditSize   int
	// While signals are drained, the current details are refreshed once at the end.
	draining, detailsStale bool
}

var storeActivityOptions = workflow.ActivityOptions{
	StartToCloseTimeout: 6 * time.Hour,
	// Store and verify heartbeat every second while bytes move; a crashed worker's attempt is retried
	// after this long.
	HeartbeatTimeout: 30 * time.Second,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval: 2 * time.Second, MaximumInterval: time.Minute, MaximumAttempts: 20,
		NonRetryableErrorTypes: []string{activities.ErrTypeBadSource},
	},
}

func (w *versionWF) storeAndValidate(ctx workflow.Context) (done bool, err error) {
	sctx := workflow.WithActivityOptions(ctx, w.storeOptions())
	w.setStep(ctx, "storing artifacts")
	var stored activities.StoreArtifactsResult
	err = workflow.ExecuteActivity(sctx, a.StoreArtifacts, activities.StoreArtifactsInput{
		Model: w.in.Model, Version: w.in.Version, SourceURI: w.in.Request.Source.URI, Files: w.in.Request.Source.Files,
		Listing: w.in.Request.Source.Listing,
	}).Get(ctx, &stored)
	if err != nil {
		reason := "artifacts could not be stored: " + rootMessage(err)
		w.st.FailureReason = reason
		return true, w.transition(ctx, StageFailed, "registry", reason)
	}
	w.st.ManifestURI, w.st.ManifestDigest = stored.ManifestURI, stored.ManifestDigest
	w.st.Files, w.st.TotalBytes = stored.Files, stored.TotalBytes
	if err := w.transition(ctx, StageValidating, "registry", fmt.Sprintf("stored %d files (%d bytes), manifest %s", stored.Files, stored.TotalBytes, stored.ManifestDigest)); err != nil {
		return false, err
	}

	var rep activities.ValidationReport
	vctx := workflow.WithActivityOptions(ctx, w.storeOptions())
	w.setStep(ctx, "validating")
	if err := workflow.ExecuteActivity(vctx, a.Validate, activities.ValidateInput{
		Model: w.in.Model, Version: w.in.Version, Metrics: w.in.Request.Metrics,
	}).Get(ctx, &rep); err != nil {
		reason := "validation could not run: " + rootMessage(err)
		w.st.FailureReason = reason
		return true, w.transition(ctx, StageFailed, "registry", reason)
	}
	w.setStep(ctx, "")
	w.st.Validation = &rep
	if rep.Passed && w.policyV1 && len(rep.Policy.Validators) > 0 {
		if err := w.runGates(ctx); err != nil {
			return false, err
		}
		rep = *w.st.Validation
	}
	return w.validated(ctx, rep)
}

// finishGates resumes waiting for external validators after a continue-as-new.
func (w *versionWF) finishGates(ctx workflow.Context) (done bool, err error) {
	if err := w.awaitGates(ctx); err != nil {
		return false, err
	}
	return w.validated(ctx, *w.st.Validation)
}

// validated moves a validated version on: Rejected, or PendingApproval with its deadline.
func (w *versionWF) validated(ctx workflow.Context, rep activities.ValidationReport) (done bool, err error) {
	if !rep.Passed {
		return true, w.transition(ctx, StageRejected, "validation", "validation failed: "+strings.Join(rep.Failures(), "; "))
	}
	if err := w.transition(ctx, StagePendingApproval, "validation", fmt.Sprintf("validation passed (%d checks)", len(rep.Checks))); err != nil {
		return false, err
	}
	now := workflow.Now(ctx).UTC()
	if w.policyV1 {
		w.st.PendingSince = &now
	}
	if t := rep.Policy.ApprovalTimeoutSeconds; t > 0 {
		d := now.Add(time.Duration(t) * time.Second)
		w.st.Deadline = &d
	}
	w.refreshDetails(ctx)
	return false, nil
}

func (w *versionWF) requestPromotion(ctx workflow.Context) (done bool, err error) {
	approver := w.lastApprover()
	raw, err := json.Marshal(PromoteRequest{SchemaVersion: SchemaVersion, Version: w.in.Version, Actor: approver, Reason: "approved"}) //workflowcheck:ignore
	if err != nil {
		return false, err
	}
	// Promotion waits behind other promotions of the model and for deployment webhooks, so it gets
	// unlimited retries; the update ID makes every retry attach to the same promotion.
	pctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		// The activity heartbeats while it waits for the model workflow, so a crashed worker's attempt is
		// noticed in seconds.
		HeartbeatTimeout: 15 * time.Second,
		RetryPolicy:      &temporal.RetryPolicy{InitialInterval: 2 * time.Second, MaximumInterval: time.Minute},
	})
	var res ProductionResult
	in := activities.UpdateWorkflowInput{
		WorkflowID: ModelWorkflowID(w.in.Model), UpdateName: UpdatePromote,
		UpdateID: fmt.Sprintf("promote/v%d", w.in.Version), Arg: raw,
	}
	if w.bv >= versionV1 {
		// A model's workflow that an operator terminated is started again (it rebuilds itself from the
		// catalog), rather than the promotion waiting for someone to register a version.
		start, err := json.Marshal(ModelInput{SchemaVersion: SchemaVersion, Model: w.in.Model, MaxHistoryEvents: w.in.MaxHistoryEvents}) //workflowcheck:ignore
		if err != nil {
			return false, err
		}
		in.StartWorkflowType, in.StartTaskQueue, in.StartArg = ModelWorkflowType, workflow.GetInfo(ctx).TaskQueueName, start
		in.StartSummary, in.StartDetails = ModelStartMetadata(w.in.Model)
		w.setStep(ctx, "waiting for the model's workflow to switch production")
	}
	for {
		err := workflow.ExecuteActivity(pctx, a.UpdateWorkflow, in).Get(ctx, &res)
		if err == nil {
			break
		}
		var appErr *temporal.ApplicationError
		if w.bv < versionV1 || !errors.As(err, &appErr) {
			return false, err
		}
		if appErr.Type() == activities.ErrTypeRefusedByWorkflow {
			// The model's workflow checked the version and refused the switch (the champion changed and
			// this version no longer beats it, say): the version ends Rejected, with the reason.
			w.setStep(ctx, "")
			return true, w.transition(ctx, StageRejected, "registry", rootMessage(err))
		}
		// Anything else is not a verdict on this version: ask again in a while, visibly.
		w.setStep(ctx, "waiting to ask the model's workflow for promotion again after: "+clip([]byte(rootMessage(err)), 500))
		if err := workflow.Sleep(ctx, time.Minute); err != nil {
			return false, err
		}
	}
	w.setStep(ctx, "")
	reason := "promoted"
	if res.Previous != 0 {
		reason = fmt.Sprintf("promoted, replacing v%d", res.Previous)
	}
	return false, w.transition(ctx, StageProduction, approver, reason)
}

// setStep records what the workflow waits on, for describe (versionV1).
func (w *versionWF) setStep(ctx workflow.Context, step string) {
	if w.bv < versionV1 {
		return
	}
	w.st.Step, w.st.StepSince = step, nil
	if step != "" {
		now := workflow.Now(ctx).UTC()
		w.st.StepSince = &now
	}
	w.refreshDetails(ctx)
}

// serve is the long tail of a version's life: in Production or Archived, answering archive and restore
// updates from the model's workflow, until its history is long enough to continue as new.
func (w *versionWF) serve(ctx workflow.Context) error {
	max := w.in.MaxHistoryEvents
	if max <= 0 {
		max = defaultMaxHistoryEvents
	}
	if w.bv >= versionV1 {
		if _, err := w.waitUntil(ctx, func() bool { return false }, 0); !errors.Is(err, errContinueAsNew) {
			return err
		}
		return w.continueAsNew(ctx)
	}
	if _, err := w.waitUntil(ctx, func() bool {
		info := workflow.GetInfo(ctx)
		return (info.GetCurrentHistoryLength() >= max || info.GetContinueAsNewSuggested()) && !w.busy && workflow.AllHandlersFinished(ctx)
	}, 0); err != nil {
		return err
	}
	next := w.in
	st := w.st
	next.State = &st
	return workflow.NewContinueAsNewError(ctx, ModelVersionWorkflow, next)
}

func (w *versionWF) transition(ctx workflow.Context, to, actor, reason string) error {
	if w.bv >= versionV1 {
		if err := w.auditFlushed(ctx); err != nil {
			return err
		}
		if len(reason) > MaxReasonBytes {
			reason = clip([]byte(reason), MaxReasonBytes)
		}
	}
	from := w.st.Stage
	seq := w.st.Seq + 1
	now := workflow.Now(ctx).UTC()
	if err := catalogCall(ctx, w.localCatalog(), catalogActivityOptions, a.RecordTransition, catalog.Transition{
		Model: w.in.Model, Version: w.in.Version, Seq: seq, From: from, To: to, Actor: actor, Reason: reason, At: now,
	}).Get(ctx, nil); err != nil {
		return err
	}
	w.st.Seq = seq
	w.st.Stage = to
	w.st.History = append(w.st.History, StageChange{From: from, To: to, Actor: actor, Reason: reason, At: now})
	if w.bv >= versionV1 && len(w.st.History) > stageHistoryWindow {
		// The first entry (the registration) stays; the catalog keeps every transition.
		w.st.History = append(w.st.History[:1], w.st.History[len(w.st.History)-stageHistoryWindow+1:]...)
	}
	w.refreshDetails(ctx)
	return w.upsertSearchAttributes(ctx)
}

func (w *versionWF) upsertSearchAttributes(ctx workflow.Context) error {
	return workflow.UpsertTypedSearchAttributes(ctx,
		SAModelName.ValueSet(w.in.Model),
		SAModelVersion.ValueSet(int64(w.in.Version)),
		SAModelStage.ValueSet(w.st.Stage))
}

func (w *versionWF) describe(ctx workflow.Context) VersionDescription {
	d := VersionDescription{SchemaVersion: SchemaVersion, Model: w.in.Model, Version: w.in.Version, Request: w.in.Request, State: w.st}
	if w.bv >= versionV1 {
		d.UnhandledSignals = workflow.GetUnhandledSignalNames(ctx)
	}
	return d
}

func (w *versionWF) setHandlers(ctx workflow.Context) error {
	// The first request for a signal channel gives its description (what the UI's Signal form lists), so
	// these come before anything else asks for the channels. Neither is a command.
	workflow.GetSignalChannelWithOptions(ctx, SignalApprove, workflow.SignalChannelOptions{Description: w.decisionDescription(SignalApprove, true)})
	workflow.GetSignalChannelWithOptions(ctx, SignalReject, workflow.SignalChannelOptions{Description: w.decisionDescription(SignalReject, true)})
	if err := workflow.SetQueryHandlerWithOptions(ctx, QueryStage, func() (string, error) { return w.st.Stage, nil },
		workflow.QueryHandlerOptions{Description: descStage}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandlerWithOptions(ctx, QueryDescribe, func() (VersionDescription, error) { return w.describe(ctx), nil },
		workflow.QueryHandlerOptions{Description: descDescribe}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandlerWithOptions(ctx, QueryPromotion, func() (PromotionInfo, error) { return w.promotionInfo(), nil },
		workflow.QueryHandlerOptions{Description: descPromotion}); err != nil {
		return err
	}
	if err := w.setDecisionHandlers(ctx); err != nil {
		return err
	}
	if w.bv >= versionV1 {
		// No validators: the handlers check (stage, then the switch) and audit what they refuse.
		if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateArchive, func(ctx workflow.Context, r ArchiveRequest) (string, error) {
			return w.moveV1(ctx, UpdateArchive, StageProduction, StageArchived, r)
		}, workflow.UpdateHandlerOptions{Description: descArchive}); err != nil {
			return err
		}
		return workflow.SetUpdateHandlerWithOptions(ctx, UpdateRestore, func(ctx workflow.Context, r ArchiveRequest) (string, error) {
			return w.moveV1(ctx, UpdateRestore, StageArchived, StageProduction, r)
		}, workflow.UpdateHandlerOptions{Description: descRestore})
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateArchive, func(ctx workflow.Context, r ArchiveRequest) (string, error) {
		return w.move(ctx, StageProduction, StageArchived, r)
	}, workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, r ArchiveRequest) error {
		return w.checkMove(StageArchived)
	}, Description: descArchive}); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateRestore, func(ctx workflow.Context, r ArchiveRequest) (string, error) {
		return w.move(ctx, StageArchived, StageProduction, r)
	}, workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, r ArchiveRequest) error {
		return w.checkMove(StageProduction)
	}, Description: descRestore})
}

func (w *versionWF) checkMove(to string) error {
	switch w.st.Stage {
	case StageRejected, StageFailed, StageRegistered, StageValidating, StagePendingApproval:
		return fmt.Errorf("v%d is %s and cannot move to %s", w.in.Version, w.st.Stage, to)
	}
	return nil
}

// move handles archive and restore. An archive may arrive while this version is still recording its own
// promotion (Approved), so it waits for Production first; repeating a move that is done is a no-op.
func (w *versionWF) move(ctx workflow.Context, from, to string, r ArchiveRequest) (string, error) {
	if err := workflow.Await(ctx, func() bool { return !w.busy && (w.st.Stage == from || w.st.Stage == to) }); err != nil {
		return "", err
	}
	if w.st.Stage == to {
		return w.st.Stage, nil
	}
	w.busy = true
	defer func() { w.busy = false }()
	reason := r.Reason
	if reason == "" {
		reason = strings.ToLower(to)
	}
	err := w.transition(ctx, to, r.Actor, reason)
	return w.st.Stage, err
}

// waitUntil blocks until cond holds or the timeout (0: none) passes, reading approve and reject signals
// meanwhile. Signals are read by the main coroutine itself, right before cond is checked, so none can be
// left unread when the workflow continues as new or ends; each is acted on or recorded as rejected.
func (w *versionWF) waitUntil(ctx workflow.Context, cond func() bool, timeout time.Duration) (bool, error) {
	approve, reject := workflow.GetSignalChannel(ctx, SignalApprove), workflow.GetSignalChannel(ctx, SignalReject)
	wake := func() bool { return cond() || approve.Len() > 0 || reject.Len() > 0 || w.shouldContinueAsNew(ctx) }
	deadline := workflow.Now(ctx).Add(timeout)
	for {
		w.drainSignals(ctx)
		if cond() {
			return true, nil
		}
		if w.shouldContinueAsNew(ctx) {
			return false, errContinueAsNew
		}
		if timeout <= 0 {
			if err := workflow.Await(ctx, wake); err != nil {
				return false, err
			}
			continue
		}
		left := deadline.Sub(workflow.Now(ctx))
		if left <= 0 {
			return false, nil
		}
		if _, err := workflow.AwaitWithTimeout(ctx, left, wake); err != nil {
			return false, err
		}
	}
}

func (w *versionWF) drainSignals(ctx workflow.Context) {
	w.draining = true
	defer func() {
		w.draining = false
		if w.detailsStale {
			w.detailsStale = false
			w.refreshDetails(ctx)
		}
	}()
	for _, name := range []string{SignalApprove, SignalReject} {
		ch := workflow.GetSignalChannel(ctx, name)
		for {
			var raw RawPayload
			if !ch.ReceiveAsync(&raw) {
				break
			}
			w.onSignal(ctx, name, raw)
		}
	}
	if w.bv >= versionV1 {
		w.drainUnknownSignals(ctx)
	}
}

// decodeDecision is strict: a payload that is not a JSON object of the Decision shape is refused with a
// reason that names what is wrong. (encoding/json into a struct is deterministic; workflowcheck cannot see
// through its reflection.)
//
//workflowcheck:ignore
func decodeDecision(raw RawPayload, withDigest bool) (Decision, error) {
	var d Decision
	if raw.DecodeError != "" {
		// Only with a payload codec: a key this worker lacks, or altered data.
		return d, fmt.Errorf("payload does not decode: %s", raw.DecodeError)
	}
	if raw.Encoding != "json/plain" {
		return d, fmt.Errorf("payload encoding %q is not json/plain", raw.Encoding)
	}
	dec := json.NewDecoder(bytes.NewReader(raw.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return d, fmt.Errorf("payload is not a decision {\"approver\": string, \"comment\": string, \"digest\": string}: %v", err)
	}
	// The literal null decodes into a zero Decision without an error; it is not a decision object.
	if t := bytes.TrimLeft(raw.Data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return Decision{}, errors.New(`payload is not a decision {"approver": string, "comment": string, "digest": string}: not a JSON object`)
	}
	// dec.More is false for a stray ']' or '}', so look at the bytes themselves (JSON whitespace only).
	// Lifecycles from before approval policies checked only dec.More, and replay as they ran.
	if withDigest && len(bytes.TrimLeft(raw.Data[dec.InputOffset():], " \t\r\n")) > 0 || !withDigest && dec.More() {
		return d, errors.New("payload has data after the decision object")
	}
	if !withDigest && d.Digest != "" {
		// Before approval policies a decision had no digest, and lifecycles from then must replay as
		// they ran: such a payload was refused.
		return d, errors.New(`payload is not a decision {"approver": string, "comment": string}: json: unknown field "digest"`)
	}
	return d, nil
}

// rootMessage is the innermost message of an activity error, which is the one that names the problem.
func rootMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Error()
	}
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		err = u
	}
	return err.Error()
}
